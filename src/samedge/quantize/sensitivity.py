"""Accuracy budget (`samedge quantize --max-iou-drop D`): rank the quantized layers by how much error each
adds, then keep the worst ones in fp32, doubling their number until the mean mask IoU vs fp32 is >= 1 - D.

Ranking: both graphs run one calibration image with every candidate's output (and its activation input)
exposed; a layer's score is the relative error at its output minus the error already present at its input,
so a layer is not blamed for what came before it. One ONNX Runtime pass per graph, no retraining.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from ..bundle import load_bundle
from ..errors import InputError, ParityError
from ..manifest import Manifest
from .methods import OrtDynamicInt8, OrtStaticInt8

log = logging.getLogger(__name__)


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names if n not in present)
    return model


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    sess = ort.InferenceSession(_with_outputs(model, names).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def _rel_error(ref: np.ndarray, var: np.ndarray) -> float:
    return float(np.linalg.norm(var.astype(np.float64) - ref) / (np.linalg.norm(ref.astype(np.float64)) + 1e-12))


def rank_layers(method, fp32_path: Path, feed: dict[str, np.ndarray], role: str) -> list[tuple[str, float]]:
    """(node name, added relative error) for every layer the method quantizes, worst first."""
    from .ort_quantize import _clean, quantize_graph
    with tempfile.TemporaryDirectory() as tmp:
        clean = onnx.load(str(_clean(fp32_path, Path(tmp) / "clean.onnx")))
        quantize_graph(replace(method, keep_fp32_nodes=(), keep_fp32_op_types=()), fp32_path,
                       Path(tmp) / "q.onnx", [feed] * 2 if isinstance(method, OrtStaticInt8) else None, role)
        quant = onnx.load(str(Path(tmp) / "q.onnx"))
    weights = {i.name for i in clean.graph.initializer}
    layers = [n for n in clean.graph.node if n.op_type in method.op_types]
    inputs = {n.name: [i for i in n.input if i and i not in weights] for n in layers}
    names = sorted({n.output[0] for n in layers} | {i for ins in inputs.values() for i in ins})
    ref, var = _run(clean, feed, names), _run(quant, feed, names)
    scores = []
    for n in layers:
        out = n.output[0]
        if out not in var:
            continue  # the quantizer renamed this tensor; it cannot be compared
        # the error already in its inputs (both, for an activation x activation MatMul such as q @ k)
        before = max((_rel_error(ref[i], var[i]) for i in inputs[n.name] if i in var), default=0.0)
        scores.append((n.name, _rel_error(ref[out], var[out]) - before))
    return sorted(scores, key=lambda s: -s[1])


def search_within_budget(cfg, max_iou_drop: float, progress: bool = False) -> Manifest:
    """Quantize with 0, 1, 2, 4, ... of the most sensitive layers kept fp32 until the budget holds; the
    bundle written is the first that meets it, its manifest records what was kept and what it cost."""
    from ..data import sample_images
    from .calibration import encoder_inputs
    from .pipeline import quantize_bundle
    method = cfg.method
    if not isinstance(method, (OrtDynamicInt8, OrtStaticInt8)):
        raise InputError(f"--max-iou-drop searches onnxruntime int8 methods (ort-dynamic-int8, ort-static-int8); "
                         f"for {method.name} keep layers in fp32 with --keep-fp32-op-types / --keep-fp32-nodes")
    if not 0 < max_iou_drop < 1:
        raise InputError(f"--max-iou-drop must be in (0, 1), got {max_iou_drop}")
    if method.graphs != ("encoder",):
        raise InputError("--max-iou-drop ranks the encoder's layers; pass --graphs encoder (quantize the decoder "
                         "separately: it is ~4M parameters and rarely worth int8)")
    if cfg.out_dir.exists() and not cfg.overwrite:
        raise InputError(f"{cfg.out_dir} already exists; pass --overwrite to replace it")
    from .calibration import CalibrationSet
    source = load_bundle(cfg.source, warn_random=False)
    cal = CalibrationSet(tuple(s.rgb for s in sample_images(1)), "built-in photo")
    feed = {source.manifest.encoder.inputs[0].name: next(encoder_inputs(cal, source.manifest))}
    ranking = rank_layers(method, source.file(source.manifest.encoder), feed, "encoder")
    log.info("layer sensitivity (added relative error), worst first: %s", ranking[:8])
    thresholds = replace(cfg.thresholds, min_mean_mask_iou=1.0 - max_iou_drop)
    steps, k, first_speedup = [], 0, None
    while True:
        kept = tuple(f"encoder:{name}" for name, _ in ranking[:k])
        trial = replace(cfg, method=replace(method, keep_fp32_nodes=method.keep_fp32_nodes + kept),
                        thresholds=thresholds, overwrite=True)
        try:
            manifest, passed = quantize_bundle(trial, progress=progress), True
            report = manifest.parity["fidelity_vs_fp32"]
        except ParityError as exc:
            report, passed = exc.report, False
        speedup = report["latency"]["encoder"]["speedup"]
        first_speedup = speedup if first_speedup is None else first_speedup
        steps.append({"kept_fp32": k, "mean_mask_iou": report["summary"]["mean_mask_iou"],
                      "encoder_speedup_vs_fp32": speedup, "passed": passed})
        log.info("kept %d layers in fp32: mean IoU %.4f, encoder %.2fx", k, steps[-1]["mean_mask_iou"], speedup)
        if passed:
            break
        if k >= len(ranking):
            raise ParityError(f"even with all {len(ranking)} quantized encoder layers in fp32 the mean mask IoU "
                              f"is {steps[-1]['mean_mask_iou']:.4f} < {1 - max_iou_drop}", report)
        k = min(len(ranking), max(1, 2 * k))
    budget = {"max_iou_drop": max_iou_drop, "ranking": "added relative error per layer, one calibration image",
              "kept_fp32": [name for name, _ in ranking[:k]], "steps": steps,
              "speed_cost": f"encoder {first_speedup:.2f}x -> {speedup:.2f}x vs fp32 by keeping {k} layers",
              "sensitivity": [{"node": n, "added_error": s} for n, s in ranking]}
    manifest = replace(manifest, export={**manifest.export, "quantization": {
        **manifest.export["quantization"], "accuracy_budget": budget}})
    manifest.write(cfg.out_dir)
    return manifest
