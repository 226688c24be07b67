"""Fidelity of a quantized bundle to its fp32 source bundle, on real photos, plus the collapse detector.

The fp32 bundle is the reference here: it matches PyTorch to ~1e-6 (its export parity), so comparing to
it measures what quantization changed and needs no torch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np

from ..bench.stats import TimingPlan, summarize, time_calls
from ..compare import batch_prompts, compare_batch, compare_prompt, prompt_set, static_prompts
from ..cpu import cpu_capabilities
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


def _stats(ms: list[float]) -> dict:
    """The bench's statistics (one timing path), under the names quantize reports have always used."""
    s = summarize(ms)
    lo, hi = np.percentile(ms, [25, 75])
    return {"median_ms": s.p50, "p25_ms": float(lo), "p75_ms": float(hi), "p90_ms": s.p90, "runs": s.n}


class PredictorSide:
    """A bundle run through SamPredictor (ONNX Runtime or OpenVINO) as one side of a comparison."""

    def __init__(self, predictor: SamPredictor, label: str) -> None:
        self.p, self.label = predictor, label
        _, self.decoders = predictor.bundle.manifest.graphs_for(predictor.format)
        self.box_clicks = 2 if predictor.bundle.manifest.processing.always_pad_point else 1

    def set_image(self, rgb: np.ndarray) -> np.ndarray:
        self.p.set_image(rgb)
        return self.p.get_image_embedding()

    def decoder_for(self, num_points: int | None):
        return next(g for g in self.decoders if g.num_points == num_points)

    def predict(self, graph, **kwargs):
        self.p.pinned_decoder = graph
        try:
            return self.p.predict(return_logits=True, **kwargs)
        finally:
            self.p.pinned_decoder = None


@dataclass(frozen=True)
class _TorchDecoder:
    num_points: int | None

    @property
    def file(self) -> str:
        return f"pytorch decoder ({self.num_points} clicks)"


class TorchSide:
    """A PyTorch model (fp32, or with CoreML-compressed weights) as one side of a comparison: how CoreML
    variants are measured where CoreML cannot run (everywhere but macOS)."""

    def __init__(self, sam, label: str, decoder_points: tuple[int, ...]) -> None:
        from ..export.reference import reference_for
        self.ref, self.label = reference_for(sam), label
        self.decoders = tuple(_TorchDecoder(k) for k in decoder_points)
        self.box_clicks = 2 if sam.spec.family == "sam2" else 1

    def set_image(self, rgb: np.ndarray) -> np.ndarray:
        self.ref.set_image(rgb)
        return self.ref.features.numpy()

    def decoder_for(self, num_points: int | None):
        return _TorchDecoder(num_points)

    def predict(self, graph, **kwargs):
        return self.ref.predict(**kwargs)


class _Pinned:
    """One side with one decoder graph, in the interface compare_prompt takes."""

    def __init__(self, side, graph) -> None:
        self.side, self.graph = side, graph

    def predict(self, return_logits: bool = True, **kwargs):
        return self.side.predict(self.graph, **kwargs)


def measure(reference, variant, samples: list[SampleImage], thresholds: QuantThresholds,
            latency_repeats: int = 3, baselines: dict[str, SamPredictor] | None = None) -> dict:
    """Compare two sides (PredictorSide / TorchSide) on every sample and every decoder of the variant.
    `baselines`: more fp32 predictors (e.g. the same backend's) timed side by side with both."""
    from ..metrics import cosine
    images, prompts, ref_embs, var_embs = [], [], [], []
    for sample in samples:
        r, v = reference.set_image(sample.rgb), variant.set_image(sample.rgb)
        ref_embs.append(r)
        var_embs.append(v)
        images.append({"image": sample.name, "embedding_cosine": cosine(r, v),
                       "embedding_max_abs_error": float(np.max(np.abs(r - v)))})
        for var_graph in variant.decoders:
            ref_graph = reference.decoder_for(var_graph.num_points)
            k = var_graph.num_points
            plist = prompt_set(sample) if k is None else static_prompts(sample, k, variant.box_clicks)
            previous: dict = {}
            for prompt in plist:
                row = compare_prompt(_Pinned(reference, ref_graph), _Pinned(variant, var_graph), prompt, previous)
                prompts.append({"image": sample.name, "decoder": var_graph.file, **row})
        if isinstance(variant, PredictorSide):  # predict_batch on the variant, each row against the reference
            one_call = variant.p.batch_decoder_graph()
            for prompt in batch_prompts(sample):
                row = compare_batch(_Pinned(reference, None), variant.p, prompt)
                prompts.append({"image": sample.name, "decoder": one_call.file if one_call else "per prompt", **row})
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
    if isinstance(reference, PredictorSide) and isinstance(variant, PredictorSide):
        latency = _side_by_side_latency({"fp32": reference.p, **(baselines or {}), "variant": variant.p},
                                        samples[0], latency_repeats)
    else:
        latency = {"not_measured": "this variant's backend cannot run on this machine (CoreML needs macOS); "
                                   "fidelity was measured in PyTorch with the same compressed weights"}
    return {"reference": reference.label, "variant": variant.label, "passed": not failures, "failures": failures,
            "measured_on": cpu_capabilities().to_dict(),
            "thresholds": asdict(thresholds), "summary": summary, "latency": latency,
            "images": images, "prompts": prompts,
            "caveat": "fidelity on random weights is not fidelity on trained weights; the same command on a "
                      "real checkpoint's bundle gives the real figure"}


def _side_by_side_latency(predictors: dict[str, SamPredictor], sample: SampleImage, repeats: int) -> dict:
    """Encoder and one-point decoder latency of each, interleaved in one run so drift hits all alike.
    speedup = fp32 / variant; speedup_vs_<name> for every other baseline."""
    enc: dict[str, list[float]] = {k: [] for k in predictors}
    dec: dict[str, list[float]] = {k: [] for k in predictors}
    point = {"point_coords": np.array([[sample.rgb.shape[1] / 2, sample.rgb.shape[0] / 2]]),
             "point_labels": np.array([1]), "multimask_output": True}
    for p in predictors.values():  # warm-up
        p.set_image(sample.rgb)
        p.predict(**point)
    once, thrice = TimingPlan(0, 1, 1, 0.0), TimingPlan(0, 3, 3, 0.0)
    for _ in range(repeats):
        for key, p in predictors.items():
            p.embedding_cache.clear()
            enc[key] += time_calls(lambda: p.set_image(sample.rgb), once)
            dec[key] += time_calls(lambda: p.predict(**point), thrice)
    out = {"encoder": {k: _stats(v) for k, v in enc.items()},
           "decoder_1_point": {k: _stats(v) for k, v in dec.items()}}
    for stage in out.values():
        variant = stage["variant"]["median_ms"]
        for name in predictors:
            if name != "variant":
                key = "speedup" if name == "fp32" else f"speedup_vs_{name}"
                stage[key] = stage[name]["median_ms"] / variant
    return out
