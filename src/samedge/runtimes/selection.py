"""backend='auto' / device='auto': the documented preference order, and why each candidate was or wasn't used.

Order (first usable wins):
  1. coreml       on macOS, when the bundle has CoreML graphs (Neural Engine + GPU + CPU via ComputeUnit.ALL)
  2. onnxruntime  on a GPU or NPU execution provider that really starts here (CUDA, TensorRT, DirectML, ROCm,
                  QNN, ...)
  3. openvino     when installed and the bundle has OpenVINO IR (Intel CPUs, iGPUs and NPUs; AUTO device)
  4. onnxruntime  on the CPU (always there with the ort extra)
With an explicit device, the same order applies to the backends that can run on that device.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import BackendUnavailableError
from . import backend_module, check_backend, check_device


@dataclass(frozen=True)
class Choice:
    backend: str
    device: str
    reason: str
    skipped: tuple[str, ...] = ()  # "backend/device: why not", in order


def _candidates(device: str) -> list[tuple[str, str]]:
    if device == "auto":
        return [("coreml", "auto"), ("onnxruntime", "gpu"), ("onnxruntime", "npu"), ("openvino", "auto"),
                ("onnxruntime", "cpu")]
    return [("coreml", device), ("onnxruntime", device), ("openvino", device)] if device != "cpu" else [
        ("openvino", "cpu"), ("onnxruntime", "cpu"), ("coreml", "cpu")]


def choose(backend: str, device: str, bundle_formats: tuple[str, ...]) -> Choice:
    """Resolve backend/device ('auto' allowed in either) for a bundle holding bundle_formats."""
    check_device(device)
    if backend != "auto":
        module = backend_module(check_backend(backend))
        resolved, why = (device, "asked for") if device != "auto" else module.resolve_auto()
        return Choice(backend, resolved, why)
    skipped = []
    statuses: dict[str, dict] = {}
    for name, dev in _candidates(device):
        module = backend_module(name)
        if module.FORMAT not in bundle_formats:
            skipped.append(f"{name}/{dev}: the bundle has no {module.FORMAT} graphs")
            continue
        if name not in statuses:
            statuses[name] = {s.device: s for s in module.probe()}
        probe = statuses[name]
        if dev == "auto":
            if not any(s.available for s in probe.values()):
                skipped.append(f"{name}/auto: " + next(iter(probe.values())).detail)
                continue
            try:
                dev_resolved, why = module.resolve_auto()
            except BackendUnavailableError as exc:
                skipped.append(f"{name}/auto: {exc}")
                continue
            return Choice(name, dev_resolved, why, tuple(skipped))
        if not probe[dev].available:
            skipped.append(f"{name}/{dev}: {probe[dev].detail}")
            continue
        return Choice(name, dev, f"{probe[dev].detail}", tuple(skipped))
    raise BackendUnavailableError(f"no backend can run this bundle on {device}: " + "; ".join(skipped))

