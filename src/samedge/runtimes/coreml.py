"""CoreML backend: runs the bundle's .mlpackage graphs (coreml/) on macOS.

coremltools converts and inspects models on any OS, but prediction needs Apple's CoreML framework,
so on Linux and Windows every device reports why it is unavailable and opening a session raises
BackendUnavailableError. Graphs are static-shaped (a flexible point count failed to convert), so the
decoder is always one of the static point-count variants.
"""
from __future__ import annotations

import logging
import platform
import threading
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, BundleError, InputError
from . import DEVICES, DeviceStatus, Interrupt, SessionInfo, SessionOptions

log = logging.getLogger(__name__)
FORMAT = "coreml"
EXTRA = "coreml"
COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "npu": "CPU_AND_NE", "auto": "ALL"}


def _import_ct():
    try:
        import coremltools
    except ImportError as exc:
        raise BackendUnavailableError(f"the coreml backend needs coremltools: pip install 'samedge[{EXTRA}]'") from exc
    return coremltools


def _check_platform() -> None:
    if platform.system() != "Darwin":
        raise BackendUnavailableError(f"CoreML prediction needs macOS (this is {platform.system()}); the .mlpackage "
                                      "graphs can be converted and inspected here, but run them on a Mac")


def needs_static_shapes(device: str) -> bool:
    return True


def resolve_auto() -> tuple[str, str]:
    _check_platform()
    return "auto", "CoreML's ComputeUnit.ALL lets the OS place each layer on CPU, GPU or Neural Engine"


class CoreMLSession:
    def __init__(self, path: Path, device: str = "cpu", options: SessionOptions | None = None) -> None:
        _check_platform()  # before the import: on Linux coremltools loads but cannot predict
        ct = _import_ct()
        options = options or SessionOptions()
        if options.threads or options.precision not in (None, "default") or options.provider or (options.streams or 1) > 1:
            raise InputError("the coreml backend takes no threads/precision/provider/streams options: it runs the "
                             "precision the .mlpackage was converted with (samedge convert --coreml-precision)")
        if device == "npu" and platform.machine() != "arm64":
            raise BackendUnavailableError("the Neural Engine (npu) exists only on Apple silicon; this Mac is "
                                          f"{platform.machine()}")
        units = getattr(ct.ComputeUnit, COMPUTE_UNITS[device])
        self._name = Path(path).name
        try:
            self._model = ct.models.MLModel(str(path), compute_units=units)
        except Exception as exc:
            raise BundleError(f"CoreML cannot load {path}: {type(exc).__name__}: {exc}; re-run "
                              "`samedge convert --format coreml`") from exc
        spec = self._model.get_spec()
        self.input_names = tuple(i.name for i in spec.description.input)
        self.output_names = tuple(o.name for o in spec.description.output)
        self.input_shapes = tuple(tuple(i.type.multiArrayType.shape) for i in spec.description.input)
        self._lock = threading.Lock()
        meta = dict(spec.description.metadata.userDefined)
        self.info = SessionInfo("coreml", device, ct.__version__, (COMPUTE_UNITS[device],),
                                meta.get("samedge.compute_precision", "unknown"),
                                {"precision_policy": meta.get("samedge.precision_policy")})

    def run(self, feeds: dict[str, np.ndarray], interrupt: Interrupt | None = None) -> dict[str, np.ndarray]:
        with self._lock:
            if interrupt is not None:  # CoreML cannot stop a prediction: only one not started yet is refused
                interrupt.check(self._name)
            out = self._model.predict(feeds)
        return {name: np.asarray(out[name], np.float32) for name in self.output_names}

    def run_borrowed(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Session.run_borrowed: run(), whose outputs are already the caller's own arrays."""
        return self.run(feeds)


def open_session(path: Path, device: str, options: SessionOptions) -> CoreMLSession:
    return CoreMLSession(path, device, options)


def _installed_version() -> str | None:
    """coremltools' version without importing it: the import pulls in torch when torch is installed and
    logs a page of warnings on Linux, neither of which a device listing should cost."""
    from importlib import metadata
    try:
        return metadata.version("coremltools")
    except metadata.PackageNotFoundError:
        return None


def probe() -> list[DeviceStatus]:
    version = _installed_version()
    if version is None:
        return [DeviceStatus("coreml", d, False, f"library missing: coremltools is not installed: pip install "
                            f"'samedge[{EXTRA}]'") for d in DEVICES]
    out = []
    for device in DEVICES:
        try:
            _check_platform()
            if device == "npu" and platform.machine() != "arm64":
                raise BackendUnavailableError("no Neural Engine: it exists only on Apple silicon")
            out.append(DeviceStatus("coreml", device, True, f"ComputeUnit.{COMPUTE_UNITS[device]}", version))
        except BackendUnavailableError as exc:
            out.append(DeviceStatus("coreml", device, False, str(exc), version))
    return out
