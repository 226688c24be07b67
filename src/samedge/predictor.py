"""SamPredictor: the official predictor's API on top of an exported bundle. No backend code here."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import processing
from .bundle import Bundle, load_bundle
from .errors import InputError, SamEdgeError
from .manifest import GraphInfo
from .runtimes import Session, open_session
from .validation import check_box, check_image, check_mask_input, check_points

log = logging.getLogger(__name__)


class NoImageError(SamEdgeError, RuntimeError):
    """predict() or get_image_embedding() was called before set_image()."""


class SamPredictor:
    """Drop-in for segment_anything.SamPredictor: set_image(), then predict() as often as you like."""

    def __init__(self, bundle: Bundle | str | Path, backend: str = "onnxruntime", threads: int | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.backend = backend
        self._threads = threads
        m = self.bundle.manifest
        self._encoder = self._open(m.encoder)
        self._decoders: dict[str, Session] = {}
        # Parity checks pin one decoder graph; normal use picks per prompt (Bundle.decoder_for).
        self.pinned_decoder: GraphInfo | None = None
        self.reset_image()

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "onnxruntime", threads: int | None = None) -> "SamPredictor":
        return cls(path, backend=backend, threads=threads)

    def _open(self, graph: GraphInfo) -> Session:
        return open_session(str(self.bundle.file(graph)), self.backend, threads=self._threads)

    # -- image -----------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        image = check_image(image, image_format)
        if image_format == "BGR":
            image = np.ascontiguousarray(image[..., ::-1])
        m = self.bundle.manifest
        model_input, geom = processing.preprocess_image(image, m.image_size, m.pixel_mean, m.pixel_std)
        outputs = self._encoder.run({m.encoder.inputs[0].name: model_input})
        self.set_image_embedding(outputs[m.encoder.outputs[0].name], geom)

    def set_image_embedding(self, embedding: np.ndarray, geometry: processing.ImageGeometry) -> None:
        expected = tuple(self.bundle.manifest.embedding_shape)
        if embedding.shape != expected or embedding.dtype != np.float32:
            raise InputError(f"embedding must be float32 {expected}, got {embedding.shape} {embedding.dtype}")
        self.features = embedding
        self.geometry = geometry
        self.original_size = geometry.original_hw
        self.input_size = geometry.input_hw
        self.is_image_set = True

    def get_image_embedding(self) -> np.ndarray:
        if not self.is_image_set:
            raise NoImageError("an image must be set with .set_image(...) before the embedding exists")
        return self.features

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features: np.ndarray | None = None
        self.geometry: processing.ImageGeometry | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    # -- prompts ---------------------------------------------------------------------------------
    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask_output: bool = True,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks (C, H, W) bool (float32 logits with return_logits), scores (C,), low-res logits (C, 256, 256).

        C is 3 with multimask_output, else 1, exactly as in the official predictor.
        """
        if not self.is_image_set:
            raise NoImageError("an image must be set with .set_image(...) before mask prediction")
        m = self.bundle.manifest
        coords, labels = self._prompt_rows(point_coords, point_labels, box)
        if mask_input is not None:
            mask = check_mask_input(mask_input, m.low_res_mask_size)[None]
            has_mask = np.ones(1, np.float32)
        else:
            mask = np.zeros((1, 1, m.low_res_mask_size, m.low_res_mask_size), np.float32)
            has_mask = np.zeros(1, np.float32)
        low_res, scores = self._decode(coords, labels, mask, has_mask)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        low_res, scores = low_res[0, sl], scores[0, sl]
        masks = processing.postprocess_masks(low_res, self.geometry)
        if not return_logits:
            masks = masks > m.mask_threshold
        return masks, scores, low_res

    def _prompt_rows(self, point_coords, point_labels, box) -> tuple[np.ndarray, np.ndarray]:
        """User prompts -> decoder rows in the resized frame: points, then box corners (2, 3), or a
        padding point (-1) when there is no box, exactly as the official prompt encoder builds them."""
        if point_coords is None and point_labels is None and box is None:
            raise InputError("give at least one prompt: point_coords with point_labels, and/or box")
        rows, labels = [], []
        if point_coords is not None or point_labels is not None:
            c, lab = check_points(point_coords, point_labels, self.original_size)
            rows.append(processing.transform_coords(c, self.geometry))
            labels.append(lab)
        if box is not None:
            b = check_box(box, self.original_size)
            rows.append(processing.transform_boxes(b, self.geometry).reshape(2, 2))
            labels.append(np.array([2, 3], np.float32))
        else:
            rows.append(np.zeros((1, 2), np.float32))
            labels.append(np.array([-1], np.float32))
        return np.concatenate(rows)[None].astype(np.float32), np.concatenate(labels)[None].astype(np.float32)

    def _decode(self, coords: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                has_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        graph = self.pinned_decoder or self.bundle.decoder_for(coords.shape[1] - 1)
        session = self._decoders.get(graph.file)
        if session is None:
            session = self._decoders[graph.file] = self._open(graph)
        names = [t.name for t in graph.inputs]
        feeds = dict(zip(names, (self.features, coords, labels, mask, has_mask)))
        out = session.run(feeds)
        return out[graph.outputs[0].name], out[graph.outputs[1].name]
