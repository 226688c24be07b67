"""How far two segment-everything results agree: the exactness check (same masks, scores within tolerance) and the
fast mode's recall of exact-mode masks. One engine for tests and benchmarks."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .masks import rle_to_mask


def record_mask(record: dict[str, Any]) -> np.ndarray:
    """A record's segmentation as (H, W) bool, whatever the output_mode."""
    seg = record["segmentation"]
    if isinstance(seg, np.ndarray):
        return seg.astype(bool, copy=False)
    if isinstance(seg.get("counts"), list):
        return rle_to_mask(seg)
    from .masks import pycocotools_mask
    return pycocotools_mask().decode(seg).astype(bool)


def pairwise_mask_iou(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """(len(a), len(b)) mask IoUs (1.0 for two empty masks), by one matrix product of the flattened masks."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    fa = np.stack([m.ravel() for m in a]).astype(np.float32)
    fb = np.stack([m.ravel() for m in b]).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 1.0)


@dataclass(frozen=True)
class RecordAgreement:
    """reference vs candidate records. Matching is one-to-one and greedy on mask IoU (best pairs first);
    matched: pairs at IoU >= the threshold; the score errors are over the matched pairs; in_order: positions where
    both lists hold the same mask (both come out in NMS order, so this is all of them unless two scores are within
    float noise of each other)."""
    reference: int
    candidate: int
    matched: int
    min_matched_iou: float
    max_predicted_iou_error: float
    max_stability_error: float
    in_order: int
    iou_threshold: float

    def is_exact(self, score_tolerance: float = 1e-3) -> bool:
        return (self.reference == self.candidate == self.matched
                and self.max_predicted_iou_error <= score_tolerance and self.max_stability_error <= score_tolerance)

    @property
    def recall(self) -> float:
        return 1.0 if self.reference == 0 else self.matched / self.reference

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_records(reference: list[dict], candidate: list[dict], iou: float = 0.99) -> RecordAgreement:
    ref_masks, cand_masks = [record_mask(r) for r in reference], [record_mask(r) for r in candidate]
    ious = pairwise_mask_iou(ref_masks, cand_masks)
    pairs = []
    if ious.size:
        used_r, used_c = set(), set()
        for flat in np.argsort(-ious, axis=None, kind="stable"):
            i, j = divmod(int(flat), ious.shape[1])
            if ious[i, j] < iou:
                break
            if i in used_r or j in used_c:
                continue
            used_r.add(i)
            used_c.add(j)
            pairs.append((i, j))
    def err(key: str) -> float:
        return max((abs(reference[i][key] - candidate[j][key]) for i, j in pairs), default=0.0)
    diag = min(len(reference), len(candidate))
    return RecordAgreement(
        reference=len(reference), candidate=len(candidate), matched=len(pairs),
        min_matched_iou=min((float(ious[i, j]) for i, j in pairs), default=1.0),
        max_predicted_iou_error=float(err("predicted_iou")), max_stability_error=float(err("stability_score")),
        in_order=int(sum(ious[k, k] >= iou for k in range(diag))), iou_threshold=iou)


def recall(reference: list[dict], candidate: list[dict], iou: float = 0.9) -> float:
    """Fraction of the reference's masks that the candidate has too (one-to-one, at mask IoU >= iou)."""
    return compare_records(reference, candidate, iou).recall
