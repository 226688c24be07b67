"""SamAutomaticMaskGenerator: segment_anything's automatic mask generator ("segment everything") on a bundle.

The same parameters, defaults, order of operations and records as the official one, on the runtime path (numpy
and the backend, no torch). What differs is only where the work goes, never what it decides:
- prompts go to the decoder in batches of points_per_batch through one graph call (predictor.decode_batch); with a
  split-decoder bundle the per-image part of the decoder ran once in set_image, and the embedding is fed once per
  batch, not copied per prompt;
- the predicted-IoU filter runs on the decoder's scores before any mask is upsampled: the official code upsamples
  every candidate to full size first, then drops the ones under pred_iou_thresh, which does not depend on the
  masks. Stability, boxes, edge filtering and RLE then run on the survivors only, in the official order.
upscale_first=True does it the official way (every candidate upsampled first), as a same-run baseline for
benchmarks; it gives the same records.

fast=True is not exact, and says so: grid points are visited coarse to fine (every 8th point a side, then every
4th, ...), and a point that lies inside a mask already accepted in its crop is skipped. Its agreement with exact
mode is measured (agreement.recall), never assumed.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import processing
from ..errors import InputError
from ..validation import check_flag, check_image
from .grids import build_all_layer_point_grids, generate_crop_boxes, is_box_near_crop_edge, xyxy_to_xywh
from .masks import (area_from_rle, coco_encode_rle, masks_to_boxes, masks_to_rle, pycocotools_mask,
                    remove_small_regions, rle_to_mask, stability_score, _cv2)
from .nms import batched_nms, box_area

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


DEFAULT_PRED_IOU_THRESH = {"sam": 0.88, "sam2": 0.8}


@dataclass(frozen=True)
class GeneratorConfig:
    """segment_anything.SamAutomaticMaskGenerator's parameters, with its defaults and meaning."""
    points_per_side: int | None = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: tuple[np.ndarray, ...] | None = None
    min_mask_region_area: int = 0
    output_mode: str = "binary_mask"
    # SAM2AutomaticMaskGenerator's two additions: m2m refines each candidate with its own low-res logits as the
    # mask prior (one more single-mask decode); multimask_output False asks one mask per point.
    use_m2m: bool = False
    multimask_output: bool = True

    def __post_init__(self) -> None:
        check_flag(self.use_m2m, "use_m2m")
        check_flag(self.multimask_output, "multimask_output")
        for name in ("points_per_batch", "crop_n_layers", "crop_n_points_downscale_factor", "min_mask_region_area"):
            _check_int(getattr(self, name), name, low=1 if name in ("points_per_batch",
                                                                   "crop_n_points_downscale_factor") else 0)
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
            _check_number(getattr(self, name), name, 0.0, 1.0)
        _check_number(self.stability_score_offset, "stability_score_offset", 0.0, None)
        _check_number(self.crop_overlap_ratio, "crop_overlap_ratio", 0.0, 1.0, high_open=True)
        if (self.points_per_side is None) == (self.point_grids is None):
            raise InputError("give exactly one of points_per_side and point_grids (as the official generator): "
                             f"got points_per_side={self.points_per_side!r} and point_grids="
                             f"{'None' if self.point_grids is None else f'{len(self.point_grids)} grids'}")
        if self.points_per_side is not None:
            _check_int(self.points_per_side, "points_per_side", low=1)
            smallest = int(self.points_per_side / self.crop_n_points_downscale_factor ** self.crop_n_layers)
            if smallest < 1:
                raise InputError(f"points_per_side={self.points_per_side} with crop_n_points_downscale_factor="
                                 f"{self.crop_n_points_downscale_factor} leaves no point in crop layer "
                                 f"{self.crop_n_layers}; use fewer crop layers or a smaller factor")
        else:
            grids = tuple(np.asarray(g, np.float64) for g in self.point_grids)
            if len(grids) != self.crop_n_layers + 1:
                raise InputError(f"point_grids needs one grid per crop layer 0..crop_n_layers "
                                 f"({self.crop_n_layers + 1}), got {len(grids)}")
            for i, g in enumerate(grids):
                if g.ndim != 2 or g.shape[1] != 2 or len(g) == 0 or not np.all(np.isfinite(g)) \
                        or g.min() < 0 or g.max() > 1:
                    raise InputError(f"point_grids[{i}] must be (N, 2) points x, y in [0, 1] with N >= 1, got "
                                     f"shape {g.shape}" + ("" if g.size == 0 else f", range [{g.min()}, {g.max()}]"))
            object.__setattr__(self, "point_grids", grids)
        if self.output_mode not in OUTPUT_MODES:
            raise InputError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {self.output_mode!r}")
        if self.output_mode == "coco_rle":
            pycocotools_mask()  # fail at construction, as the official generator does, not after the work
        if self.min_mask_region_area > 0:
            _cv2()

    def grids(self) -> list[np.ndarray]:
        if self.point_grids is not None:
            return list(self.point_grids)
        return build_all_layer_point_grids(self.points_per_side, self.crop_n_layers,
                                           self.crop_n_points_downscale_factor)


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_number(value: object, name: str, low: float, high: float | None, high_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating, np.integer)) \
        and np.isfinite(value) and value >= low and (high is None or (value < high if high_open else value <= high))
    if not ok:
        where = f">= {low}" if high is None else f"in [{low}, {high}{')' if high_open else ']'}"
        raise InputError(f"{name} must be a number {where}, got {value!r}")


@dataclass
class GenerationStats:
    """What one generate() call did: candidates left after each filter (summed over crops) and time per stage
    (ms). candidates = prompts x 3 masks."""
    crops: int = 0
    prompts: int = 0
    candidates: int = 0
    after_pred_iou: int = 0
    after_stability: int = 0
    after_crop_edge: int = 0
    after_box_nms: int = 0
    after_crop_nms: int = 0
    after_small_regions: int = 0
    masks: int = 0
    skipped_points: int = 0  # fast mode: grid points inside an accepted mask, never decoded
    # prompts whose masks were decoded (all of them, except where scores came first: predictor.decode_scores)
    mask_decoded_prompts: int = 0
    # decoder: the whole decoder, or with scores first its scores stage; decoder_masks: the masks stage.
    # upsample / filter / rle run fused, a few candidates per task on every core: their wall time is split over
    # the three by each one's share of the time inside the tasks
    stages_ms: dict[str, float] = field(default_factory=lambda: {
        "encoder": 0.0, "decoder": 0.0, "decoder_masks": 0.0, "upsample": 0.0, "filter": 0.0, "nms": 0.0, "rle": 0.0,
        "small_regions": 0.0, "encode_output": 0.0})
    total_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Clock:
    def __init__(self, stats: GenerationStats) -> None:
        self.stats, self.t = stats, time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stats.stages_ms[stage] += (now - self.t) * 1e3
        self.t = now

    def split(self, shares: dict[str, float]) -> None:
        """The time since the last lap, split over stages in proportion to shares (their time inside tasks that
        ran them together on several threads)."""
        now = time.perf_counter()
        total = sum(shares.values())
        for stage, share in shares.items():
            self.stats.stages_ms[stage] += (now - self.t) * 1e3 * (share / total if total > 0 else 1 / len(shares))
        self.t = now


_MASKS_PER_TASK = 4  # candidates a task takes from upsampling to RLE: their logits (4 x 1.2 MB at 640x480) stay in cache


@dataclass
class _FullResolution:
    """What the full-resolution filters kept of a few candidates: indices into the batch, their stability, boxes
    and RLEs; the union of their masks (fast mode's coverage); time per stage inside the task (ms)."""
    keep: np.ndarray
    stable: int  # how many passed the stability filter (before the crop-edge filter)
    stability: np.ndarray
    boxes: np.ndarray
    rles: list
    union: np.ndarray | None
    ms: dict[str, float]


@dataclass
class _Candidates:
    """Masks that survived so far, as the official MaskData holds them (RLEs, boxes x0y0x1y1 int64, ...)."""
    rles: list = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    iou_preds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float64))
    stability: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    crop_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))

    def __len__(self) -> int:
        return len(self.rles)

    def take(self, keep: np.ndarray) -> "_Candidates":
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return _Candidates([self.rles[i] for i in idx], self.boxes[idx], self.iou_preds[idx], self.points[idx],
                           self.stability[idx], self.crop_boxes[idx])

    @staticmethod
    def cat(parts: list["_Candidates"]) -> "_Candidates":
        if not parts:
            return _Candidates()
        return _Candidates([r for p in parts for r in p.rles], *(np.concatenate([getattr(p, k) for p in parts])
                           for k in ("boxes", "iou_preds", "points", "stability", "crop_boxes")))


class SamAutomaticMaskGenerator:
    """segment_anything.SamAutomaticMaskGenerator on a samedge SamPredictor (any backend).

    generate(image (H, W, 3) uint8 RGB) -> records with the official keys: segmentation (bool (H, W), an
    uncompressed RLE or a COCO RLE by output_mode), area, bbox (XYWH), predicted_iou, point_coords,
    stability_score, crop_box (XYWH). last_stats holds the candidate counts and stage times of the last call.
    """

    def __init__(self, predictor, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float | None = None, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: list[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask", use_m2m: bool = False,
                 multimask_output: bool = True, *, upscale_first: bool = False, fast: bool = False) -> None:
        if pred_iou_thresh is None:  # the family's official default: 0.88 (SAM), 0.8 (SAM 2)
            family = predictor.bundle.manifest.family if predictor is not None else "sam"
            pred_iou_thresh = DEFAULT_PRED_IOU_THRESH[family]
        self.config = GeneratorConfig(
            points_per_side=points_per_side, points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh, stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh, crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio, crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            point_grids=None if point_grids is None else tuple(point_grids),
            min_mask_region_area=min_mask_region_area, output_mode=output_mode, use_m2m=use_m2m,
            multimask_output=multimask_output)
        self.predictor = predictor
        self.point_grids = self.config.grids()
        self.upscale_first = check_flag(upscale_first, "upscale_first")
        self.fast = check_flag(fast, "fast")
        self.last_stats: GenerationStats | None = None
        self._on_prompts: Callable[[int], None] = lambda n: None

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "onnxruntime", device: str = "cpu",
                    **params) -> "SamAutomaticMaskGenerator":
        """A generator on SamPredictor(path, backend, device); params are the generator's keywords."""
        from ..predictor import SamPredictor
        # every crop is a new image: caching their embeddings would only hold memory
        return cls(SamPredictor(path, backend, device, embedding_cache_size=0), **params)

    # -- public ----------------------------------------------------------------------------------------
    def prompt_count(self, image_hw: tuple[int, int]) -> int:
        """How many point prompts generate() decodes for an image of this size (all crops; fast mode skips some)."""
        _, layers = generate_crop_boxes(image_hw, self.config.crop_n_layers, self.config.crop_overlap_ratio)
        return sum(len(self.point_grids[layer]) for layer in layers)

    def generate(self, image: np.ndarray,
                 on_prompts: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """(H, W, 3) uint8 RGB image -> mask records, in the official order (see the class docstring).
        on_prompts(n) is called after each batch with the number of grid points it consumed (progress bars)."""
        image = check_image(image, "RGB", self.predictor.bundle.manifest.image_size)
        self._on_prompts = on_prompts or (lambda n: None)
        stats = GenerationStats()
        start = time.perf_counter()
        data = self._generate_masks(image, stats)
        clock = _Clock(stats)
        if self.config.min_mask_region_area > 0 and len(data):
            data = self._remove_small_regions(data, self.config.min_mask_region_area,
                                              max(self.config.box_nms_thresh, self.config.crop_nms_thresh))
        stats.after_small_regions = len(data)
        clock.lap("small_regions")
        records = self._records(data)
        clock.lap("encode_output")
        stats.masks = len(records)
        stats.total_ms = (time.perf_counter() - start) * 1e3
        self.last_stats = stats
        return records

    # -- the official stages ---------------------------------------------------------------------------
    def _generate_masks(self, image: np.ndarray, stats: GenerationStats) -> _Candidates:
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.config.crop_n_layers,
                                                     self.config.crop_overlap_ratio)
        stats.crops = len(crop_boxes)
        data = _Candidates.cat([self._process_crop(image, box, layer, orig_size, stats)
                                for box, layer in zip(crop_boxes, layer_idxs)])
        clock = _Clock(stats)
        if len(crop_boxes) > 1 and len(data):
            # prefer masks from smaller crops (the official score: 1 / crop area, float32)
            scores = np.float32(1) / box_area(data.crop_boxes).astype(np.float32)
            data = data.take(batched_nms(data.boxes.astype(np.float32), scores, np.zeros(len(data)),
                                         self.config.crop_nms_thresh))
        stats.after_crop_nms = len(data)
        clock.lap("nms")
        return data

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int, orig_size: tuple[int, int],
                      stats: GenerationStats) -> _Candidates:
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        clock = _Clock(stats)
        self.predictor.set_image(cropped)
        clock.lap("encoder")
        crop_hw = cropped.shape[:2]
        points = self.point_grids[layer] * np.array(crop_hw)[None, ::-1]
        batch = self.config.points_per_batch
        if not self.fast:
            parts = []
            for i in range(0, len(points), batch):
                parts.append(self._process_batch(points[i:i + batch], crop_box, orig_size, stats))
                self._on_prompts(len(points[i:i + batch]))
        else:
            parts, coverage = [], np.zeros(crop_hw, bool)
            pending = points[_coarse_to_fine(len(points))]
            rows = np.minimum(pending[:, 1].astype(np.int64), crop_hw[0] - 1)
            cols = np.minimum(pending[:, 0].astype(np.int64), crop_hw[1] - 1)
            i = 0
            while i < len(pending):
                start, take = i, []
                while i < len(pending) and len(take) < batch:
                    if coverage[rows[i], cols[i]]:
                        stats.skipped_points += 1
                    else:
                        take.append(i)
                    i += 1
                if take:
                    parts.append(self._process_batch(pending[take], crop_box, orig_size, stats, coverage))
                self._on_prompts(i - start)
        self.predictor.reset_image()
        data = _Candidates.cat(parts)
        clock = _Clock(stats)
        keep = batched_nms(data.boxes.astype(np.float32), data.iou_preds, np.zeros(len(data)),
                           self.config.box_nms_thresh)
        data = data.take(keep)
        stats.after_box_nms += len(data)
        data.boxes = data.boxes + np.array([x0, y0, x0, y0], np.int64)
        data.points = data.points + np.array([x0, y0], np.float64)
        data.crop_boxes = np.tile(np.array(crop_box, np.int64), (len(data), 1))
        clock.lap("nms")
        return data

    def _process_batch(self, points: np.ndarray, crop_box: list[int], orig_size: tuple[int, int],
                       stats: GenerationStats, coverage: np.ndarray | None = None) -> _Candidates:
        cfg, predictor = self.config, self.predictor
        clock = _Clock(stats)
        n = len(points)
        if self._staged():
            return self._process_staged(points, crop_box, orig_size, stats, coverage)
        low_res, iou_preds = predictor.decode_batch(point_coords=points[:, None, :],
                                                    point_labels=np.ones((n, 1), np.float32),
                                                    multimask_output=cfg.multimask_output)
        clock.lap("decoder")
        per_point = low_res.shape[1]
        low_res = low_res.reshape(n * per_point, *low_res.shape[2:])
        iou_preds = iou_preds.reshape(-1)
        pts = np.repeat(points, per_point, axis=0)
        stats.prompts += n
        stats.candidates += len(iou_preds)
        stats.mask_decoded_prompts += n
        if cfg.use_m2m:
            low_res, iou_preds = self._refine_with_m2m(pts, low_res)
            clock.lap("decoder")
        return self._filter(low_res, iou_preds, pts, crop_box, orig_size, stats, coverage, clock)

    def _staged(self) -> bool:
        """Scores first, masks only for prompts with a candidate that passes pred_iou_thresh: the same records
        (the filter reads only the scores), without the output upscaling of the prompts it drops."""
        return (not self.upscale_first and not self.config.use_m2m
                and self.predictor.staged_decoding(self.config.multimask_output))

    def _process_staged(self, points: np.ndarray, crop_box: list[int], orig_size: tuple[int, int],
                        stats: GenerationStats, coverage: np.ndarray | None) -> _Candidates:
        cfg, predictor = self.config, self.predictor
        clock = _Clock(stats)
        n = len(points)
        scored = predictor.decode_scores(points[:, None, :], np.ones((n, 1), np.float32), cfg.multimask_output)
        clock.lap("decoder")
        per_point = scored.scores.shape[1]
        iou_preds = scored.scores.reshape(-1)
        stats.prompts += n
        stats.candidates += len(iou_preds)
        keep = np.flatnonzero(iou_preds > cfg.pred_iou_thresh) if cfg.pred_iou_thresh > 0 else np.arange(len(iou_preds))
        prompts = np.unique(keep // per_point)
        stats.mask_decoded_prompts += len(prompts)
        clock.lap("filter")
        low = predictor.decode_masks(scored, prompts)  # (K, C, 256, 256)
        low_res = low[np.searchsorted(prompts, keep // per_point), keep % per_point]
        clock.lap("decoder_masks")
        pts = np.repeat(points, per_point, axis=0)[keep]
        # the IoU filter has run: _filter's own pass keeps everything (every score is above the threshold)
        return self._filter(low_res, iou_preds[keep], pts, crop_box, orig_size, stats, coverage, clock)

    def _filter(self, low_res: np.ndarray, iou_preds: np.ndarray, pts: np.ndarray, crop_box: list[int],
                orig_size: tuple[int, int], stats: GenerationStats, coverage: np.ndarray | None,
                clock: _Clock) -> _Candidates:
        """Candidates (C, 256, 256) logits, (C,) scores, (C, 2) points -> the official filters in order."""
        cfg, geometry = self.config, self.predictor.geometry
        logits = None
        if self.upscale_first:  # the official order: every candidate at full size before any filter
            logits = processing.postprocess_masks(low_res, geometry)
            clock.lap("upsample")
        keep = np.flatnonzero(iou_preds > cfg.pred_iou_thresh) if cfg.pred_iou_thresh > 0 else np.arange(len(pts))
        stats.after_pred_iou += len(keep)
        low_res, iou_preds, pts = low_res[keep], iou_preds[keep], pts[keep]
        clock.lap("filter")
        if logits is not None:  # the straightforward way, kept as a baseline: one pass after another on one core
            done = [self._full_resolution(logits[keep], 0, crop_box, orig_size, coverage is not None, upsampled=True)]
        else:
            # Each task takes a few candidates from upsampling to RLE while their logits are in cache, on every
            # core (numpy releases the GIL in each step). The wall time is split over the stages by their share
            # of the time inside the tasks.
            starts = range(0, len(pts), _MASKS_PER_TASK)
            done = processing.map_on_cores(
                lambda i: self._full_resolution(low_res[i:i + _MASKS_PER_TASK], i, crop_box, orig_size,
                                                coverage is not None), starts)
        clock.split({stage: sum(d.ms[stage] for d in done) for stage in ("upsample", "filter", "rle")})
        keep = np.concatenate([d.keep for d in done]) if done else np.zeros(0, np.int64)
        stats.after_stability += sum(d.stable for d in done)
        stats.after_crop_edge += len(keep)
        if coverage is not None:
            for d in done:
                if d.union is not None:
                    coverage |= d.union
        boxes = np.concatenate([d.boxes for d in done]) if done else np.zeros((0, 4), np.int64)
        stability = np.concatenate([d.stability for d in done]) if done else np.zeros(0, np.float32)
        return _Candidates([r for d in done for r in d.rles], boxes, iou_preds[keep].astype(np.float32), pts[keep],
                           stability.astype(np.float32), np.zeros((len(keep), 4), np.int64))

    def _full_resolution(self, low_res: np.ndarray, first: int, crop_box: list[int], orig_size: tuple[int, int],
                         want_union: bool, upsampled: bool = False) -> "_FullResolution":
        """Candidates first..first+K: (K, 256, 256) low-res logits (or (K, H, W) logits already upsampled) ->
        stability filter, masks, boxes, crop-edge filter, RLE, on the calling thread."""
        cfg, predictor = self.config, self.predictor
        threshold = predictor.bundle.manifest.mask_threshold
        ms, t = {"upsample": 0.0, "filter": 0.0, "rle": 0.0}, time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal t
            now = time.perf_counter()
            ms[stage] += (now - t) * 1e3
            t = now
        logits = low_res if upsampled else processing.postprocess_masks(low_res, predictor.geometry, spread=False)
        lap("upsample")
        stability = stability_score(logits, threshold, cfg.stability_score_offset)
        keep = np.arange(len(logits))
        if cfg.stability_score_thresh > 0:
            keep = np.flatnonzero(stability >= cfg.stability_score_thresh)
        stable = len(keep)
        masks = logits[keep] > threshold
        del logits
        boxes = masks_to_boxes(masks)
        orig_h, orig_w = orig_size
        inside = np.flatnonzero(~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h]))
        keep, masks, boxes = keep[inside], masks[inside], boxes[inside]
        union = masks.any(axis=0) if want_union and len(masks) else None
        lap("filter")
        rles = masks_to_rle(_uncrop_masks(masks, crop_box, orig_h, orig_w))
        lap("rle")
        return _FullResolution(keep + first, stable, stability[keep], boxes, rles, union, ms)

    def _refine_with_m2m(self, pts: np.ndarray, low_res: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SAM 2's mask-to-mask refinement: each candidate decoded again, single-mask, with its own low-res logits
        (as the predictor returns them: clamped for SAM 2) as the mask prior, points_per_batch at a time.
        (C, 2) points, (C, 256, 256) logits -> refined (C, 256, 256) logits, (C,) scores."""
        bound = self.predictor.bundle.manifest.processing.low_res_clamp
        prior = low_res if bound is None else np.clip(low_res, -bound, bound)
        step = self.config.points_per_batch
        out_low, out_iou = [], []
        for i in range(0, len(pts), step):
            sl = slice(i, i + step)
            lr, iou = self.predictor.decode_batch(point_coords=pts[sl, None, :],
                                                  point_labels=np.ones((len(pts[sl]), 1), np.float32),
                                                  mask_input=prior[sl, None], multimask_output=False)
            out_low.append(lr[:, 0])
            out_iou.append(iou[:, 0])
        if not out_low:
            return low_res, np.zeros(0, np.float32)
        return np.concatenate(out_low), np.concatenate(out_iou)

    @staticmethod
    def _remove_small_regions(data: _Candidates, min_area: int, nms_thresh: float) -> _Candidates:
        """Fill small holes, drop small islands, then box NMS preferring masks that did not change (official)."""
        masks, scores = [], []
        for rle in data.rles:
            mask, changed_holes = remove_small_regions(rle_to_mask(rle), min_area, mode="holes")
            mask, changed_islands = remove_small_regions(mask, min_area, mode="islands")
            masks.append(mask)
            scores.append(float(not (changed_holes or changed_islands)))
        stacked = np.stack(masks)
        boxes = masks_to_boxes(stacked)
        keep = batched_nms(boxes.astype(np.float32), np.asarray(scores, np.float32), np.zeros(len(boxes)),
                           nms_thresh)
        rles, new_boxes = list(data.rles), data.boxes.copy()
        for i in keep:
            if scores[i] == 0.0:  # only changed masks get a new RLE and box
                rles[i] = masks_to_rle(stacked[i:i + 1])[0]
                new_boxes[i] = boxes[i]
        updated = _Candidates(rles, new_boxes, data.iou_preds, data.points, data.stability, data.crop_boxes)
        return updated.take(keep)

    def _records(self, data: _Candidates) -> list[dict[str, Any]]:
        mode = self.config.output_mode
        if mode == "coco_rle":
            segmentations = [coco_encode_rle(rle) for rle in data.rles]
        elif mode == "binary_mask":
            segmentations = [rle_to_mask(rle) for rle in data.rles]
        else:
            segmentations = data.rles
        return [{"segmentation": segmentations[i],
                 "area": area_from_rle(data.rles[i]),
                 "bbox": xyxy_to_xywh(data.boxes[i]),
                 "predicted_iou": float(data.iou_preds[i]),
                 "point_coords": [data.points[i].tolist()],
                 "stability_score": float(data.stability[i]),
                 "crop_box": xyxy_to_xywh(data.crop_boxes[i])} for i in range(len(data))]


def _coarse_to_fine(count: int) -> np.ndarray:
    """Visiting order of a square n x n grid (x fastest): every 8th point a side first, then every 4th, 2nd, all;
    a grid that is not square keeps its order."""
    n = int(round(count ** 0.5))
    if n * n != count:
        return np.arange(count)
    i, j = np.divmod(np.arange(count), n)
    level = np.zeros(count, np.int64)
    for step in (2, 4, 8):
        level += (i % step == 0) & (j % step == 0)
    return np.argsort(-level, kind="stable")


def _uncrop_masks(masks: np.ndarray, crop_box: list[int], orig_h: int, orig_w: int) -> np.ndarray:
    """(K, h, w) masks of a crop -> (K, H, W) in the image, zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    out = np.zeros((masks.shape[0], orig_h, orig_w), bool)
    out[:, y0:y1, x0:x1] = masks
    return out
