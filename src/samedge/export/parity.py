"""Parity of an exported bundle with the PyTorch fp32 reference on real photos.

Fidelity, not quality: with random weights the masks mean nothing, but an export that reproduces
the reference's logits reproduces a trained model's too.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..bundle import load_bundle
from ..compare import (batch_prompts, compare_batch, compare_prompt, compare_scores_first, prompt_set,
                       static_prompts)
from ..data import SampleImage
from ..metrics import cosine
from ..predictor import SamPredictor
from ..runtimes import SessionOptions
from .reference import reference_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityThresholds:
    """Limits an fp32 export must meet.

    fp32 graphs differ from eager PyTorch only by operation order (fused kernels, reassociated
    sums): relative errors around 1e-6, which flip only pixels whose logit is within ~1e-4 of the
    threshold. A preprocessing or prompt-encoding bug moves cosine below 0.99 and mask IoU far
    below 0.9, so these limits keep about two orders of magnitude of headroom for honest numeric
    noise while catching every semantic error.
    """
    min_mask_iou: float = 0.99
    min_embedding_cosine: float = 0.9999
    max_score_error: float = 0.01


def box_clicks(manifest) -> int:
    """Decoder rows a box adds beyond one click's: 1 in SAM (its corners replace the padding row), 2 in SAM 2."""
    return 2 if manifest.processing.always_pad_point else 1


def _clicks(kwargs: dict, per_box: int = 1) -> int:
    """Clicks of a prompt as the predictor counts them (decoder rows - 1)."""
    points = kwargs.get("point_coords")
    return (0 if points is None else len(points)) + per_box * (kwargs.get("box") is not None)


def run_parity(sam, bundle_dir: Path, samples: list[SampleImage], thresholds: ParityThresholds,
               on_step: Callable[[str], None] = lambda s: None, backend: str = "onnxruntime", device: str = "cpu",
               options: SessionOptions | None = None) -> dict:
    """Reference vs bundle on one backend/device, on every sample and prompt, for every decoder graph
    of that backend's format."""
    bundle = load_bundle(bundle_dir, warn_random=False)  # the exporter already says the weights are random
    reference = reference_for(sam)
    predictor = SamPredictor(bundle, backend, device, options=options, embedding_cache_size=0)
    _, decoders = bundle.manifest.graphs_for(predictor.format)
    split = bundle.manifest.split_for(predictor.format)
    # every full decoder, then every split prompt graph: prompts without a mask prior on those without mask
    # inputs, the whole prompt set (first passes without a prior) on those with
    paths = [(g, None) for g in decoders] + [(None, g) for g in (split.prompts if split else ())]
    images, prompts = [], []
    for sample in samples:
        on_step(f"parity {sample.name}")
        reference.set_image(sample.rgb)
        predictor.set_image(sample.rgb)
        ref_emb, our_emb = reference.features.numpy(), predictor.get_image_embedding()
        row = {"image": sample.name, "shape": list(sample.rgb.shape), "embedding_cosine": cosine(ref_emb, our_emb),
               "embedding_max_abs_error": float(np.max(np.abs(ref_emb - our_emb)))}
        for name, ref_feat in zip(bundle.manifest.contract.encoder_outputs[1:], getattr(reference, "high_res_feats", ())):
            ours = predictor.current.features[name]  # SAM 2.1's high-res features, held to the same cosine
            row[f"{name}_cosine"] = cosine(ref_feat.numpy(), ours)
        row["min_feature_cosine"] = min(v for k, v in row.items() if k.endswith("_cosine"))
        images.append(row)
        for full, prompt_graph in paths:
            graph = full or prompt_graph
            if graph.num_points is None and predictor.static_decoders:
                continue  # a static-shape device (NPU, CoreML) cannot run the dynamic decoder
            predictor.pinned_decoder, predictor.pinned_prompt_graph = full, prompt_graph
            if (graph.batch_size or 1) > 1:  # a static batch graph: batches that fill it once and pad it once
                for prompt in batch_prompts(sample, graph.batch_size + 1, graph.num_points,
                                            box_clicks(bundle.manifest)):
                    row = compare_batch(reference, predictor, prompt)
                    prompts.append({"image": sample.name, "decoder": graph.file, **row})
                continue
            plist = prompt_set(sample) if graph.num_points is None else \
                static_prompts(sample, graph.num_points, box_clicks(bundle.manifest))
            if prompt_graph is not None and not prompt_graph.takes_mask:
                plist = [p for p in plist if not p.feed_previous_logits]
            elif prompt_graph is not None:  # each prompt (on the graph without mask inputs), then refined
                plist = [q for p in plist if not p.feed_previous_logits
                         for q in (p, replace(p, name=p.name + "+prior", feed_previous_logits=True,
                                              kwargs={**p.kwargs, "multimask_output": False}))]
            previous: dict[str, np.ndarray] = {}
            for prompt in plist:
                row = compare_prompt(reference, predictor, prompt, previous)
                used = predictor.decoder_graph(_clicks(prompt.kwargs, box_clicks(bundle.manifest)),
                                               mask_input=prompt.feed_previous_logits)
                prompts.append({"image": sample.name, "decoder": used.file, **row})
        predictor.pinned_decoder = predictor.pinned_prompt_graph = None
        # predict_batch as a user calls it: one call of the dynamic prompt graph, or one call per prompt
        one_call = predictor.batch_decoder_graph()
        for prompt in batch_prompts(sample):
            row = compare_batch(reference, predictor, prompt)
            prompts.append({"image": sample.name, "decoder": one_call.file if one_call else "per prompt", **row})
            if predictor.staged_decoding() and "boxes" not in prompt.kwargs:  # segment everything's path
                row = compare_scores_first(reference, predictor, prompt)
                prompts.append({"image": sample.name, "decoder": f"{split.scores.file}+{split.masks.file}", **row})
    summary = {
        "min_mask_iou": min(p["mask_iou"] for p in prompts),
        "mean_mask_iou": float(np.mean([p["mask_iou"] for p in prompts])),
        "max_score_error": max(p["score_abs_error"] for p in prompts),
        "min_embedding_cosine": min(i["embedding_cosine"] for i in images),
        "min_feature_cosine": min(i["min_feature_cosine"] for i in images),  # = the embedding's for SAM 1
        "max_embedding_abs_error": max(i["embedding_max_abs_error"] for i in images),
    }
    failures = []
    if summary["min_mask_iou"] < thresholds.min_mask_iou:
        failures.append(f"mask IoU {summary['min_mask_iou']:.4f} < {thresholds.min_mask_iou}")
    if summary["min_feature_cosine"] < thresholds.min_embedding_cosine:
        failures.append(f"embedding cosine {summary['min_feature_cosine']:.6f} < {thresholds.min_embedding_cosine}")
    if summary["max_score_error"] > thresholds.max_score_error:
        failures.append(f"IoU-score error {summary['max_score_error']:.4g} > {thresholds.max_score_error}")
    info = predictor.sessions["encoder"].info
    return {"reference": "PyTorch fp32 eager (official SamPredictor computation)",
            "backend": backend, "device": predictor.encoder_device,
            # ORT runs the graph's own types; name them by the bundle's precision
            "precision": bundle.manifest.precision if info.precision == "as exported" else info.precision,
            "executes_on": list(info.executes_on), "backend_version": info.version,
            "passed": not failures, "failures": failures, "thresholds": asdict(thresholds),
            "summary": summary, "images": images, "prompts": prompts}
