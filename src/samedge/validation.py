"""Checks of user input with messages that say what was given and what is allowed."""
from __future__ import annotations

import numpy as np

from .errors import InputError

ALLOWED_LABELS = (-1, 0, 1)  # -1 ignore, 0 background, 1 foreground; 2/3 (box corners) are internal
# 16384 px a side / 2^28 pixels (a 16k x 16k image is 768 MB as uint8): larger is a mistake, not a photo, and
# would be copied and resized until memory runs out
MAX_IMAGE_SIDE = 16384
MAX_IMAGE_PIXELS = 1 << 28


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"array of shape {a.shape} and dtype {a.dtype}"
    return type(a).__name__


def check_flag(value: object, name: str) -> bool:
    """A real bool (numpy's bool_ too): "False" or None would silently mean the opposite or the default."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_positive_count(value: object, name: str) -> None:
    """None (the default) or a positive int, e.g. a thread count; a bool is refused (True would silently mean 1)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError(f"{name} must be a positive integer or None, got {value!r}")


def _as_array(value: object, what: str) -> np.ndarray:
    try:
        a = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise InputError(f"{what} must be a rectangular numeric array, got ragged input: {exc}") from None
    if a.dtype == object or np.issubdtype(a.dtype, np.complexfloating) or a.dtype == np.bool_:
        raise InputError(f"{what} must hold real numbers, got {_describe(a)}")
    return a


def check_image(image: object, image_format: str, model_size: int = 1024) -> np.ndarray:
    if image_format not in ("RGB", "BGR"):
        raise InputError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array (H, W, 3) uint8, got {_describe(image)}")
    if image.dtype != np.uint8:
        raise InputError(f"image must have dtype uint8 (0-255), got {image.dtype}; convert floats with "
                         "(img * 255).round().astype(np.uint8) if they are in [0, 1]")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must have shape (H, W, 3), got {image.shape}"
                         + ("; drop the alpha channel (image[..., :3])" if image.ndim == 3 and image.shape[2] == 4 else ""))
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"image must be at least 1x1 pixels, got {image.shape}")
    h, w = image.shape[:2]
    if max(h, w) > MAX_IMAGE_SIDE or h * w > MAX_IMAGE_PIXELS:
        raise InputError(f"image is {w}x{h}; samedge takes at most {MAX_IMAGE_SIDE} px a side and "
                         f"{MAX_IMAGE_PIXELS} pixels (downscale it first: the model sees {model_size} px anyway)")
    short = min(h, w) * model_size / max(h, w)
    if int(short + 0.5) < 1:
        raise InputError(f"image is {w}x{h}: resized to {model_size} px on its long side, its short side would "
                         f"be 0 px; the aspect ratio may be at most {2 * model_size - 1}:1")
    return image


def check_points(coords: object, labels: object, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    if (coords is None) != (labels is None):
        raise InputError("point_coords and point_labels must be given together")
    c = _as_array(coords, "point_coords")
    lab = _as_array(labels, "point_labels")
    if c.ndim != 2 or c.shape[1] != 2 or c.shape[0] == 0 or not np.issubdtype(c.dtype, np.number):
        raise InputError(f"point_coords must be a numeric (N, 2) array of x, y with N >= 1, got {_describe(c)}")
    if lab.shape != (c.shape[0],) or not np.issubdtype(lab.dtype, np.number):
        raise InputError(f"point_labels must be a numeric ({c.shape[0]},) array to match point_coords, "
                         f"got {_describe(lab)}")
    c = c.astype(np.float64)
    if not np.all(np.isfinite(c)):
        raise InputError(f"point_coords contains NaN or infinity: {c.tolist()}")
    _check_inside(c, hw, "point_coords")
    if not np.all(np.isin(lab, ALLOWED_LABELS)):
        bad = sorted(set(np.asarray(lab).tolist()) - set(ALLOWED_LABELS))
        raise InputError(f"point_labels must be 1 (foreground), 0 (background) or -1 (ignore), got {bad}; "
                         "labels 2/3 are box corners, pass a box with box= instead")
    return c, lab.astype(np.float32)


def check_box(box: object, hw: tuple[int, int]) -> np.ndarray:
    b = _as_array(box, "box")
    if b.shape not in ((4,), (1, 4)) or not np.issubdtype(b.dtype, np.number):
        raise InputError(f"box must be a numeric array x0, y0, x1, y1 of shape (4,) or (1, 4), got {_describe(b)}")
    b = b.reshape(4).astype(np.float64)
    if not np.all(np.isfinite(b)):
        raise InputError(f"box contains NaN or infinity: {b.tolist()}")
    if b[2] < b[0] or b[3] < b[1]:
        raise InputError(f"box must satisfy x0 <= x1 and y0 <= y1, got x0={b[0]}, y0={b[1]}, x1={b[2]}, y1={b[3]}")
    _check_inside(b.reshape(2, 2), hw, "box")
    return b


def check_mask_input(mask: object, size: int) -> np.ndarray:
    m = _as_array(mask, "mask_input")
    if m.shape != (1, size, size) or not np.issubdtype(m.dtype, np.floating):
        raise InputError(f"mask_input must be float low-res logits of shape (1, {size}, {size}) "
                         f"(a low_res_logits row from a previous predict), got {_describe(m)}")
    if not np.all(np.isfinite(m)):
        raise InputError("mask_input contains NaN or infinity")
    return m.astype(np.float32)


def _check_inside(xy: np.ndarray, hw: tuple[int, int], what: str) -> None:
    h, w = hw
    outside = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)
    if np.any(outside):
        raise InputError(f"{what} has coordinates outside the {w}x{h} image (x in [0, {w}], y in [0, {h}]): "
                         f"{xy[outside].tolist()}")
