"""Point grids and crop boxes of the automatic mask generator, as segment_anything.utils.amg builds them."""
from __future__ import annotations

import math
from itertools import product

import numpy as np


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) points x, y in [0, 1], cell centres of an n x n grid, x fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer 0..n_layers; layer i has int(n_per_side / scale_per_layer**i) points a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer ** i))) for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: tuple[int, int], n_layers: int,
                        overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes x0, y0, x1, y1 (the whole image first, then (2^i)^2 overlapping crops in layer i) and the
    layer of each. im_size is (H, W)."""
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i_layer in range(n_layers):
        per_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w, crop_h = crop_len(im_w, per_side, overlap), crop_len(im_h, per_side, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x0s, y0s):  # x-major, as the official code orders them
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(i_layer + 1)
    return boxes, layers


def is_box_near_crop_edge(boxes: np.ndarray, crop_box: list[int], orig_box: list[int],
                          atol: float = 20.0) -> np.ndarray:
    """(N, 4) boxes in the crop's frame -> (N,) bool: some side lies within atol px of a crop edge that is not
    an image edge (torch.isclose with rtol=0, in float32)."""
    crop = np.asarray(crop_box, np.float32)
    orig = np.asarray(orig_box, np.float32)
    boxes = (np.asarray(boxes) + np.asarray(crop_box[:2] * 2)).astype(np.float32)
    near_crop = np.abs(boxes - crop[None]) <= np.float32(atol)
    near_image = np.abs(boxes - orig[None]) <= np.float32(atol)
    return np.any(near_crop & ~near_image, axis=1)


def xyxy_to_xywh(box: np.ndarray) -> list:
    """x0, y0, x1, y1 -> [x0, y0, w, h] (numbers as Python scalars, for JSON)."""
    x0, y0, x1, y1 = np.asarray(box).tolist()
    return [x0, y0, x1 - x0, y1 - y0]
