"""Fidelity of a quantized bundle to its fp32 source bundle, on real photos, plus the collapse detector.

The fp32 bundle is the reference here: it matches PyTorch to ~1e-6 (its export parity), so comparing to
it measures what quantization changed and needs no torch.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np

from ..data import SampleImage
from ..predictor import SamPredictor


@dataclass(frozen=True)
class QuantThresholds:
    """Limits a quantized variant must meet against its fp32 source (fp16/int8 move logits near the
    threshold, so these are looser than the export's fp32 parity limits)."""
    min_mean_mask_iou: float = 0.95
    min_embedding_cosine: float = 0.98
    # collapse: different images must stay different. The ratio of pairwise embedding distances
    # (variant / fp32) is ~1 for a sound variant and ~0 for an encoder that maps every image alike.
    min_discrimination_ratio: float = 0.5


def discrimination_ratio(reference: list[np.ndarray], variant: list[np.ndarray]) -> float:
    """Mean pairwise distance between the variant's embeddings over the same for fp32 (a ratio of means:
    a pair of near-identical photos, e.g. one photo at two sizes, must not dominate). NaN/Inf gives 0."""
    if any(not np.isfinite(v).all() for v in variant):
        return 0.0
    pairs = list(combinations(range(len(reference)), 2))
    if not pairs:
        return 1.0
    ref = np.mean([np.linalg.norm(reference[i] - reference[j]) for i, j in pairs])
    var = np.mean([np.linalg.norm(variant[i] - variant[j]) for i, j in pairs])
    return float(var / (ref + 1e-12))


def relative_spread(embeddings: list[np.ndarray]) -> float:
    """Mean pairwise distance between images' embeddings over their mean norm: how much the encoder's
    output depends on the image. Random-weight MobileSAM is ~0.02 on the built-in photos (ViT-B ~0.9), so
    a variant's quantization noise is of the same order; the report carries it so the ratio can be read."""
    pairs = list(combinations(range(len(embeddings)), 2))
    if not pairs:
        return float("nan")
    norm = float(np.mean([np.linalg.norm(e) for e in embeddings])) + 1e-12
    return float(np.mean([np.linalg.norm(embeddings[i] - embeddings[j]) for i, j in pairs]) / norm)


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _stats(ms: list[float]) -> dict:
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {"median_ms": statistics.median(ms), "p25_ms": q[0], "p75_ms": q[2], "runs": len(ms)}


def measure(reference: SamPredictor, variant: SamPredictor, samples: list[SampleImage],
            thresholds: QuantThresholds, latency_repeats: int = 3) -> dict:
    from ..export.parity import _compare, cosine, prompt_set, static_prompts
    images, prompts, ref_embs, var_embs = [], [], [], []
    for sample in samples:
        reference.set_image(sample.rgb)
        variant.set_image(sample.rgb)
        r, v = reference.get_image_embedding(), variant.get_image_embedding()
        ref_embs.append(r)
        var_embs.append(v)
        images.append({"image": sample.name, "embedding_cosine": cosine(r, v),
                       "embedding_max_abs_error": float(np.max(np.abs(r - v)))})
        for graph, var_graph in zip(reference.bundle.manifest.decoders, variant.bundle.manifest.decoders):
            reference.pinned_decoder, variant.pinned_decoder = graph, var_graph
            plist = prompt_set(sample) if graph.num_points is None else static_prompts(sample, graph.num_points)
            previous: dict = {}
            for prompt in plist:
                row = _compare(_LogitsOf(reference), variant, prompt, previous)
                prompts.append({"image": sample.name, "decoder": var_graph.file, **row})
        reference.pinned_decoder = variant.pinned_decoder = None
    ious = [p["mask_iou"] for p in prompts]
    summary = {"mean_mask_iou": float(np.mean(ious)), "min_mask_iou": float(np.min(ious)),
               "max_score_error": max(p["score_abs_error"] for p in prompts),
               "min_embedding_cosine": min(i["embedding_cosine"] for i in images),
               "discrimination_ratio": discrimination_ratio(ref_embs, var_embs),
               "reference_relative_spread": relative_spread(ref_embs)}
    failures = []
    if summary["discrimination_ratio"] < thresholds.min_discrimination_ratio:
        failures.append(f"collapsed encoder: embeddings of different images are "
                        f"{summary['discrimination_ratio']:.3f}x as far apart as in fp32 "
                        f"(< {thresholds.min_discrimination_ratio})")
    if summary["mean_mask_iou"] < thresholds.min_mean_mask_iou:
        failures.append(f"mean mask IoU {summary['mean_mask_iou']:.4f} < {thresholds.min_mean_mask_iou}")
    if summary["min_embedding_cosine"] < thresholds.min_embedding_cosine:
        failures.append(f"embedding cosine {summary['min_embedding_cosine']:.4f} < {thresholds.min_embedding_cosine}")
    latency = _side_by_side_latency(reference, variant, samples[0], latency_repeats)
    return {"reference": "the fp32 source bundle (onnxruntime cpu)", "passed": not failures, "failures": failures,
            "thresholds": asdict(thresholds), "summary": summary, "latency": latency,
            "images": images, "prompts": prompts,
            "caveat": "fidelity on random weights is not fidelity on trained weights; the same command on a "
                      "real checkpoint's bundle gives the real figure"}


class _LogitsOf:
    """Adapts a SamPredictor to the reference interface of export.parity._compare (logits out)."""

    def __init__(self, predictor: SamPredictor) -> None:
        self.p = predictor

    def predict(self, **kwargs):
        return self.p.predict(return_logits=True, **kwargs)


def _side_by_side_latency(reference: SamPredictor, variant: SamPredictor, sample: SampleImage,
                          repeats: int) -> dict:
    """Encoder and one-point decoder latency of both, interleaved in one run so drift hits both alike."""
    enc = {"fp32": [], "variant": []}
    dec = {"fp32": [], "variant": []}
    point = {"point_coords": np.array([[sample.rgb.shape[1] / 2, sample.rgb.shape[0] / 2]]),
             "point_labels": np.array([1]), "multimask_output": True}
    for p in (reference, variant):  # warm-up
        p.set_image(sample.rgb)
        p.predict(**point)
    for _ in range(repeats):
        for key, p in (("fp32", reference), ("variant", variant)):
            p.embedding_cache.clear()
            enc[key] += _time(lambda: p.set_image(sample.rgb), 1)
            dec[key] += _time(lambda: p.predict(**point), 3)
    out = {"encoder": {k: _stats(v) for k, v in enc.items()}, "decoder_1_point": {k: _stats(v) for k, v in dec.items()}}
    for stage in out.values():
        stage["speedup"] = stage["fp32"]["median_ms"] / stage["variant"]["median_ms"]
    return out
