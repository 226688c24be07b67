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


def batch_prompts(sample: SampleImage, size: int = 4, clicks: int | None = None,
                  box_clicks: int = 1) -> list[Prompt]:
    """Batched prompts in predict_batch's form, each of `size` prompts with its own points inside the largest
    instance. clicks None: one point each (multimask), and one point + the instance's box each (single mask).
    clicks K (a static batch graph's count): K points each, and the box + K - box_clicks points each."""
    mask = largest_instance(sample)
    ys, xs = np.nonzero(mask)
    n = 1 if clicks is None else clicks
    idx = np.random.default_rng(size * 100 + n).choice(len(xs), size=size * n, replace=len(xs) < size * n)
    pts = np.stack([xs[idx], ys[idx]], 1).astype(np.float64).reshape(size, n, 2)
    boxes = {"boxes": np.tile(bounding_box(mask), (size, 1)), "multimask_output": False}
    with_box = 1 if clicks is None else clicks - box_clicks  # points beside the box
    tag = f"batch{size}" + ("" if clicks is None else f"_static{clicks}")
    prompts = [Prompt(f"{tag}_points", {"point_coords": pts, "point_labels": np.ones((size, n), int),
                                        "multimask_output": n == 1})]
    if with_box == 0:
        prompts.append(Prompt(f"{tag}_box", boxes))
    elif with_box > 0:
        prompts.append(Prompt(f"{tag}_box_points", {"point_coords": pts[:, :with_box],
                                                    "point_labels": np.ones((size, with_box), int), **boxes}))
    return prompts


def _difference(name: str, ref: tuple[np.ndarray, ...], ours: tuple[np.ndarray, ...]) -> dict:
    """Two (masks as logits, scores, low-res logits) results of one prompt: the worst mask IoU over the
    returned masks, the largest score and low-res logit errors."""
    (ref_full, ref_iou, ref_low), (ours_full, ours_iou, ours_low) = ref, ours
    ious = [mask_iou(r > 0, o > 0) for r, o in zip(ref_full, ours_full)]
    return {"prompt": name, "mask_iou": min(ious),
            "score_abs_error": float(np.max(np.abs(ref_iou - ours_iou))),
            "low_res_max_abs_error": float(np.max(np.abs(ref_low - ours_low))),
            "reference_mask_fraction": float(np.mean(ref_full > 0))}


def compare_prompt(reference, predictor, prompt: Prompt, previous: dict[str, np.ndarray]) -> dict:
    """One prompt on two predictors (anything with the official predict(); the reference returns logits).
    `previous` carries each side's best low-res logits from one prompt to the next (mask_input prompts)."""
    kwargs = dict(prompt.kwargs)
    ref_kwargs, our_kwargs = dict(kwargs), dict(kwargs)
    if prompt.feed_previous_logits:
        ref_kwargs["mask_input"], our_kwargs["mask_input"] = previous["ref"], previous["ours"]
    ref = reference.predict(**ref_kwargs)
    ours = predictor.predict(return_logits=True, **our_kwargs)
    best = int(np.argmax(ref[1]))
    previous["ref"], previous["ours"] = ref[2][best:best + 1], ours[2][best:best + 1]
    return _difference(prompt.name, ref, ours)


def compare_batch(reference, predictor, prompt: Prompt) -> dict:
    """A batched prompt (batch_prompts): predictor.predict_batch once against B predict() calls of the reference,
    each row compared as compare_prompt compares a prompt; the worst row is reported, with the batch size."""
    kwargs = prompt.kwargs
    ours = predictor.predict_batch(return_logits=True, **kwargs)
    batch = len(ours[0])
    rows = []
    for i in range(batch):
        single = {"multimask_output": kwargs["multimask_output"],
                  **{k: kwargs[k][i] for k in ("point_coords", "point_labels") if k in kwargs},
                  **({"box": kwargs["boxes"][i]} if "boxes" in kwargs else {})}
        rows.append(_difference(prompt.name, reference.predict(**single), tuple(x[i] for x in ours)))
    return {"prompt": prompt.name, "batch": batch, "mask_iou": min(r["mask_iou"] for r in rows),
            **{k: max(r[k] for r in rows) for k in ("score_abs_error", "low_res_max_abs_error")},
            "reference_mask_fraction": float(np.mean([r["reference_mask_fraction"] for r in rows]))}


class _ScoresFirst:
    """predict_batch of point prompts through the two-stage graphs (predictor.decode_scores, then decode_masks of
    every row, asked in reverse order so a row mix-up shows), for compare_batch."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor

    def predict_batch(self, point_coords, point_labels, multimask_output=True, return_logits=True):
        from .processing import postprocess_masks
        p = self.predictor
        scored = p.decode_scores(point_coords, point_labels, multimask_output)
        rows = np.arange(len(scored.scores))[::-1]
        low = p.decode_masks(scored, rows)[::-1]
        return postprocess_masks(low, p.geometry), scored.scores, low


def compare_scores_first(reference, predictor, prompt: Prompt) -> dict:
    """compare_batch for segment everything's path: point prompts scored first, masks decoded after."""
    if "boxes" in prompt.kwargs:
        raise ValueError(f"{prompt.name}: the two-stage graphs take point prompts only")
    return {**compare_batch(reference, _ScoresFirst(predictor), prompt), "prompt": prompt.name + ":scores_first"}


def best_mask(predictor, rgb: np.ndarray, point: tuple[float, float]) -> np.ndarray:
    """(H, W) bool: the mask a user is shown for a one-point prompt on `rgb` (multimask, best of three by
    score, the official recommendation); how the gaze demo compares what it showed with a reference."""
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(point_coords=np.array([point]), point_labels=np.array([1]),
                                         multimask_output=True)
    return masks[int(np.argmax(scores))]
