"""Mask statistics and encodings of the automatic mask generator, numpy versions of segment_anything.utils.amg:
stability score, boxes around masks, uncompressed RLE (column-major, as pycocotools counts), small-region removal
(OpenCV connected components, as the official code) and COCO RLE (pycocotools)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendUnavailableError


def stability_score(logits: np.ndarray, mask_threshold: float, offset: float) -> np.ndarray:
    """(K, H, W) logits -> (K,) float32: #(logit > t + offset) / #(logit > t - offset), the IoU of the masks
    thresholded high and low (one is inside the other). 0/0 (no pixel above t - offset) gives NaN, as in the
    official code, and NaN passes no threshold."""
    high = np.count_nonzero(logits > np.float32(mask_threshold + offset), axis=(-2, -1))
    low = np.count_nonzero(logits > np.float32(mask_threshold - offset), axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return high.astype(np.float32) / low.astype(np.float32)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) bool -> (K, 4) int64 x0, y0, x1, y1 with inclusive pixel indices; [0, 0, 0, 0] for an empty
    mask (segment_anything's batched_mask_to_box)."""
    k, h, w = masks.shape
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # (K, H), (K, W)
    top, bottom = rows.argmax(axis=1), h - 1 - rows[:, ::-1].argmax(axis=1)
    left, right = cols.argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([left, top, right, bottom], axis=1).astype(np.int64)
    boxes[~rows.any(axis=1)] = 0
    return boxes


def masks_to_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """(K, H, W) bool -> uncompressed RLEs {"size": [H, W], "counts": [...]}: run lengths over the
    column-major pixel order, starting with a run of zeros (0 if the first pixel is set), as pycocotools reads
    them."""
    k, h, w = masks.shape
    flat = np.ascontiguousarray(masks.transpose(0, 2, 1)).reshape(k, h * w)
    which, where = np.nonzero(flat[:, 1:] != flat[:, :-1])
    bounds = np.searchsorted(which, np.arange(k + 1))
    out = []
    for i in range(k):
        change = where[bounds[i]:bounds[i + 1]] + 1
        edges = np.concatenate([[0], change, [h * w]])
        counts = np.diff(edges).tolist()
        out.append({"size": [h, w], "counts": ([0] if flat[i, 0] else []) + counts})
    return out


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE -> (H, W) bool."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(w, h).T


def area_from_rle(rle: dict[str, Any]) -> int:
    return int(sum(rle["counts"][1::2]))


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (mode "holes") or drop islands ("islands") smaller than area_thresh pixels, 8-connected.
    Returns the mask and whether it changed. If every island is small, the largest is kept."""
    cv2 = _cv2()
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = (holes ^ mask).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(working, 8)
    sizes = stats[:, -1][1:]  # label 0 is the background
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n_labels) if i not in fill]
        if not fill:
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


def coco_encode_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> COCO compressed RLE (counts as a str, so it serialises to JSON)."""
    mask_utils = pycocotools_mask()
    h, w = rle["size"]
    out = mask_utils.frPyObjects(rle, h, w)
    out["counts"] = out["counts"].decode("utf-8")
    return out


def pycocotools_mask():
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise BackendUnavailableError("output_mode='coco_rle' needs pycocotools: pip install 'samedge[everything]' "
                                      "(or pip install pycocotools)") from None
    return mask_utils


def _cv2():
    try:
        import cv2
    except ImportError:
        raise BackendUnavailableError("min_mask_region_area > 0 needs OpenCV: pip install 'samedge[everything]' "
                                      "(or pip install opencv-python-headless)") from None
    return cv2
