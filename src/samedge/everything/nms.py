"""Box non-maximum suppression with torchvision.ops.nms / batched_nms semantics, in numpy.

torchvision: boxes (x0, y0, x1, y1) in float32, scores sorted descending with a stable sort (equal scores keep
their input order, which decides the crop NMS, where every mask of a crop has the same score), a box is dropped
when its IoU with a kept box is > iou_threshold, and the result lists kept indices by decreasing score."""
from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x0, y0, x1, y1 -> (N,) areas."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """(N, 4) boxes, (N,) scores -> kept indices (K,) int64, by decreasing score."""
    boxes = np.asarray(boxes, np.float32)
    scores = np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (boxes.shape[0],):
        raise ValueError(f"nms takes boxes (N, 4) and scores (N,), got {boxes.shape} and {scores.shape}")
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    area = box_area(boxes)
    suppressed = np.zeros(len(order), bool)
    keep = []
    for rank in range(len(order)):
        if suppressed[rank]:
            continue
        keep.append(rank)
        rest = slice(rank + 1, None)  # one row of IoUs per kept box: memory O(N), not O(N^2)
        lt = np.maximum(boxes[rank, :2], boxes[rest, :2])
        rb = np.minimum(boxes[rank, 2:], boxes[rest, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: 0/0 is NaN, and NaN > t is False
            suppressed[rest] |= inter / (area[rank] + area[rest] - inter) > np.float32(iou_threshold)
    return order[np.asarray(keep, np.int64)] if keep else np.zeros(0, np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, categories: np.ndarray, iou_threshold: float) -> np.ndarray:
    """NMS within each category independently (torchvision's coordinate-offset trick: boxes of different
    categories are moved apart so they never overlap), kept indices by decreasing score."""
    boxes = np.asarray(boxes, np.float32)
    if boxes.shape[0] == 0:
        return np.zeros(0, np.int64)
    offsets = np.asarray(categories, np.float32) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)
