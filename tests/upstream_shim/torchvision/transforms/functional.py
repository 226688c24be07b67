"""torchvision.transforms.functional.resize / to_pil_image for PIL images and uint8 HWC arrays, the only use
segment_anything.utils.transforms.ResizeLongestSide.apply_image makes of them."""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_pil_image(pic) -> Image.Image:
    """uint8 HxWxC ndarray -> PIL image (torchvision's mode choice for 3 channels: RGB)."""
    array = np.asarray(pic)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise TypeError(f"this shim converts uint8 HxWx3 arrays only, got {array.shape} {array.dtype}")
    return Image.fromarray(array, mode="RGB")


def resize(img, size, interpolation=None, max_size=None, antialias=True):
    """PIL input: Image.resize to (h, w) = size with bilinear filtering, which is what torchvision does for a
    PIL image (interpolation defaults to BILINEAR; PIL always antialiases when it shrinks)."""
    if not isinstance(img, Image.Image):
        raise TypeError("this shim resizes PIL images only (segment_anything passes to_pil_image(...))")
    if isinstance(size, int) or len(size) != 2:
        raise TypeError(f"this shim takes size=(h, w), got {size!r}")
    h, w = size
    return img.resize((int(w), int(h)), Image.BILINEAR)
