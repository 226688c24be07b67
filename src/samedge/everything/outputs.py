"""What `samedge everything` writes per image: an overlay PNG (every mask in its own colour, outlined) and a
COCO-format JSON (images / annotations / categories, compressed or uncompressed RLE) that pycocotools.coco.COCO
loads."""
from __future__ import annotations

from typing import Any

import numpy as np

from .agreement import record_mask
from .masks import coco_encode_rle, masks_to_rle


def _colours(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) uint8 distinct bright colours: random hues at high saturation and value (a fixed seed, so a
    rerun draws the same picture)."""
    rng = np.random.default_rng(seed)
    h, s, v = rng.random(count), 0.65 + 0.35 * rng.random(count), np.full(count, 0.95)
    sextant = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r = np.choose(sextant, [v, q, p, p, t, v])
    g = np.choose(sextant, [t, v, v, q, p, p])
    b = np.choose(sextant, [p, p, t, v, v, q])
    return (np.stack([r, g, b], axis=1) * 255).astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def overlay_all(image: np.ndarray, records: list[dict[str, Any]], alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8 -> the image with every mask filled in its own colour and outlined, largest first (so small
    masks stay visible on top)."""
    out = image.astype(np.float32)
    order = sorted(range(len(records)), key=lambda i: -records[i]["area"])
    colours = _colours(len(records))
    for rank, i in enumerate(order):
        mask = record_mask(records[i])
        colour = colours[rank].astype(np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        out[_outline(mask)] = colour
    return np.clip(out, 0, 255).astype(np.uint8)


def coco_document(records: list[dict[str, Any]], file_name: str, image_hw: tuple[int, int], *,
                  compressed: bool = True, image_id: int = 1, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A COCO results file of one image: every record becomes an annotation of the one category "object" with
    its RLE (compressed COCO RLE, or uncompressed counts), area, bbox (XYWH), score (= predicted_iou) and the
    generator's own fields (predicted_iou, stability_score, point_coords, crop_box)."""
    h, w = image_hw
    annotations = []
    for k, rec in enumerate(records, start=1):
        seg = rec["segmentation"]
        if isinstance(seg, np.ndarray) or isinstance(seg.get("counts"), list) == compressed:
            rle = masks_to_rle(record_mask(rec)[None])[0]
            seg = coco_encode_rle(rle) if compressed else rle
        annotations.append({"id": k, "image_id": image_id, "category_id": 1, "iscrowd": 0, "segmentation": seg,
                            "area": int(rec["area"]), "bbox": [float(v) for v in rec["bbox"]],
                            "score": float(rec["predicted_iou"]), "predicted_iou": float(rec["predicted_iou"]),
                            "stability_score": float(rec["stability_score"]),
                            "point_coords": rec["point_coords"], "crop_box": rec["crop_box"]})
    return {"info": info or {}, "images": [{"id": image_id, "file_name": file_name, "height": h, "width": w}],
            "annotations": annotations, "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}
