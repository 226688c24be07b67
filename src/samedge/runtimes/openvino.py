"""OpenVINO backend: reads the bundle's IR (openvino/*.xml), devices CPU / GPU / NPU / AUTO.

The inference precision is explicit: samedge asks for f32 unless told otherwise, because OpenVINO's
CPU plugin silently runs bf16 on CPUs with AMX or AVX512-bf16. What the plugin actually uses is
read back and recorded in SessionInfo.
"""
from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, BundleError, InputError
from . import DEVICES, DeviceStatus, Interrupt, SessionInfo, SessionOptions

log = logging.getLogger(__name__)
FORMAT = "openvino"
EXTRA = "openvino"
OV_DEVICE = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU", "auto": "AUTO"}
_core = None


def _import_ov():
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailableError(f"the openvino backend needs the openvino package: pip install 'samedge[{EXTRA}]'"
                                      ) from exc
    return openvino


def core():
    global _core
    if _core is None:
        _core = _import_ov().Core()
    return _core


def needs_static_shapes(device: str) -> bool:
    # the NPU plugin compiles fixed shapes only; AUTO may pick the NPU where one exists
    return device == "npu" or (device == "auto" and any(d.startswith("NPU") for d in core().available_devices))


def _device_name(device: str) -> str:
    name = OV_DEVICE[device]
    if name == "AUTO":
        return name
    present = core().available_devices
    if not any(d == name or d.startswith(name + ".") for d in present):
        raise BackendUnavailableError(f"OpenVINO sees no {name} device here (available: {', '.join(present)}); "
                                      f"{device} needs the device and its OpenVINO driver")
    return name


class OpenVinoSession:
    def __init__(self, path: Path, device: str = "cpu", options: SessionOptions | None = None) -> None:
        ov = _import_ov()
        options = options or SessionOptions()
        name = _device_name(device)
        precision = options.precision or "f32"
        per_device: dict[str, str] = {} if precision == "default" else {"INFERENCE_PRECISION_HINT": precision}
        if options.threads:
            per_device["INFERENCE_NUM_THREADS"] = str(options.threads)  # CPU plugin only
        if name == "AUTO":  # AUTO takes per-device settings and forwards them to what it picks
            config: dict = {"DEVICE_PROPERTIES": {
                d: {k: v for k, v in per_device.items() if d.startswith("CPU") or k != "INFERENCE_NUM_THREADS"}
                for d in core().available_devices}}
        else:
            config = {k: v for k, v in per_device.items() if k != "INFERENCE_NUM_THREADS"}
            if options.threads and name == "CPU":
                config["INFERENCE_NUM_THREADS"] = str(options.threads)
        streams = options.streams or 1
        if streams > 1:
            if name != "CPU":
                raise InputError(f"streams={streams} is a CPU plugin option; {name} runs one stream here")
            # batch rows on parallel streams: on a 2-core Xeon (AVX-512 + AMX) the scores stage of segment
            # everything (64 prompts) ran 1.30x faster on 2 streams of 1 thread than on 1 stream of 2 (same
            # numbers): its many small memory-bound ops stop paying a thread hand-off each
            config["PERFORMANCE_HINT"] = "THROUGHPUT"
            config["NUM_STREAMS"] = str(streams)
        if options.cache_dir is not None:
            Path(options.cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(options.cache_dir)
        try:
            model = core().read_model(str(path))
        except Exception as exc:
            raise BundleError(f"OpenVINO cannot read {path}: {type(exc).__name__}: {exc}. The IR is corrupt or "
                              "incomplete (the .xml needs its .bin); re-run `samedge convert --format openvino`.") from exc
        if needs_static_shapes(device) and any(p.get_partial_shape().is_dynamic for p in model.inputs):
            raise BundleError(f"{path.name} has dynamic input shapes, which the {name} plugin cannot compile; "
                              "use a static-point decoder (export with --decoder-points)")
        try:
            self._compiled = core().compile_model(model, name, config)
        except Exception as exc:
            raise BackendUnavailableError(f"OpenVINO could not compile {path.name} for {name}: "
                                          f"{type(exc).__name__}: {exc}") from exc
        self._name = path.name
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request is not re-entrant
        if streams > 1 and not all(p.get_partial_shape().rank.is_static and p.get_partial_shape().rank.get_length()
                                   and p.get_partial_shape()[0].is_dynamic for p in model.outputs):
            raise InputError(f"streams={streams} splits a batch along the first dimension, but {path.name} has an "
                             "output without a dynamic first (batch) dimension to join the parts along")
        self._stream_requests = [self._compiled.create_infer_request() for _ in range(streams)] if streams > 1 else []
        # the inputs a batch splits along: those whose first dimension is dynamic (the context tensors are fixed)
        self._batched_inputs = tuple(p.get_any_name() for p in model.inputs
                                     if p.get_partial_shape().rank.is_static and p.get_partial_shape().rank.get_length()
                                     and p.get_partial_shape()[0].is_dynamic)
        self.input_names = tuple(p.get_any_name() for p in self._compiled.inputs)
        self.output_names = tuple(p.get_any_name() for p in self._compiled.outputs)
        self.input_shapes = tuple(tuple(d.get_length() if d.is_static else "?" for d in p.get_partial_shape())
                                  for p in self._compiled.inputs)
        # AUTO cannot report the precision; it forwards the per-device hint, so the request is what runs.
        used = f"{precision} (requested; AUTO does not report it)" if name == "AUTO" else _precision_name(
            self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        if name == "CPU" and precision in ("bf16", "f16") and used != precision:
            from ..cpu import cpu_capabilities
            # the CPU plugin quietly runs f32 where the ISA lacks the type; a row labelled bf16 would be a lie
            raise BackendUnavailableError(f"OpenVINO's CPU plugin cannot run {precision} on this CPU "
                                          f"({cpu_capabilities().label}): it would run {used}. {precision} needs "
                                          + ("AVX512_BF16 or AMX" if precision == "bf16" else "AVX512_FP16 or AMX-FP16")
                                          + "; use precision f32 (or 'default') here")
        executes = tuple(self._compiled.get_property("EXECUTION_DEVICES"))
        self.info = SessionInfo("openvino", device, ov.__version__, executes, used,
                                {"requested_precision": precision,
                                 "cache_dir": config.get("CACHE_DIR"), "threads": options.threads,
                                 "streams": int(str(self._compiled.get_property("NUM_STREAMS"))) if name == "CPU"
                                 else streams})

    def run(self, feeds: dict[str, np.ndarray], interrupt: Interrupt | None = None) -> dict[str, np.ndarray]:
        # share_outputs=False: OpenVINO copies each output out of the request's buffers, which it reuses on the
        # next call (a second np.array copy on top cost 1-2 ms a prompt in segment everything's scores stage)
        return self._infer(feeds, share_outputs=False, interrupt=interrupt)

    def run_borrowed(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """run() without copying the outputs: the arrays are views of the request's buffers, valid only until
        this session runs again. For callers that copy or drop them before that (staged decoding: a batch's
        mask state is 120 MB at 64 prompts)."""
        return self._infer(feeds, share_outputs=True)

    def _infer(self, feeds: dict[str, np.ndarray], share_outputs: bool,
               interrupt: Interrupt | None = None) -> dict[str, np.ndarray]:
        batch = {feeds[n].shape[0] for n in self._batched_inputs if n in feeds and np.ndim(feeds[n])}
        if self._stream_requests and len(batch) == 1 and min(batch) > 1:
            return self._infer_on_streams(feeds, min(batch), interrupt)
        with self._lock:
            if interrupt is None:
                # share_inputs: the request reads the caller's arrays instead of copying them in; infer() is
                # synchronous, so they outlive the read
                results = self._request.infer(feeds, share_inputs=True, share_outputs=share_outputs)
                return {name: results[port] for name, port in zip(self.output_names, self._compiled.outputs)}
            self._run_requests([(self._request, feeds)], interrupt)
            return {name: self._request.get_tensor(port).data if share_outputs
                    else self._request.get_tensor(port).data.copy()
                    for name, port in zip(self.output_names, self._compiled.outputs)}

    def _infer_on_streams(self, feeds: dict[str, np.ndarray], batch: int,
                          interrupt: Interrupt | None = None) -> dict[str, np.ndarray]:
        """The batch in contiguous row ranges, one per stream, run at once; outputs joined along axis 0 (new
        arrays, so borrowed or not makes no difference)."""
        parts = np.array_split(np.arange(batch), min(batch, len(self._stream_requests)))
        with self._lock:
            requests = self._stream_requests[:len(parts)]
            jobs = []
            for request, rows in zip(requests, parts):
                lo, hi = int(rows[0]), int(rows[-1]) + 1
                jobs.append((request, {n: (a[lo:hi] if n in self._batched_inputs else a) for n, a in feeds.items()}))
            self._run_requests(jobs, interrupt)
            return {name: np.concatenate([r.get_tensor(port).data for r in requests])
                    for name, port in zip(self.output_names, self._compiled.outputs)}

    def _run_requests(self, jobs: list[tuple[object, dict[str, np.ndarray]]], interrupt: Interrupt | None) -> None:
        """Start every (request, inputs) (inputs shared, not copied: they outlive the wait) and wait for all of
        them; interrupt.set() cancels them, and the run raises RunInterrupted once none is running any more."""
        requests = [request for request, _ in jobs]

        def stop() -> None:
            for request in requests:
                request.cancel()
        with interrupt.hooked(stop) if interrupt is not None else nullcontext():
            for request, inputs in jobs:
                request.start_async(inputs, share_inputs=True)
            if interrupt is not None and interrupt.is_set:
                stop()  # set between hooking and starting: cancel() of an idle request does nothing
            failure = None
            for request in requests:  # wait for all, so no request is still busy when the next run starts
                try:
                    request.wait()
                except RuntimeError as exc:  # a cancelled request raises 'Infer Request was canceled'
                    failure = failure or exc
        if failure is not None:
            if interrupt is not None:
                interrupt.check(self._name)
            raise failure


def _precision_name(element_type) -> str:
    """An openvino.Type (or its name) -> 'f32' / 'bf16' / 'f16'."""
    return element_type.get_type_name() if hasattr(element_type, "get_type_name") else str(element_type)


def resolve_auto() -> tuple[str, str]:
    return "auto", f"OpenVINO's AUTO plugin chooses among {', '.join(core().available_devices)}"


def open_session(path: Path, device: str, options: SessionOptions) -> OpenVinoSession:
    return OpenVinoSession(path, device, options)


def default_cpu_precision() -> str:
    """What OpenVINO's CPU plugin would run with no hint (bf16 on AMX / AVX512-bf16 CPUs)."""
    return _precision_name(core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


def probe() -> list[DeviceStatus]:
    try:
        ov = _import_ov()
        present = core().available_devices
    except BackendUnavailableError as exc:
        return [DeviceStatus("openvino", d, False, f"library missing: {exc}") for d in DEVICES]
    out = []
    for device in DEVICES:
        try:
            name = _device_name(device)
            match = next(d for d in present if d == name or d.startswith(name + "."))
            detail = f"{match}: {core().get_property(match, 'FULL_DEVICE_NAME')}"
            if device == "cpu":
                detail += f" (default precision {default_cpu_precision()}; samedge asks for f32 unless told)"
            out.append(DeviceStatus("openvino", device, True, detail, ov.__version__))
        except BackendUnavailableError as exc:
            out.append(DeviceStatus("openvino", device, False, str(exc), ov.__version__))
    return out
