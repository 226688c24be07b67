"""The one comparison engine: two predictors on the same photos and prompts (export parity, quantization
fidelity, backend fidelity, the gaze demo's reference). numpy only, no torch: either side can be a bundle on any
backend, or the PyTorch reference where torch is installed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import SampleImage, bounding_box, largest_instance, point_inside, point_outside
from .metrics import mask_iou


@dataclass(frozen=True)
class Prompt:
    name: str
    kwargs: dict
    feed_previous_logits: bool = False  # second pass: mask_input = previous pass's best low-res logits


def prompt_set(sample: SampleImage) -> list[Prompt]:
    mask = largest_instance(sample)
    fg, bg, box = point_inside(mask), point_outside(mask), bounding_box(mask)
    one = {"point_coords": fg[None], "point_labels": np.array([1])}
    return [
        Prompt("point_multimask", {**one, "multimask_output": True}),
        Prompt("fg_bg_points", {"point_coords": np.stack([fg, bg]), "point_labels": np.array([1, 0]),
                                "multimask_output": False}),
        Prompt("box", {"box": box, "multimask_output": False}),
        Prompt("box_point", {**one, "box": box, "multimask_output": False}),
        Prompt("point_with_mask_input", {**one, "multimask_output": False}, feed_previous_logits=True),
    ]


def static_prompts(sample: SampleImage, k: int, box_clicks: int = 1) -> list[Prompt]:
    """Prompts that fill a k-click static decoder: k points, and a box + k - box_clicks points. A box counts as
    one click in SAM (its two corners replace the padding row) and as two in SAM 2 (the padding row stays)."""
    mask = largest_instance(sample)
    ys, xs = np.nonzero(mask)
    rng = np.random.default_rng(k)
    idx = rng.choice(len(xs), size=k, replace=len(xs) < k)
    pts = np.stack([xs[idx], ys[idx]], 1).astype(np.float64)
    prompts = [Prompt(f"static{k}_points", {"point_coords": pts, "point_labels": np.ones(k, int),
                                            "multimask_output": k == 1})]
    if k < box_clicks:
        return prompts
    box = {"box": bounding_box(mask), "multimask_output": False}
    if k > box_clicks:
        box.update(point_coords=pts[: k - box_clicks], point_labels=np.ones(k - box_clicks, int))
    prompts.append(Prompt(f"static{k}_box", box))
    return prompts


def compare_prompt(reference, predictor, prompt: Prompt, previous: dict[str, np.ndarray]) -> dict:
    """One prompt on two predictors (anything with the official predict(); the reference returns logits):
    the worst mask IoU over the returned masks, the largest score and low-res logit errors. `previous` carries
    each side's best low-res logits from one prompt to the next (mask_input prompts)."""
    kwargs = dict(prompt.kwargs)
    ref_kwargs, our_kwargs = dict(kwargs), dict(kwargs)
    if prompt.feed_previous_logits:
        ref_kwargs["mask_input"], our_kwargs["mask_input"] = previous["ref"], previous["ours"]
    ref_full, ref_iou, ref_low = reference.predict(**ref_kwargs)
    ours_full, ours_iou, ours_low = predictor.predict(return_logits=True, **our_kwargs)
    best = int(np.argmax(ref_iou))
    previous["ref"], previous["ours"] = ref_low[best:best + 1], ours_low[best:best + 1]
    ious = [mask_iou(r > 0, o > 0) for r, o in zip(ref_full, ours_full)]
    return {"prompt": prompt.name, "mask_iou": min(ious),
            "score_abs_error": float(np.max(np.abs(ref_iou - ours_iou))),
            "low_res_max_abs_error": float(np.max(np.abs(ref_low - ours_low))),
            "reference_mask_fraction": float(np.mean(ref_full > 0))}


def best_mask(predictor, rgb: np.ndarray, point: tuple[float, float]) -> np.ndarray:
    """(H, W) bool: the mask a user is shown for a one-point prompt on `rgb` (multimask, best of three by
    score, the official recommendation); how the gaze demo compares what it showed with a reference."""
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(point_coords=np.array([point]), point_labels=np.array([1]),
                                         multimask_output=True)
    return masks[int(np.argmax(scores))]
