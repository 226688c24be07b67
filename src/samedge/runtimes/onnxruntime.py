"""ONNX Runtime backend (CPU execution provider)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, BundleError


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError("the onnxruntime backend needs the onnxruntime package: "
                                      "pip install 'samedge[ort]'") from exc
    return onnxruntime


class OrtSession:
    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = _import_ort()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises Fail / InvalidProtobuf / InvalidGraph for a bad file
            raise BundleError(f"onnxruntime cannot load {path}: {type(exc).__name__}: {exc}. "
                              "The file is corrupt or not an ONNX model; re-export the bundle.") from exc
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._session.run(list(self.output_names), feeds)
        return dict(zip(self.output_names, outputs))
