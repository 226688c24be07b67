"""The AR gaze demo: a scene video + a gaze stream -> the looked-at object segmented, as an overlay video,
per-frame JSONL and a summary. Uses samedge's public API only (SamPredictor).

Sources (sources.py): a video file or camera:N; recorded gaze files, the replay source, live LSL gaze or the
mouse. The replay source maps a real recorded EyeLink trace (eyelinkio's test recording) onto a real video
(cockatoo.mp4 from Debian's python3-imageio): the gaze was not recorded on that video, and every output says
so. The ground-truth mode (groundtruth.py) replaces both with a scored synthetic sequence of real photos.

Gaze-to-mask latency is measured from the moment the gaze sample that completed a fixation onset arrived
(its time on the demo's clock; for a recording, its recorded time since the start) to the moment the mask
for it is ready to draw. The fixation detector's own minimum duration (60 ms of dwell) comes before that
and is not included: it is what makes a fixation a fixation. A fixation that ends (or is still going when
the run ends) before its mask is ready counts as "unanswered", with the time it waited as a lower bound of
its latency: left out, the slowest looks (those after a scene cut) would vanish from the percentiles.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from samedge.bench.machine import usable_cores
from samedge.compare import best_mask
from samedge.errors import BackendUnavailableError, InputError
from samedge.metrics import mask_iou

from .fixations import OnlineIVT, px_per_degree
from .groundtruth import GroundTruthConfig, GroundTruthSequence, GroundTruthVideo
from .one_euro import OneEuroFilter
from .scheduler import GazeSegmenter, SchedulePolicy
from .sources import COCKATOO, MouseGaze, TraceGaze, open_gaze, open_video, opencv_has_gui

WINDOW = "samedge gaze"


@dataclass(frozen=True)
class DemoConfig:
    bundle: Path
    out_dir: Path
    video: str | Path = COCKATOO  # a file or camera:N
    gaze: str = "replay:eyelink"  # see sources.GAZE_SPECS
    backend: str = "auto"
    precision: str | None = None
    policy: SchedulePolicy = SchedulePolicy("on_demand")
    horizontal_fov_deg: float = 60.0  # the scene camera's field of view, for pixels per degree
    max_frames: int | None = None
    gif_width: int = 480
    threads: int | None = None  # per session; None: half the usable cores (encoder and decoder run at once)
    encoder_threads: int | None = None  # the encoder's session; None: as threads
    realtime: bool = True  # frames arrive at the video's rate, as from a camera; False: as fast as possible
    warm_up: bool = True  # before the clock starts: run every graph once and encode the first frame ("ready")
    ground_truth: bool = False  # the scored synthetic sequence instead of video + gaze
    reference_frames: int = 24  # ground truth: frames re-segmented by the fp32 reference afterwards
    reference_bundle: Path | None = None  # fp32 bundle for the reference (default: this bundle's fp32 ONNX)
    show: bool = False  # a live window (needs an OpenCV with a GUI); always on for mouse gaze

    def __post_init__(self) -> None:
        if not 1 <= self.horizontal_fov_deg <= 180:
            raise InputError(f"horizontal field of view must be 1..180 degrees, got {self.horizontal_fov_deg}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be >= 1 (or None: half the usable cores), got {self.threads}")
        if self.encoder_threads is not None and self.encoder_threads < 1:
            raise InputError(f"encoder_threads must be >= 1 (or None: as threads), got {self.encoder_threads}")
        if self.reference_frames < 0:
            raise InputError(f"reference_frames must be >= 0, got {self.reference_frames}")


def _overlay(frame_bgr, mask, raw, smooth, fixation, lines, truth=None):
    import cv2
    out = frame_bgr.copy()
    if mask is not None:
        colour = np.zeros_like(out)
        colour[mask] = (255, 144, 30)
        out = cv2.addWeighted(out, 1.0, colour, 0.35, 0)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = 1e-3 * mask.size  # outline the mask's regions, not its specks
        cv2.drawContours(out, [c for c in contours if cv2.contourArea(c) >= min_area], -1, (255, 200, 80), 2)
    if truth is not None:  # ground-truth mode: the looked-at instance's exact outline
        contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (80, 255, 80), 2)
    if raw is not None and np.isfinite(raw).all():
        cv2.circle(out, (int(raw[0]), int(raw[1])), 4, (0, 0, 255), -1)
    if smooth is not None and np.isfinite(smooth).all():
        cv2.circle(out, (int(smooth[0]), int(smooth[1])), 9, (0, 255, 0), 2)
    if fixation is not None:
        cv2.circle(out, (int(fixation.x), int(fixation.y)), 28, (0, 255, 255), 2)
    scale = max(0.45, min(0.65, frame_bgr.shape[1] / 1000))
    for i, text in enumerate(lines):
        y = int(28 * scale / 0.65) + int(26 * scale / 0.65) * i
        cv2.putText(out, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 5, cv2.LINE_AA)
        cv2.putText(out, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)
    return out


class GroundTruthScore:
    """Scores what the demo showed against the sequence's exact instance masks, frame by frame, and keeps
    a few shown masks for the fp32 reference to re-segment afterwards."""

    def __init__(self, seq: GroundTruthSequence, reference_frames: int, frames: int) -> None:
        self.seq = seq
        self.ious: dict[int, list[float]] = {}  # target index -> IoU of the shown mask with it, per frame
        self.onsets_on_target: list[bool] = []
        stride = max(1, min(frames, seq.n_frames) // max(reference_frames, 1))
        self._sample_every, self.samples = stride, []  # (frame, fixation point, shown mask)
        self._budget = reference_frames

    def _target(self, t: float):
        g = self.seq.target_at(t)
        return (self.seq.targets.index(g), g) if g is not None else (None, None)

    def on_onset(self, frame: int, t: float, fixation) -> None:
        k, g = self._target(t)
        # a sample can be newer than the frame on screen: score only looks at what the frame shows
        if g is not None and g.scene == self.seq.scene_of(frame):
            gt = self.seq.instance_mask(frame, g.instance)
            x, y = int(round(fixation.x)), int(round(fixation.y))
            self.onsets_on_target.append(bool(0 <= y < gt.shape[0] and 0 <= x < gt.shape[1] and gt[y, x]))

    def on_frame(self, frame: int, t: float, fixation, mask) -> np.ndarray | None:
        """Scores the frame; returns the looked-at instance's exact mask (None between fixations)."""
        k, g = self._target(t)
        if g is None:
            return None
        truth = self.seq.instance_mask(frame, g.instance)
        if fixation is None or mask is None:
            return truth
        self.ious.setdefault(k, []).append(mask_iou(mask, truth))
        if frame % self._sample_every == 0 and len(self.samples) < self._budget:
            self.samples.append((frame, (float(fixation.x), float(fixation.y)), mask.copy()))
        return truth

    def summary(self, reference: dict | None, frames_played: int) -> dict:
        # only targets whose fixation began within the frames played (max_frames may stop early)
        n = sum(g.t0 < frames_played / self.seq.fps for g in self.seq.targets)
        medians = {k: float(np.median(v)) for k, v in self.ious.items()}
        all_ious = [v for vs in self.ious.values() for v in vs]
        return {
            "sequence": self.seq.label, "frames": frames_played, "targets": n,
            "targets_segmented": len(medians),
            "fixation_onsets_on_target": (float(np.mean(self.onsets_on_target)) if self.onsets_on_target else None),
            "hit_rate": sum(m >= 0.5 for m in medians.values()) / n if n else None,
            "hit_rule": "a target is hit when the median IoU of the shown mask with its exact mask, over the "
                        "frames of its fixation that show a mask, is >= 0.5; targets never segmented are misses",
            "mask_iou_vs_ground_truth_mean": float(np.mean(all_ious)) if all_ious else None,
            "reference": reference,
        }


def _check_reference(cfg: DemoConfig, bundle) -> None:
    """Before the run, not after it: the reference must be an fp32 bundle that loads."""
    from samedge.bundle import load_bundle
    reference = load_bundle(cfg.reference_bundle) if cfg.reference_bundle is not None else bundle
    if reference.manifest.precision != "fp32":
        raise InputError(f"the reference must have fp32 ONNX graphs; {reference.path}'s are "
                         f"{reference.manifest.precision}: pass --reference-bundle with the fp32 bundle it was "
                         "quantized from")


def _reference_fidelity(cfg: DemoConfig, score: GroundTruthScore) -> dict | None:
    """Re-segment the sampled frames with the fp32 reference (ONNX Runtime, fresh embedding, the same
    fixation point, best of three masks) and compare with what the demo showed. This is what tells a
    random-weight run anything: the demo's masks (quantization, stale embeddings, the prior) against the
    full-precision model on that very frame."""
    from samedge import SamPredictor
    if not score.samples:
        return None
    ref_path = cfg.reference_bundle or cfg.bundle
    shown_ious, fresh_ious, vs_truth = [], [], []

    with SamPredictor.from_bundle(ref_path, "onnxruntime", embedding_cache_size=0) as ref, \
            SamPredictor.from_bundle(cfg.bundle, cfg.backend, precision=cfg.precision,
                                     embedding_cache_size=0) as same:
        for frame, point, shown in score.samples:
            rgb = score.seq.frame(frame)
            reference = best_mask(ref, rgb, point)
            shown_ious.append(mask_iou(shown, reference))
            fresh_ious.append(mask_iou(best_mask(same, rgb, point), reference))
            g = score.seq.target_at(frame / score.seq.fps)
            vs_truth.append(mask_iou(reference, score.seq.instance_mask(frame, g.instance)))
    return {"bundle": str(ref_path), "backend": "onnxruntime fp32", "frames": len(shown_ious),
            "shown_vs_reference_iou_mean": float(np.mean(shown_ious)),
            "shown_vs_reference_iou_min": float(np.min(shown_ious)),
            "fresh_vs_reference_iou_mean": float(np.mean(fresh_ious)),
            "reference_vs_ground_truth_iou_mean": float(np.mean(vs_truth)),
            "what": "shown: the mask the demo showed (this bundle and backend, a possibly older embedding, the mask "
                    "prior); fresh: this bundle and backend decoding the same frame and point from scratch "
                    "(quantization and backend alone); both against a fresh fp32 ONNX Runtime decode of that frame "
                    "at that point, the best of three masks by score"}


class GazeHandler:
    """Gaze samples -> filtered cursor, online fixations, segmenter calls, and each onset's gaze-to-mask
    latency. Called whenever samples may have arrived: between frames as well as on them, so a fixation is
    answered as soon as it is detected, not at the next frame."""

    def __init__(self, seg: GazeSegmenter, detector: OnlineIVT, start: float, live_clock: bool,
                 score: "GroundTruthScore | None") -> None:
        self.seg, self.detector, self.start, self.live_clock, self.score = seg, detector, start, live_clock, score
        self.fx, self.fy = OneEuroFilter(1.0, 0.02), OneEuroFilter(1.0, 0.02)
        self.raw: tuple[float, float] | None = None
        self.smooth: tuple[float, float] | None = None
        self.fixation = None
        self.fixation_id = 0
        self.onsets: list[dict] = []  # {"frame", "ms", "path": decoded | kept | first embedding | unanswered}
        self._pending: tuple[float, int] | None = None

    def handle(self, samples, frame: int) -> None:
        seg = self.seg
        for sample in samples:
            self.raw = (sample.x, sample.y)
            self.smooth = (self.fx(sample.t, sample.x), self.fy(sample.t, sample.y))
            event = self.detector.feed(sample.t, sample.x, sample.y)
            if event is None:
                continue
            kind, fix = event
            # when the sample arrived: its time on the demo clock (live), or now (as fast as possible)
            arrived = self.start + sample.t if self.live_clock else time.perf_counter()
            kept = seg.stats.masks_kept
            seg.on_fixation(kind, fix)
            if kind == "offset":
                self.fixation = None
                self.unanswered(arrived)  # the look ended before its mask came
                continue
            self.fixation, self.fixation_id = fix, self.fixation_id + 1
            if self.score is not None:
                self.score.on_onset(frame, sample.t, fix)
            if seg.awaiting_embedding:
                self._pending = (arrived, frame)  # the mask comes with the first embedding (refresh)
            elif seg.mask is not None:
                path = "kept" if seg.stats.masks_kept > kept else "decoded"
                self.onsets.append({"frame": frame, "ms": (time.perf_counter() - arrived) * 1e3, "path": path})
            # else: the fixation is outside the frame; there is no mask to wait for

    def unanswered(self, now: float) -> None:
        """A fixation still waiting for its first embedding has ended (or the run has): record it, with the
        wait so far as a lower bound of its latency."""
        if self._pending is not None:
            arrived, frame = self._pending
            self.onsets.append({"frame": frame, "ms": (now - arrived) * 1e3, "path": "unanswered"})
            self._pending = None

    def refreshed(self) -> None:
        """After seg.refresh(): an onset that waited for the first embedding has its mask now."""
        if self._pending is not None and self.seg.mask is not None:
            arrived, frame = self._pending
            self.onsets.append({"frame": frame, "ms": (time.perf_counter() - arrived) * 1e3,
                                "path": "first embedding"})
            self._pending = None


def _sources(cfg: DemoConfig):
    if cfg.ground_truth:
        seq = GroundTruthSequence(GroundTruthConfig(horizontal_fov_deg=cfg.horizontal_fov_deg))
        return GroundTruthVideo(seq), TraceGaze(seq.trace, seq.label), seq
    video = open_video(cfg.video)
    try:
        return video, open_gaze(cfg.gaze, video.size, WINDOW), None
    except BaseException:
        video.close()
        raise


def run_demo(cfg: DemoConfig) -> dict:
    video, gaze, seq = _sources(cfg)
    try:
        return _run(cfg, video, gaze, seq)
    finally:
        video.close()
        gaze.close()


def _run(cfg: DemoConfig, video, gaze, seq) -> dict:
    import cv2
    from PIL import Image

    from samedge import SamPredictor
    w, h = video.size
    fps = video.fps
    n_frames = min(video.n_frames or cfg.max_frames or 10**9, cfg.max_frames or 10**9)
    show = cfg.show or isinstance(gaze, MouseGaze)
    if isinstance(gaze, MouseGaze):
        gaze.attach()  # raises BackendUnavailableError, naming the fix, on a headless OpenCV
    elif show and not opencv_has_gui():
        raise BackendUnavailableError("--show needs an OpenCV build with a GUI (pip install opencv-python; "
                                      "this one is headless); the overlay video is written either way")
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(cfg.out_dir / "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    gif_frames, rows, stability = [], [], []
    threads = cfg.threads or max(1, usable_cores() // 2)
    encoder_threads = cfg.encoder_threads or threads
    predictor = SamPredictor.from_bundle(cfg.bundle, cfg.backend, precision=cfg.precision, threads=threads,
                                         encoder_threads=encoder_threads,
                                         embedding_cache_size=0)
    if seq is not None and cfg.reference_frames:
        _check_reference(cfg, predictor.bundle)
    warm = predictor.warm_up((h, w)) if cfg.warm_up else {}
    seg = GazeSegmenter(predictor, cfg.policy)
    first = video.read()
    if first is None:
        raise InputError(f"{video.label} gave no frames")
    if cfg.warm_up:  # ready = the first frame is encoded; the clock starts after that
        t0 = time.perf_counter()
        seg.prime(np.ascontiguousarray(first[..., ::-1]))
        warm["first_frame_encode"] = (time.perf_counter() - t0) * 1e3
    score = GroundTruthScore(seq, cfg.reference_frames, n_frames) if seq is not None else None
    live_clock = cfg.realtime or video.live or gaze.live
    previous: tuple[int | None, np.ndarray | None] = (None, None)
    last_embedding = predictor.current
    dec_before, dec_ms_before = 0, 0.0
    start = time.perf_counter()
    clock = lambda: time.perf_counter() - start  # noqa: E731
    handler = GazeHandler(seg, OnlineIVT(px_per_degree(w, cfg.horizontal_fov_deg)), start, live_clock, score)
    gaze.start()
    dropped, out = 0, None
    with open(cfg.out_dir / "frames.jsonl", "w") as jl:
        index = 0
        while index < n_frames:
            bgr = video.read() if index else first
            if bgr is None:
                break
            if live_clock and not video.live:
                # a camera hands over its newest frame: one whose successor is already due was never seen (the
                # display keeps the last output). Processing every frame late instead let the video fall behind
                # the gaze clock, and looks were answered on frames seconds old.
                while index + 1 < n_frames and clock() >= (index + 1) / fps and (newer := video.read()) is not None:
                    bgr, index, dropped = newer, index + 1, dropped + 1
                    if out is not None:
                        writer.write(out)
            t_frame = clock() if video.live else index / fps
            if live_clock and not video.live:  # a camera delivers frame i at i / fps: never earlier
                while (ahead := t_frame - clock()) > 0:  # meanwhile, answer gaze on the frame on screen
                    handler.handle(gaze.poll(clock()), max(index - 1, 0))
                    time.sleep(min(ahead, 0.004))
            frame_t0 = time.perf_counter()
            seg.on_frame(np.ascontiguousarray(bgr[..., ::-1]))
            handler.handle(gaze.poll(clock() if live_clock else t_frame), index)
            seg.refresh()
            handler.refreshed()
            fixation, fixation_id = handler.fixation, handler.fixation_id
            if fixation is not None and previous[0] == fixation_id and previous[1] is not None \
                    and seg.mask is not None:
                stability.append(mask_iou(previous[1], seg.mask))
            truth = score.on_frame(index, t_frame, fixation, seg.mask) if score is not None else None
            render_t0 = time.perf_counter()
            onsets = handler.onsets
            lines = [f"samedge gaze demo | {predictor.backend} | frame {index} | "
                     f"{(render_t0 - frame_t0) * 1e3:.0f} ms to segment",
                     f"encoder requests {seg.stats.encoder_requests}, decoder calls {seg.stats.decoder_calls}"
                     + (f" | last gaze-to-mask {onsets[-1]['ms']:.0f} ms" if onsets else ""),
                     "REPLAY: recorded EyeLink gaze mapped onto this video" if cfg.gaze.startswith("replay")
                     and seq is None else gaze.label[:70],
                     "random weights: masks are meaningless" if predictor.bundle.manifest.weights.is_random else ""]
            raw, smooth = handler.raw, handler.smooth
            out = _overlay(bgr, seg.mask, raw, smooth, fixation, [s for s in lines if s], truth)
            writer.write(out)
            if show:
                cv2.imshow(WINDOW, out)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
            if index % 2 == 0:
                scale = cfg.gif_width / w
                gif_frames.append(Image.fromarray(cv2.resize(out, (cfg.gif_width, int(h * scale)))[..., ::-1]))
            t_end = time.perf_counter()
            current = predictor.current
            landed, last_embedding = (current if current is not last_embedding else None), current
            row = {"frame": index, "t": t_frame, "gaze": None if raw is None else [float(raw[0]), float(raw[1])],
                   "gaze_filtered": None if smooth is None else [float(smooth[0]), float(smooth[1])],
                   "fixation_id": fixation_id if fixation is not None else None,
                   "mask_area": int(seg.mask.sum()) if seg.mask is not None else 0,
                   # since the previous row, so calls made while waiting for this frame count too
                   "decoder_calls": seg.stats.decoder_calls - dec_before,
                   "ms": {"decoder": seg.stats.decoder_ms - dec_ms_before,  # those calls' predict() time
                          # an embedding that became current since the previous row: its encode, on the
                          # encoder thread
                          "encoder_landed": None if landed is None else landed.encode_ms,
                          "render": (t_end - render_t0) * 1e3, "frame": (t_end - frame_t0) * 1e3}}
            dec_before, dec_ms_before = seg.stats.decoder_calls, seg.stats.decoder_ms
            jl.write(json.dumps(row) + "\n")
            rows.append(row)
            previous = (row["fixation_id"], seg.mask)  # frame-to-frame mask stability within a fixation
            index += 1
    wall = clock()
    handler.unanswered(time.perf_counter())  # a look still waiting when the video ended
    writer.release()
    predictor.close()
    if show:
        cv2.destroyWindow(WINDOW)
    if gif_frames:
        gif_frames[0].save(cfg.out_dir / "overlay.gif", save_all=True, append_images=gif_frames[1:],
                           duration=int(2000 / fps), loop=0)
    frame_ms = [r["ms"]["frame"] for r in rows]
    onsets = handler.onsets
    latencies = [o["ms"] for o in onsets]
    q = lambda xs, p: float(np.percentile(xs, p)) if xs else None  # noqa: E731
    summary = {
        "video": video.label, "frames": len(rows), "frames_dropped": dropped, "video_fps": fps, "gaze": gaze.label,
        "bundle": str(cfg.bundle), "backend": predictor.backend, "policy": asdict(cfg.policy),
        "weights": predictor.bundle.manifest.weights.source, "realtime": live_clock,
        "warm_up_ms": {k: round(v, 1) for k, v in warm.items()},
        "output_fps": len(rows) / wall if wall else None, "frame_ms_p50": q(frame_ms, 50), "frame_ms_p95": q(frame_ms, 95),
        "gaze_to_mask_ms_p50": q(latencies, 50), "gaze_to_mask_ms_p95": q(latencies, 95),
        "gaze_to_mask": [{**o, "ms": round(o["ms"], 1)} for o in onsets],
        # unanswered onsets enter the percentiles with their wait, a lower bound: then so are the percentiles
        "onsets_unanswered": sum(o["path"] == "unanswered" for o in onsets),
        "gaze_to_mask_is_lower_bound": any(o["path"] == "unanswered" for o in onsets),
        "latency_basis": ("from the arrival of the sample completing a fixation onset to the mask being ready"
                          if live_clock else "processing time only (not real time: frames as fast as possible)"),
        "fixations": handler.fixation_id, "encoder_requests": seg.stats.encoder_requests,
        "decoder_calls": seg.stats.decoder_calls, "masks_kept": seg.stats.masks_kept,
        "encoder_reasons": seg.stats.reasons,
        "encoder_calls_per_s": seg.stats.encoder_requests / wall, "decoder_calls_per_s": seg.stats.decoder_calls / wall,
        "mask_stability_iou_mean": statistics.fmean(stability) if stability else None,
        "cpu_cores": usable_cores(), "threads_per_session": threads, "encoder_threads": encoder_threads,
        "note": "with random weights the masks are meaningless; latency, fps and scheduling figures are real",
    }
    if score is not None:
        summary["ground_truth"] = score.summary(_reference_fidelity(cfg, score), len(rows) + dropped)
    (cfg.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
