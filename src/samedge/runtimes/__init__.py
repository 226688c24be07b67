"""Inference backends behind one small Session protocol. Numpy plus the chosen backend; never torch.

Each backend is a module here (onnxruntime, openvino, coreml), imported only when first used. A module
provides FORMAT (the bundle format it reads), EXTRA (the pip extra that installs it),
probe() -> list[DeviceStatus], resolve_auto() -> (device, why), needs_static_shapes(device) and
open_session(path, device, options).
"""
from __future__ import annotations

import importlib
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import BundleError, InputError, RunInterrupted
from ..validation import check_positive_count

BACKENDS = ("onnxruntime", "openvino", "coreml")
DEVICES = ("cpu", "gpu", "npu")
PRECISIONS = ("f32", "bf16", "f16", "default")  # "default": no hint, whatever the backend picks (recorded)


@dataclass(frozen=True)
class SessionOptions:
    """Options for open_session. ORT and OpenVINO take all that apply to them; CoreML rejects them all."""
    threads: int | None = None  # intra-op CPU threads; None = the backend's default (all cores)
    # Inference precision hint. None = f32 everywhere (exact parity); "default" = the backend's own
    # choice, which for OpenVINO on CPUs with AMX / AVX512-bf16 is bf16: faster, measurably less faithful.
    precision: str | None = None
    cache_dir: Path | None = None  # ORT optimized-model cache / OpenVINO compiled-model cache
    optimization_level: str = "all"  # ORT graph optimisation: disable | basic | extended | all
    provider: str | None = None  # ORT: force one execution provider (e.g. TensorrtExecutionProvider)
    # OpenVINO CPU only: compile for this many parallel streams and split a batch across them (the inputs
    # whose first dimension is dynamic, split along it; outputs joined along it). For graphs whose every
    # output is per batch row (the staged prompt graphs). None / 1: one stream, the latency setting.
    streams: int | None = None

    def __post_init__(self) -> None:
        check_positive_count(self.threads, "threads")
        check_positive_count(self.streams, "streams")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS} or None, got {self.precision!r}")
        if self.optimization_level not in ("disable", "basic", "extended", "all"):
            raise InputError("optimization_level must be disable, basic, extended or all, "
                             f"got {self.optimization_level!r}")


@dataclass(frozen=True)
class SessionInfo:
    """What actually runs, as the backend reports it (not what was asked for)."""
    backend: str
    device: str
    version: str
    executes_on: tuple[str, ...]  # ORT providers / OpenVINO execution devices / CoreML compute units
    precision: str  # the inference precision actually used
    details: dict[str, Any] = field(default_factory=dict)  # e.g. nodes per execution provider


@dataclass(frozen=True)
class DeviceStatus:
    backend: str
    device: str
    available: bool
    detail: str  # what would run (provider, device name) or why it cannot
    version: str | None = None


class Interrupt:
    """Stops one run of a Session from another thread: pass it to `run(feeds, interrupt=...)` and call `set()`.
    The run raises RunInterrupted as soon as the backend can stop (ONNX Runtime: before its next node, through
    RunOptions.terminate; OpenVINO: InferRequest.cancel, likewise between nodes; CoreML cannot stop a
    prediction, so only a run that has not started yet is refused). Once set, it stays set: a run handed a set
    Interrupt does not start. One Interrupt per request; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._hooks: list[Callable[[], None]] = []

    def set(self) -> None:
        with self._lock:  # hooks run under the lock, so none runs after its run has unhooked it
            self._set = True
            for hook in self._hooks:
                hook()

    @property
    def is_set(self) -> bool:
        return self._set

    @contextmanager
    def hooked(self, stop: Callable[[], None]):
        """While the block runs, set() calls `stop` (and calls it at once if already set). A backend wraps
        its run in this; after the block, set() no longer touches that run."""
        with self._lock:
            self._hooks.append(stop)
            if self._set:
                stop()
        try:
            yield
        finally:
            with self._lock:
                self._hooks.remove(stop)

    def check(self, what: str) -> None:
        """Raise RunInterrupted if set (before a run starts, or after a backend's stopped run failed)."""
        if self._set:
            raise RunInterrupted(f"{what}: interrupted (Interrupt.set() was called) before it finished")


class Session(Protocol):
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_shapes: tuple[tuple[int | str, ...], ...]
    info: SessionInfo

    def run(self, feeds: dict[str, np.ndarray], interrupt: Interrupt | None = None) -> dict[str, np.ndarray]:
        """Outputs the caller owns. With an Interrupt, another thread can stop the run (RunInterrupted)."""
        ...

    def run_borrowed(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs that may be the session's own buffers, valid only until its next run (no copy)."""
        ...


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)} (or auto in SamPredictor)")
    return backend


def check_device(device: str) -> str:
    if device not in (*DEVICES, "auto"):
        raise InputError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)} or auto")
    return device


def resolve_device(backend: str, device: str) -> tuple[str, str]:
    """(device, why): 'auto' becomes the backend's best device here (OpenVINO and CoreML keep their own
    AUTO / ALL scheduling); a named device is checked and kept."""
    if check_device(device) != "auto":
        return device, "asked for"
    return backend_module(backend).resolve_auto()


def backend_module(backend: str) -> ModuleType:
    """The backend's module; importing it does not import the backend's library (that happens on use)."""
    return importlib.import_module(f".{check_backend(backend)}", __name__)


def backend_for_format(fmt: str) -> str:
    """The backend that runs a bundle format ("onnx" -> "onnxruntime"), from each backend's FORMAT."""
    for name in BACKENDS:
        if backend_module(name).FORMAT == fmt:
            return name
    raise BundleError(f"no backend runs bundle format {fmt!r}")


def open_session(path: str | Path, backend: str = "onnxruntime", device: str = "cpu",
                 options: SessionOptions | None = None) -> Session:
    device, _ = resolve_device(backend, device)
    return backend_module(backend).open_session(Path(path), device, options or SessionOptions())


def check_session_io(session: Session, graph) -> None:
    """The opened graph's inputs and outputs must be the ones its manifest entry (a GraphInfo) names, in order,
    with the same static dimensions: a graph swapped for another one is a BundleError, not a crash in a run."""
    want_in, want_out = tuple(t.name for t in graph.inputs), tuple(t.name for t in graph.outputs)
    if tuple(session.input_names) != want_in or tuple(session.output_names) != want_out:
        raise BundleError(f"{graph.file} has I/O {list(session.input_names)} -> {list(session.output_names)}, but the "
                          f"manifest says {list(want_in)} -> {list(want_out)}: the graph is not the one exported")
    for spec, shape in zip(graph.inputs, session.input_shapes):
        fixed = [(a, b) for a, b in zip(spec.shape, shape) if isinstance(a, int) and isinstance(b, int)]
        if len(shape) != len(spec.shape) or any(a != b for a, b in fixed):
            raise BundleError(f"{graph.file} input {spec.name} has shape {list(shape)}, the manifest says "
                              f"{list(spec.shape)}")


def list_devices() -> list[DeviceStatus]:
    """Every backend x device pair: usable here (with what runs) or why not. Never raises."""
    return [status for name in BACKENDS for status in backend_module(name).probe()]
