"""ONNX Runtime backend: the execution provider is chosen by device, and we check it really runs there.

ORT silently falls back to the CPU when a provider fails to initialise (no driver, no device); here
that is an error, because a user who asked for the GPU must not get CPU latency without being told.
"""
from __future__ import annotations

import logging
import platform
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, BundleError, InputError
from . import DEVICES, DeviceStatus, Interrupt, SessionInfo, SessionOptions

log = logging.getLogger(__name__)
FORMAT = "onnx"
EXTRA = "ort"
PROBE_MODEL = Path(__file__).with_name("probe.onnx")  # a one-node Relu graph, to check a provider really works

# Preference order per device; the first provider that the installed build has wins.
DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "gpu": ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider",
            "MIGraphXExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider",
            "OpenVINOExecutionProvider"),
    "npu": ("QNNExecutionProvider", "OpenVINOExecutionProvider", "VitisAIExecutionProvider",
            "CoreMLExecutionProvider"),
}
_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}
_INSTALL_HINT = {"gpu": "install onnxruntime-gpu (CUDA/TensorRT), onnxruntime-directml (Windows) or "
                        "onnxruntime-rocm/migraphx (AMD) in place of onnxruntime",
                 "npu": "install onnxruntime-qnn (Snapdragon), onnxruntime-openvino (Intel NPU) "
                        "or the Vitis AI build (AMD Ryzen AI) in place of onnxruntime"}


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError("the onnxruntime backend needs the onnxruntime package: "
                                      f"pip install 'samedge[{EXTRA}]'") from exc
    return onnxruntime


def _provider_options(provider: str, device: str) -> dict[str, str]:
    if provider == "OpenVINOExecutionProvider":
        return {"device_type": device.upper()}
    if provider == "QNNExecutionProvider":
        return {"backend_path": "QnnHtp.dll" if platform.system() == "Windows" else "libQnnHtp.so"}
    if provider == "CoreMLExecutionProvider":
        return {"MLComputeUnits": {"gpu": "CPUAndGPU", "npu": "CPUAndNeuralEngine"}.get(device, "ALL")}
    return {}


def choose_provider(device: str, available: list[str], forced: str | None = None) -> str:
    if forced is not None:
        if forced not in available:
            raise BackendUnavailableError(f"execution provider {forced} is not in this onnxruntime build "
                                          f"(it has {', '.join(available)})")
        return forced
    for provider in DEVICE_PROVIDERS[device]:
        if provider in available:
            return provider
    raise BackendUnavailableError(f"onnxruntime has no {device} execution provider in this build (it has "
                                  f"{', '.join(available)}); {_INSTALL_HINT[device]}")


def needs_static_shapes(device: str) -> bool:
    return device == "npu"  # QNN / Intel NPU compile fixed shapes; TensorRT copes with dynamic ones


def _session(ort, path_or_bytes, device: str, options: SessionOptions, provider: str,
             save_optimized: Path | None = None):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if options.threads:
        opts.intra_op_num_threads = options.threads
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[options.optimization_level])
    opts.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    # ORT's idle threads spin after each run by default; between SAM's runs numpy post-processes and the
    # async encoder shares the cores, and the spinning took them: predict() 46 -> 32.5 ms here, encoder +3%
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if save_optimized is not None:
        opts.optimized_model_filepath = str(save_optimized)  # written while the session is created
    providers = [(provider, _provider_options(provider, device))]
    if provider != "CPUExecutionProvider":
        providers.append(("CPUExecutionProvider", {}))  # for the nodes the accelerator cannot take
    return ort.InferenceSession(path_or_bytes, opts, providers=providers)


def _optimized_cache_path(path: Path, options: SessionOptions, version: str) -> Path | None:
    """Where ORT saves the optimised graph, so the next start skips optimisation (CPU only: a graph
    optimised for one provider is not portable; graphs with external data are left alone)."""
    if options.cache_dir is None or path.with_name(path.name + ".data").exists():
        return None
    from ..artifacts import artifact_sha256
    key = artifact_sha256(path)[:16]
    return Path(options.cache_dir) / f"{path.stem}-{key}-ort{version}-{options.optimization_level}.onnx"


class OrtSession:
    def __init__(self, path: Path, device: str = "cpu", options: SessionOptions | None = None) -> None:
        ort = _import_ort()
        options = options or SessionOptions()
        if options.streams not in (None, 1):
            raise InputError(f"streams={options.streams} is an OpenVINO CPU option; ONNX Runtime splits a batch "
                             "across its intra-op threads itself (use threads)")
        if options.precision not in (None, "f32", "default"):
            raise InputError(f"onnxruntime runs a graph at the precision it was exported or quantized in; "
                             f"precision={options.precision!r} is not a runtime option here (use "
                             "`samedge quantize` for fp16/int8 variants, or the openvino backend's hint)")
        self._ort, self._name = ort, path.name
        provider = choose_provider(device, ort.get_available_providers(), options.provider)
        source, cached = str(path), None
        if device == "cpu" and provider == "CPUExecutionProvider":
            cached = _optimized_cache_path(path, options, ort.__version__)
        save = None
        if cached is not None and cached.exists():
            source = str(cached)
            options = replace(options, optimization_level="disable")  # it is already optimised
        elif cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            save = cached
        try:
            self._session = _session(ort, source, device, options, provider, save)
        except Exception as exc:  # ORT raises Fail / InvalidProtobuf / InvalidGraph for a bad file
            raise BundleError(f"onnxruntime cannot load {path}: {type(exc).__name__}: {exc}. "
                              "The file is corrupt or not an ONNX model; re-export the bundle.") from exc
        active = self._session.get_providers()
        if provider not in active:
            raise BackendUnavailableError(f"onnxruntime could not start {provider} for {device} (the session came up "
                                          f"with {active}): is the {device} present and its driver installed?")
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())
        self.input_shapes = tuple(tuple(i.shape) for i in self._session.get_inputs())
        placement = node_placement(self._session)
        if provider != "CPUExecutionProvider" and placement.get("CPUExecutionProvider"):
            log.warning("%s: %d of %d nodes stay on the CPU (not supported by %s)", path.name,
                        placement["CPUExecutionProvider"], sum(placement.values()), provider)
        self.info = SessionInfo("onnxruntime", device, ort.__version__, tuple(active), "as exported",
                                {"nodes_per_provider": placement, "optimization_level": options.optimization_level,
                                 "optimized_model_cache": str(cached) if cached else None,
                                 "threads": options.threads})

    def run(self, feeds: dict[str, np.ndarray], interrupt: Interrupt | None = None) -> dict[str, np.ndarray]:
        if interrupt is None:
            outputs = self._session.run(list(self.output_names), feeds)
            return dict(zip(self.output_names, outputs))
        # a RunOptions of this run's own: its terminate flag stops this run only, before the next node
        run_options = self._ort.RunOptions()
        with interrupt.hooked(lambda: setattr(run_options, "terminate", True)):
            try:
                outputs = self._session.run(list(self.output_names), feeds, run_options)
            except Exception:
                interrupt.check(self._name)  # ORT says Fail: 'Exiting due to terminate flag being set'
                raise
        return dict(zip(self.output_names, outputs))

    def run_borrowed(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Session.run_borrowed: run(), whose outputs are already the caller's own arrays."""
        return self.run(feeds)


def node_placement(session) -> dict[str, int]:
    """Nodes per execution provider after partitioning ({} where this ORT cannot say)."""
    if not hasattr(session, "get_provider_graph_assignment_info"):
        return {}
    counts: Counter[str] = Counter()
    for subgraph in session.get_provider_graph_assignment_info():
        counts[subgraph.ep_name] += len(subgraph.get_nodes())
    return dict(counts)


AUTO_ORDER = ("gpu", "npu", "cpu")


def resolve_auto() -> tuple[str, str]:
    statuses = {s.device: s for s in probe()}
    for device in AUTO_ORDER:
        if statuses[device].available:
            skipped = "; ".join(f"{d}: {statuses[d].detail}" for d in AUTO_ORDER[:AUTO_ORDER.index(device)])
            return device, f"{statuses[device].detail} is the first that works in order {AUTO_ORDER}" + (
                f" (skipped {skipped})" if skipped else "")
    raise BackendUnavailableError("onnxruntime cannot run on any device here: "
                                  + "; ".join(f"{d}: {s.detail}" for d, s in statuses.items()))


def open_session(path: Path, device: str, options: SessionOptions) -> OrtSession:
    return OrtSession(path, device, options)


def probe() -> list[DeviceStatus]:
    try:
        ort = _import_ort()
    except BackendUnavailableError as exc:
        return [DeviceStatus("onnxruntime", d, False, f"library missing: {exc}") for d in DEVICES]
    available = ort.get_available_providers()
    out = []
    for device in DEVICES:
        try:
            provider = choose_provider(device, available)
            session = _session(ort, str(PROBE_MODEL), device, SessionOptions(threads=1), provider)
            x = np.array([[-1, 0, 1, 2]], np.float32)
            if provider not in session.get_providers() or not np.array_equal(
                    session.run(None, {"x": x})[0], np.maximum(x, 0)):
                raise BackendUnavailableError(f"{provider} is in the build but did not start (device or driver "
                                              "missing)")
            out.append(DeviceStatus("onnxruntime", device, True, provider, ort.__version__))
        except BackendUnavailableError as exc:
            out.append(DeviceStatus("onnxruntime", device, False, str(exc), ort.__version__))
        except Exception as exc:  # a provider that crashes while starting is unavailable, and we say how
            out.append(DeviceStatus("onnxruntime", device, False, f"{type(exc).__name__}: {exc}", ort.__version__))
    return out
