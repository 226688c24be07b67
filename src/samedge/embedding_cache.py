"""An LRU cache of image embeddings keyed by image content, so repeated frames skip the encoder."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .processing import ImageGeometry


@dataclass(frozen=True)
class ImageEmbedding:
    """An encoded image: what set_image_embedding() takes and set_image_async() resolves to."""
    embedding: np.ndarray  # (1, 256, 64, 64) float32, read-only once the predictor holds it (shared with the cache)
    geometry: ImageGeometry
    key: str | None = None  # content key (None when the embedding came from outside)
    encode_ms: float = 0.0  # preprocessing + encoder (+ context) time; 0 for a cache hit
    from_cache: bool = False
    # The split decoder's per-image products (context graph outputs by name), read-only; None without one.
    # For MobileSAM/SAM about 27 MB per image, kept in the cache with the embedding.
    context: dict[str, np.ndarray] | None = None
    context_ms: float = 0.0  # the context graph's share of encode_ms
    # The encoder's other outputs that the decoder takes, by name, read-only: SAM 2.1's high-res features
    # high_res_feats_0 (1, 32, 256, 256) and high_res_feats_1 (1, 64, 128, 128); None for SAM 1 (~10 MB).
    features: dict[str, np.ndarray] | None = None


def image_key(image: np.ndarray, image_format: str) -> str:
    """Content hash (blake2b, ~1 GB/s: a few ms for a 1080p frame, against an encoder's 100s of ms)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.shape}|{image.dtype}|{image_format}".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


class EmbeddingCache:
    def __init__(self, capacity: int) -> None:
        if not isinstance(capacity, int) or capacity < 0:
            raise InputError(f"embedding cache size must be an integer >= 0 (0 disables it), got {capacity!r}")
        self.capacity = capacity
        self._items: OrderedDict[str, ImageEmbedding] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> ImageEmbedding | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, item: ImageEmbedding) -> None:
        if self.capacity == 0 or item.key is None:
            return
        with self._lock:
            self._items[item.key] = item
            self._items.move_to_end(item.key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
