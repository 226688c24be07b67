"""Inference backends behind one small Session protocol. Numpy plus the chosen backend; never torch."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Session(Protocol):
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ...


def open_session(path: str, backend: str = "onnxruntime", **options) -> Session:
    if backend == "onnxruntime":
        from .onnxruntime import OrtSession
        return OrtSession(path, **options)
    from ..errors import InputError
    raise InputError(f"unknown backend {backend!r}; allowed here: onnxruntime")
