"""predict() and end to end against the official export, timed in the same rounds.

Why: the baseline rows run minutes after the samedge rows, and on a shared VM the machine's speed moves by
10-20% in minutes, so a ratio of two unpaired p50s carries that drift (an official mask prompt 16 ms faster
than its own 1-point prompt, an end-to-end ratio that moved from 0.78x to 1.02x between runs). Here each round
times samedge's call and the official call back to back, and the ratio is taken per round: its median and
[p10, p90] say how fast samedge is and how sure that is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import processing
from ..bundle import load_bundle
from .stats import TimingPlan, time_interleaved


@dataclass(frozen=True)
class PairedRatio:
    """official / samedge over interleaved rounds: the median and [p10, p90] of per-round ratios, and each
    side's p50 (ms) from the same rounds."""
    ratio: float
    ratio_p10: float
    ratio_p90: float
    samedge_p50_ms: float
    official_p50_ms: float
    rounds: int


def paired_ratio(samedge_ms: list[float], official_ms: list[float]) -> PairedRatio:
    """Per-round ratios of two equally long lists of timings taken in the same rounds (time_interleaved)."""
    s, o = np.asarray(samedge_ms), np.asarray(official_ms)
    r = o / s
    p10, p50, p90 = np.percentile(r, [10, 50, 90])
    return PairedRatio(float(p50), float(p10), float(p90), float(np.median(s)), float(np.median(o)), int(r.size))


def bench_paired(predictor, fp32_bundle: Path, official_decoder: Path, image: np.ndarray, kinds: tuple[str, ...],
                 plan: TimingPlan, threads: int | None, end_to_end: bool = True) -> dict:
    """predictor (a samedge SamPredictor on an ONNX Runtime or OpenVINO CPU session) against the official
    export (fp32 encoder + official_decoder, plain sessions of the predictor's backend): for each prompt kind,
    predict() (prompt in, full-size boolean mask out, on a cached embedding) against the official decoder
    call thresholded at 0; with end_to_end, set_image + predict() against preprocess + encoder + decoder.
    Returns {kind: PairedRatio as a dict, ..., "end_to_end": ..., "baseline": "official-onnx|official-openvino"}."""
    from .baselines import official_decoder_feeds, open_plain
    from .runner import prompt_kwargs
    backend = predictor.backend
    bundle = load_bundle(fp32_bundle, warn_random=False)
    m = bundle.manifest
    geom = processing.geometry_for(*image.shape[:2], m.image_size, square=m.processing.resize == "square")
    enc, _ = open_plain(bundle.file(m.encoder), backend, threads)
    dec, _ = open_plain(official_decoder, backend, threads)
    feature_names = [t.name for t in m.encoder.outputs]
    x, _ = processing.preprocess_for(image, m)
    features = dict(zip(feature_names, enc({"image": x})))
    predictor.set_image(image)
    hw = image.shape[:2]
    _, _, low_res = predictor.predict(**prompt_kwargs("1pt", hw))
    previous = low_res[:1]  # the same mask prior for both sides
    out: dict = {"baseline": "official-openvino" if backend == "openvino" else "official-onnx"}
    for kind in kinds:
        kw = prompt_kwargs(kind, hw, previous)
        coords, labels = processing.prompt_rows(kw.get("point_coords"), kw.get("point_labels"), kw.get("box"),
                                                geom, m.processing)
        feeds = official_decoder_feeds(features, coords, labels, kw.get("mask_input"))
        mine, theirs = time_interleaved([lambda: predictor.predict(**kw), lambda: dec(feeds)[0] > 0], plan)
        out[kind] = asdict(paired_ratio(mine, theirs))
    if end_to_end:
        one = prompt_kwargs("1pt", hw)
        one_feeds = official_decoder_feeds(features, *processing.prompt_rows(
            one["point_coords"], one["point_labels"], None, geom, m.processing))

        def official_e2e():
            xx, _ = processing.preprocess_for(image, m)
            one_feeds.update(zip(feature_names, enc({"image": xx})))
            return dec(one_feeds)[0] > 0
        mine, theirs = time_interleaved([lambda: (predictor.set_image(image), predictor.predict(**one)),
                                         official_e2e], plan)
        out["end_to_end"] = asdict(paired_ratio(mine, theirs))
    return out
