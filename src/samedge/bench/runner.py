"""`samedge bench`: time every stage of bundles on backends x devices, plus same-run baselines.

Stages: preprocess (numpy resize + normalise), encoder (the graph), decoder per prompt kind (the graph),
postprocess (upsampling + threshold), end to end (image -> mask, no embedding cache), and prompts per second
on a cached embedding. Cold start (session load / compile, first encode, first predict), peak memory, model
size and the precision the backend actually used are recorded with every run.
"""
from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from functools import lru_cache, partial
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import processing
from ..bundle import fidelity_path, load_bundle
from ..errors import InputError, SamEdgeError
from .machine import machine_info
from .memory import PeakMemory
from .stats import TimingPlan, summarize, time_calls, time_interleaved

log = logging.getLogger(__name__)
SCHEMA = "samedge-bench"
SCHEMA_VERSION = 1
PROMPTS = {"1pt": 1, "2pt": 2, "5pt": 5, "box": 1, "mask": 1}  # prompt kind -> clicks (a box counts as one)
# "mask": the 1-point prompt again with the 1-point prompt's best low-res logits as mask_input (refinement)


@dataclass(frozen=True)
class BenchTarget:
    bundle: Path
    backend: str = "onnxruntime"
    device: str = "cpu"
    precision: str | None = None  # None: the backend's samedge default (f32 on OpenVINO)
    threads: int | None = None

    @property
    def run_id(self) -> str:
        return f"{Path(self.bundle).name}/{self.backend}-{self.device}-{self.precision or 'default'}"


@dataclass(frozen=True)
class BenchConfig:
    plan: TimingPlan = field(default_factory=TimingPlan)
    image: Path | None = None  # default: the built-in ARC2017 photo (480x640, a VGA camera frame)
    baselines: bool = True  # official-style fp32 ONNX Runtime export and PyTorch eager, same run
    prompts: tuple[str, ...] = tuple(PROMPTS)
    # the checkpoint a checkpoint bundle was exported from: the baselines rebuild the PyTorch model from it
    # (a --download bundle finds it in the download cache by itself)
    checkpoint: Path | None = None

    def __post_init__(self) -> None:
        bad = [p for p in self.prompts if p not in PROMPTS]
        if bad:
            raise InputError(f"unknown prompt kinds {bad}; known: {list(PROMPTS)}")


def load_image(path: Path | None) -> tuple[str, np.ndarray]:
    if path is None:
        from ..data import sample_images
        s = sample_images(2)[1]
        return s.name, s.rgb
    from PIL import Image
    with Image.open(path) as img:
        return Path(path).name, np.asarray(img.convert("RGB"))


def prompt_kwargs(kind: str, hw: tuple[int, int], mask_input: np.ndarray | None = None) -> dict:
    """Deterministic prompts inside the image ("mask" takes the low-res logits to refine, (1, 256, 256))."""
    h, w = hw
    if kind == "mask":
        if mask_input is None:
            raise InputError("the mask prompt needs the low-res logits it refines")
        one = prompt_kwargs("1pt", hw)
        return {**one, "mask_input": mask_input, "multimask_output": False}
    rng = np.random.default_rng(PROMPTS[kind] + (kind == "box"))
    if kind == "box":
        return {"box": np.array([w * 0.25, h * 0.25, w * 0.75, h * 0.75]), "multimask_output": False}
    k = PROMPTS[kind]
    pts = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h], size=(k, 2))
    return {"point_coords": pts, "point_labels": np.ones(k, int), "multimask_output": k == 1}


def _stats(samples: list[float]) -> dict:
    s = summarize(samples)
    return {**asdict(s), "spread": s.spread}


def _graph_bytes(manifest, fmt: str) -> dict:
    enc, decs = manifest.graphs_for(fmt)
    size = lambda g: g.bytes + (g.external_data_bytes or 0)  # noqa: E731
    return {"encoder": size(enc), "decoders": sum(size(d) for d in decs), "decoder_graphs": len(decs)}


@lru_cache(maxsize=32)
def _graph_flops(path: str, shapes: tuple) -> int:
    from .flops import graph_flops
    return graph_flops(Path(path), dict(shapes))["total"]


def _flops(bundle, rows: int, split: bool = False) -> dict:
    """Analytic FLOPs from the bundle's ONNX graphs (the same math whatever the format runs). decoder_1pt is
    the graph predict() runs per prompt (the split decoder's prompt graph where it is used); the full decoder
    and the split decoder's per-image context graph are counted beside it."""
    m = bundle.manifest

    def per_prompt(graphs) -> int:
        dyn = next((d for d in graphs if d.num_points is None), None)
        g = dyn or next((d for d in graphs if d.graph_point_rows == rows), graphs[0])
        k = g.graph_point_rows or rows
        return _graph_flops(str(bundle.file(g)), (("point_coords", (1, k, 2)), ("point_labels", (1, k))))
    enc = _graph_flops(str(bundle.file(m.encoder)), ((m.encoder.inputs[0].name, (1, 3, m.image_size, m.image_size)),))
    out = {"encoder": enc, "decoder_full_1pt": per_prompt(m.decoders)}
    if split and m.split is not None:
        out["decoder_1pt"] = per_prompt(m.split.prompts)
        out["context"] = _graph_flops(str(bundle.file(m.split.context)), ())
    else:
        out["decoder_1pt"] = out["decoder_full_1pt"]
    return out


def _roofline(stages: dict, flops: dict, peak: float | None) -> dict:
    out = {}
    for stage, total in flops.items():
        if stage not in stages:
            continue
        achieved = total / (stages[stage]["p50"] / 1e3) / 1e9
        out[stage] = {"gflop": total / 1e9, "achieved_gflops": achieved,
                      "fraction_of_peak": achieved / peak if peak else None}
    return out


def _fidelity(bundle, backend: str, device: str, precision: str | None) -> dict | None:
    """Fidelity figures the bundle carries: a quantized variant's vs fp32, or a `samedge fidelity` report."""
    import json
    report = bundle.manifest.parity.get("fidelity_vs_fp32")
    # a variant's figure was measured at samedge's default precision (f32 on OpenVINO); bf16 on top differs
    if report and precision in (None, "f32"):
        s = report["summary"]
        return {"vs": "fp32 bundle", "mean_mask_iou": s["mean_mask_iou"], "min_mask_iou": s["min_mask_iou"]}
    path = fidelity_path(bundle.path, backend, device, precision or "f32")
    if path.is_file():
        s = json.loads(path.read_text()).get("summary", {})
        return {"vs": "pytorch fp32", "mean_mask_iou": s.get("mean_mask_iou"), "min_mask_iou": s.get("min_mask_iou")}
    if bundle.manifest.precision == "fp32" and backend == "onnxruntime":
        s = bundle.manifest.parity.get("summary", {})
        if s:
            return {"vs": "pytorch fp32", "mean_mask_iou": s.get("mean_mask_iou"), "min_mask_iou": s.get("min_mask_iou")}
    return None


def bench_samedge(target: BenchTarget, cfg: BenchConfig, image: np.ndarray, peak_gflops: float | None) -> dict:
    from ..predictor import SamPredictor
    from ..quantize.pipeline import variant_precision
    bundle = load_bundle(target.bundle, warn_random=False)
    m = bundle.manifest
    hw = image.shape[:2]
    graphs: dict[str, str] = {}
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        predictor = SamPredictor(bundle, target.backend, target.device, threads=target.threads,
                                 precision=target.precision, embedding_cache_size=0)
        load_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        predictor.set_image(image)
        first_encode = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        predictor.predict(**prompt_kwargs("1pt", hw))
        first_predict = (time.perf_counter() - t0) * 1e3

        stages: dict[str, dict] = {}
        x, geom = processing.preprocess_for(image, m)
        stages["preprocess"] = _stats(time_calls(
            lambda: processing.preprocess_for(image, m), cfg.plan))
        encoder = predictor.encoder_session
        feed = {encoder.input_names[0]: x}
        stages["encoder"] = _stats(time_calls(lambda: encoder.run(feed), cfg.plan))
        if predictor.uses_split_decoder:  # the decoder's per-image part, in set_image
            context = predictor.sessions["context"]
            item = predictor.get_image_embedding_item()  # by name: SAM 2.1's context also takes the high-res maps
            given = {m.contract.feature_names[0]: item.embedding, **(item.features or {})}
            cfeed = {name: given[name] for name in context.input_names}
            stages["context"] = _stats(time_calls(lambda: context.run(cfeed), cfg.plan))
        _, _, low_res = predictor.predict(**prompt_kwargs("1pt", hw))  # (3, 256, 256): a multimask prompt
        previous = low_res[:1]
        post = {True: lambda: processing.postprocess_masks(low_res, geom) > m.mask_threshold,  # 3 masks
                False: lambda: processing.postprocess_masks(low_res[:1], geom) > m.mask_threshold}
        overhead, overhead_spread = {}, {}
        for kind in cfg.prompts:
            kwargs = prompt_kwargs(kind, hw, previous)
            session, dfeed = predictor.prepared_decode(**kwargs)
            # graph, predict() and its postprocessing in rounds: predict() - graph - postprocess is paired per
            # round, so the machine's drift between stages (several ms on a shared VM) does not enter it
            graph_ms, predict_ms, post_ms = time_interleaved(
                [lambda: session.run(dfeed), lambda: predictor.predict(**kwargs), post[kwargs["multimask_output"]]],
                cfg.plan)
            stages[f"decoder_{kind}"] = _stats(graph_ms)
            stages[f"predict_{kind}"] = _stats(predict_ms)
            overhead[kind], overhead_spread[kind] = _paired_overhead(predict_ms, graph_ms, post_ms)
            graphs[kind] = predictor.decoder_graph(dfeed["point_coords"].shape[1] - 1,
                                                   mask_input="mask_input" in kwargs).file
        batch = _bench_predict_batch(predictor, hw, geom, cfg.plan)
        if batch is not None:  # predict_batch on one graph call (the dynamic prompt graph), timed the same way
            kind, batch_stages, overhead[kind], overhead_spread[kind], graphs[kind] = batch
            stages.update(batch_stages)
        stages["postprocess"] = _stats(time_calls(post[True], cfg.plan))
        stages["postprocess_single"] = _stats(time_calls(post[False], cfg.plan))
        one = prompt_kwargs("1pt", hw)
        stages["end_to_end"] = _stats(time_calls(lambda: (predictor.set_image(image), predictor.predict(**one)),
                                                 cfg.plan))
        stages["prompt_1pt"] = stages.get("predict_1pt") or _stats(time_calls(lambda: predictor.predict(**one), cfg.plan))
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < max(cfg.plan.min_seconds, 0.2):
            predictor.predict(**one)
            count += 1
        pps = count / (time.perf_counter() - start)
    info = encoder.info
    predictor.close()
    return {
        "id": target.run_id, "kind": "samedge", "model_type": m.model_type, "weights": m.weights.source,
        "bundle": str(target.bundle), "bundle_precision": variant_precision(m), "format": predictor.format,
        "backend": target.backend, "device": target.device, "precision_requested": target.precision,
        "precision_used": info.precision, "executes_on": list(info.executes_on), "backend_version": info.version,
        "threads": target.threads, "model_bytes": _graph_bytes(m, predictor.format),
        "cold_start_ms": {"load": load_ms, "first_encode": first_encode, "first_predict": first_predict},
        "memory_mib": {"before": mem.before_mib, "peak": mem.peak_mib, "peak_resettable": mem.resettable},
        "stages": stages, "prompts_per_second": pps, "decoder_graphs_used": graphs,
        # predict() minus (its graph + postprocessing), the median of per-round differences of interleaved
        # timings, and their p10 / p90: what driving the sessions costs; ~0 when nothing is lost
        "predict_overhead_ms": overhead, "predict_overhead_spread_ms": overhead_spread,
        "split_decoder": predictor.uses_split_decoder,
        "flops": _flops(bundle, 2, predictor.uses_split_decoder),
        "roofline": _roofline(stages, _flops(bundle, 2, predictor.uses_split_decoder), peak_gflops),
        "fidelity": _fidelity(bundle, target.backend, target.device, target.precision),
    }


BATCH_PROMPTS = 16  # predict_batch's row: 16 one-click prompts on a 4 x 4 grid, 3 masks each


def _bench_predict_batch(predictor, hw: tuple[int, int], geom, plan: TimingPlan):
    """predict_batch of BATCH_PROMPTS one-click prompts: its graph call(s), predict_batch and the upsampling of
    its (B, 3, 256, 256) logits in interleaved rounds, like the single prompts; None where predict_batch runs
    one predict() per prompt (no batched graph: the single-prompt rows already time that)."""
    h, w = hw
    grid = (np.arange(4) + 0.5) / 4
    coords = np.stack(np.meshgrid(grid * w, grid * h), -1).reshape(BATCH_PROMPTS, 1, 2)
    labels = np.ones((BATCH_PROMPTS, 1), int)
    calls = predictor.prepared_decode_batch(coords, labels)
    if calls is None:
        return None
    _, _, low_res = predictor.predict_batch(coords, labels)
    threshold = predictor.bundle.manifest.mask_threshold
    graph_ms, predict_ms, post_ms = time_interleaved(
        [lambda: [session.run(feeds) for session, feeds in calls], lambda: predictor.predict_batch(coords, labels),
         lambda: processing.postprocess_masks(low_res, geom) > threshold], plan)
    kind = f"batch{BATCH_PROMPTS}"
    stages = {f"decoder_{kind}": _stats(graph_ms), f"predict_{kind}": _stats(predict_ms),
              f"postprocess_{kind}": _stats(post_ms)}
    return (kind, stages, *_paired_overhead(predict_ms, graph_ms, post_ms), predictor.batch_decoder_graph().file)


def _paired_overhead(predict_ms, graph_ms, post_ms) -> tuple[float, list[float]]:
    """predict - graph - postprocess per interleaved round: its median and [p10, p90] (ms)."""
    paired = np.asarray(predict_ms) - np.asarray(graph_ms) - np.asarray(post_ms)
    return float(np.median(paired)), [float(v) for v in np.percentile(paired, [10, 90])]


def bench_official_onnx(bundle_path: Path, cfg: BenchConfig, image: np.ndarray, threads: int | None,
                        peak_gflops: float | None, backend: str = "onnxruntime",
                        official_decoder: Path | None = None) -> dict:
    """fp32 encoder ONNX + the official-style decoder (in-graph upsampling), a plain session of `backend`
    (onnxruntime, or openvino: so samedge's OpenVINO rows meet the same graph on the same backend), numpy pre."""
    from ..export.rebuild import model_for_manifest
    from .baselines import export_official_decoder, official_decoder_feeds, open_plain
    bundle = load_bundle(bundle_path, warn_random=False)
    m = bundle.manifest
    geom = processing.geometry_for(*image.shape[:2], m.image_size, square=m.processing.resize == "square")
    feature_names = [t.name for t in m.encoder.outputs]
    with tempfile.TemporaryDirectory() as tmp:
        dec_path = official_decoder or export_official_decoder(
            model_for_manifest(m, cfg.checkpoint), Path(tmp) / "official_decoder.onnx", geom.original_hw,
            geom.input_hw, geom.square)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            enc, version = open_plain(bundle.file(m.encoder), backend, threads)
            dec, _ = open_plain(dec_path, backend, threads)
            load_ms = (time.perf_counter() - t0) * 1e3
            x, _ = processing.preprocess_for(image, m)
            t0 = time.perf_counter()
            features = dict(zip(feature_names, enc({"image": x})))  # image_embeddings [+ SAM 2.1 high-res]
            first_encode = (time.perf_counter() - t0) * 1e3
            stages = {"preprocess": _stats(time_calls(
                lambda: processing.preprocess_for(image, m), cfg.plan))}
            stages["encoder"] = _stats(time_calls(lambda: enc({"image": x}), cfg.plan))
            first_predict = None
            previous = None
            for kind in ("1pt", *[k for k in cfg.prompts if k != "1pt"]):
                kw = prompt_kwargs(kind, image.shape[:2], previous)
                coords, labels = processing.prompt_rows(kw.get("point_coords"), kw.get("point_labels"), kw.get("box"),
                                                        geom, m.processing)
                feeds = official_decoder_feeds(features, coords, labels, kw.get("mask_input"))
                if first_predict is None:
                    t0 = time.perf_counter()
                    out = dec(feeds)
                    first_predict = (time.perf_counter() - t0) * 1e3
                    previous = out[2][0, 1 + int(np.argmax(out[1][0, 1:])), None]  # best multimask low-res logits
                if kind not in cfg.prompts:
                    continue
                # the official graph returns full-size logits; the user thresholds them: that is its predict()
                stages[f"decoder_{kind}"] = _stats(time_calls(lambda: dec(feeds)[0] > 0, cfg.plan))
                stages[f"predict_{kind}"] = stages[f"decoder_{kind}"]
            one_kw = prompt_kwargs("1pt", image.shape[:2])
            one = official_decoder_feeds(features, *processing.prompt_rows(
                one_kw["point_coords"], one_kw["point_labels"], None, geom, m.processing))

            def e2e():
                xx, _ = processing.preprocess_for(image, m)
                one.update(zip(feature_names, enc({"image": xx})))
                return dec(one)[0] > 0
            stages["end_to_end"] = _stats(time_calls(e2e, cfg.plan))
            if "decoder_1pt" in stages:
                stages["prompt_1pt"] = stages["decoder_1pt"]
    ov = backend == "openvino"
    return {"id": f"{m.model_type}/baseline-official-{'openvino' if ov else 'onnx'}-fp32",
            "kind": "baseline-official-openvino" if ov else "baseline-official-onnx",
            "model_type": m.model_type, "weights": m.weights.source, "bundle": str(bundle_path),
            "bundle_precision": "fp32", "format": "onnx", "backend": backend, "device": "cpu",
            "precision_requested": "f32" if ov else None, "precision_used": "f32" if ov else "fp32",
            "executes_on": ["CPU"] if ov else ["CPUExecutionProvider"], "backend_version": version,
            "threads": threads,
            "model_bytes": {"encoder": m.encoder.bytes, "decoders": dec_path_bytes(dec_path)},
            "cold_start_ms": {"load": load_ms, "first_encode": first_encode, "first_predict": first_predict},
            "memory_mib": {"before": mem.before_mib, "peak": mem.peak_mib, "peak_resettable": mem.resettable},
            "stages": stages, "prompts_per_second": 1e3 / stages["decoder_1pt"]["p50"] if "decoder_1pt" in stages
            else None,
            "roofline": _roofline(stages, _flops(bundle, 2), peak_gflops), "fidelity": None,
            "note": "decoder exported like segment-anything's scripts/export_onnx_model.py (SamOnnxModel: masks "
                    "upsampled to the image size inside the graph), orig_im_size fixed to the benchmark image"}


def dec_path_bytes(path: Path) -> int | None:
    return path.stat().st_size if path.exists() else None


def bench_pytorch(bundle_path: Path, cfg: BenchConfig, image: np.ndarray, threads: int | None,
                  peak_gflops: float | None, device: str = "cpu") -> dict:
    """segment-anything's own predictor logic in PyTorch eager, fp32, on the CPU or a CUDA GPU (the GPU row
    where onnxruntime-gpu is not installed)."""
    import torch

    from ..export.reference import reference_for
    from ..export.rebuild import model_for_manifest
    from ..errors import BackendUnavailableError
    bundle = load_bundle(bundle_path, warn_random=False)
    m = bundle.manifest
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("no CUDA GPU here (torch.cuda.is_available() is False)")
    if threads:
        torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with PeakMemory() as mem, torch.inference_mode():
        t0 = time.perf_counter()
        ref = reference_for(model_for_manifest(m, cfg.checkpoint).to(device))
        load_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        ref.set_image(image)
        first_encode = (time.perf_counter() - t0) * 1e3
        one = prompt_kwargs("1pt", image.shape[:2])
        t0 = time.perf_counter()
        ref.predict(**one)
        first_predict = (time.perf_counter() - t0) * 1e3
        x = ref.preprocess(image).to(device)
        stages = {"preprocess": _stats(time_calls(lambda: ref.preprocess(image), cfg.plan)),
                  "encoder": _stats(time_calls(lambda: (ref.encoder_forward(x), sync()), cfg.plan))}
        previous = None
        for kind in ("1pt", *[k for k in cfg.prompts if k != "1pt"]):
            kw = prompt_kwargs(kind, image.shape[:2], previous)
            if previous is None:
                _, iou, low = ref.predict(**prompt_kwargs("1pt", image.shape[:2]))
                previous = low[int(np.argmax(iou)), None]
            if kind not in cfg.prompts:
                continue
            # predict() = prompt encoder + decoder + upsampling, as in SamPredictor
            stages[f"decoder_{kind}"] = _stats(time_calls(lambda: ref.predict(**kw)[0] > 0, cfg.plan))
            stages[f"predict_{kind}"] = stages[f"decoder_{kind}"]
        stages["end_to_end"] = _stats(time_calls(lambda: (ref.set_image(image), ref.predict(**one)), cfg.plan))
        if "decoder_1pt" in stages:
            stages["prompt_1pt"] = stages["decoder_1pt"]
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return {"id": f"{m.model_type}/baseline-pytorch-eager-fp32" + ("-cuda" if device == "cuda" else ""),
            "kind": "baseline-pytorch" if device == "cpu" else "baseline-pytorch-cuda",
            "model_type": m.model_type, "weights": m.weights.source, "bundle": str(bundle_path),
            "bundle_precision": "fp32", "format": "pytorch", "backend": "pytorch",
            "device": "cpu" if device == "cpu" else "gpu",
            "precision_requested": None, "precision_used": "fp32", "executes_on": [gpu],
            "backend_version": torch.__version__, "threads": torch.get_num_threads(), "model_bytes": None,
            "cold_start_ms": {"load": load_ms, "first_encode": first_encode, "first_predict": first_predict},
            "memory_mib": {"before": mem.before_mib, "peak": mem.peak_mib, "peak_resettable": mem.resettable},
            "stages": stages, "prompts_per_second": 1e3 / stages["decoder_1pt"]["p50"] if "decoder_1pt" in stages
            else None,
            "roofline": _roofline(stages, _flops(bundle, 2), peak_gflops), "fidelity": None}


def _fp32_bundle_for(model_type: str, targets: list[BenchTarget]) -> Path | None:
    for t in targets:
        m = load_bundle(t.bundle, warn_random=False).manifest
        if m.model_type == model_type and m.precision == "fp32":
            return Path(t.bundle)
    return None


def run_bench(targets: list[BenchTarget], cfg: BenchConfig, on_step=lambda s: None) -> dict:
    """Every target, then the baselines once per model type; a target that cannot run here is recorded as
    unavailable with the reason, never dropped."""
    machine = machine_info()
    name, image = load_image(cfg.image)
    runs, unavailable, measured = [], [], []
    tmp = tempfile.TemporaryDirectory()  # the official decoder, exported once per model for every baseline
    for t in targets:
        on_step(t.run_id)
        try:
            runs.append(bench_samedge(t, cfg, image, machine.peak_gflops_fp32))
            measured.append(t)
        except SamEdgeError as exc:
            unavailable.append({"id": t.run_id, "bundle": str(t.bundle), "backend": t.backend, "device": t.device,
                                "precision": t.precision, "reason": f"{type(exc).__name__}: {exc}"})
    if cfg.baselines:
        model_types = []
        for r in runs:
            if r["model_type"] not in model_types:
                model_types.append(r["model_type"])
        threads = next((t.threads for t in targets if t.threads), None)
        for mt in model_types:
            fp32 = _fp32_bundle_for(mt, targets)
            if fp32 is None:
                unavailable.append({"id": f"{mt}/baselines", "reason": "no fp32 bundle of this model among the "
                                    "targets (the baselines are built from its fp32 ONNX graphs)"})
                continue
            try:
                official = _export_official_decoder(fp32, cfg, image, Path(tmp.name) / f"{mt}-official_decoder.onnx")
            except (SamEdgeError, ImportError) as exc:
                unavailable.append({"id": f"{mt}/baselines", "reason": f"{type(exc).__name__}: {exc}"})
                continue
            for label, fn in (("baseline-official-onnx", partial(bench_official_onnx, official_decoder=official)),
                              ("baseline-official-openvino", partial(bench_official_onnx, backend="openvino",
                                                                     official_decoder=official)),
                              ("baseline-pytorch", bench_pytorch),
                              ("baseline-pytorch-cuda", partial(bench_pytorch, device="cuda"))):
                if label == "baseline-pytorch-cuda" and not any(t.device == "gpu" for t in targets):
                    continue
                if label == "baseline-official-openvino" and not any(t.backend == "openvino" for t in targets):
                    continue
                on_step(f"{mt}/{label}")
                try:
                    runs.append(fn(fp32, cfg, image, threads, machine.peak_gflops_fp32))
                except (SamEdgeError, ImportError) as exc:
                    unavailable.append({"id": f"{mt}/{label}", "reason": f"{type(exc).__name__}: {exc}"})
            for t, r in zip(measured, runs):
                if r["model_type"] == mt and t.backend in PAIRED_BACKENDS and t.device == "cpu":
                    on_step(f"{t.run_id} paired with the official export")
                    try:
                        r["paired_vs_official"] = _paired(t, fp32, official, cfg, image)
                    except SamEdgeError as exc:
                        unavailable.append({"id": f"{t.run_id}/paired", "reason": f"{type(exc).__name__}: {exc}"})
    tmp.cleanup()
    result = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
              "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine.to_dict(), "image": {"name": name, "shape": list(image.shape)},
              "timing": asdict(cfg.plan), "runs": runs, "unavailable": unavailable}
    add_speedups(result)
    return result


PAIRED_BACKENDS = ("onnxruntime", "openvino")  # where the official export runs as a plain session


def _export_official_decoder(fp32: Path, cfg: BenchConfig, image: np.ndarray, out: Path) -> Path:
    from ..export.rebuild import model_for_manifest
    from .baselines import export_official_decoder
    m = load_bundle(fp32, warn_random=False).manifest
    geom = processing.geometry_for(*image.shape[:2], m.image_size, square=m.processing.resize == "square")
    return export_official_decoder(model_for_manifest(m, cfg.checkpoint), out, geom.original_hw, geom.input_hw,
                                   geom.square)


def _paired(target: BenchTarget, fp32: Path, official: Path, cfg: BenchConfig, image: np.ndarray) -> dict:
    """predict() and end to end of the target against the official export on its backend, in the same rounds."""
    from ..predictor import SamPredictor
    from .paired import bench_paired
    predictor = SamPredictor(target.bundle, target.backend, target.device, threads=target.threads,
                             precision=target.precision, embedding_cache_size=0)
    try:
        return bench_paired(predictor, fp32, official, image, cfg.prompts, cfg.plan, target.threads)
    finally:
        predictor.close()


SPEEDUP_STAGES = ("encoder", "predict_1pt", "predict_2pt", "predict_5pt", "predict_box", "predict_mask",
                  "decoder_1pt", "end_to_end")


def add_speedups(result: dict) -> None:
    """Each samedge run's p50 ratios against the baselines of the same model in the same file."""
    base = {(r["model_type"], r["kind"]): r for r in result["runs"] if r["kind"] != "samedge"}
    for r in result["runs"]:
        if r["kind"] != "samedge":
            continue
        r["speedup"] = {}
        for kind in ("baseline-official-onnx", "baseline-official-openvino", "baseline-pytorch",
                     "baseline-pytorch-cuda"):
            b = base.get((r["model_type"], kind))
            if b is None:
                continue
            r["speedup"][kind] = {stage: b["stages"][stage]["p50"] / r["stages"][stage]["p50"]
                                  for stage in SPEEDUP_STAGES if stage in b["stages"] and stage in r["stages"]}
        # the fair pair: the official export on the same backend as this run
        same = "baseline-official-openvino" if r["backend"] == "openvino" else "baseline-official-onnx"
        if same in r["speedup"]:
            r["speedup"]["official_same_backend"] = {"baseline": same, **r["speedup"][same]}
