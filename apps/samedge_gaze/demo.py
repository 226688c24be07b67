"""The AR gaze demo: a scene video + a gaze stream -> the looked-at object segmented, as an overlay video,
per-frame JSONL and a summary. Uses samedge's public API only (SamPredictor).

The replay source maps a real recorded EyeLink trace (eyelinkio's test recording) onto a real video
(cockatoo.mp4 from Debian's python3-imageio): the gaze was not recorded on that video, and every output
says so.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from samedge.errors import InputError

from .fixations import OnlineIVT, px_per_degree
from .one_euro import OneEuroFilter
from .scheduler import GazeSegmenter, SchedulePolicy
from .trace import GazeTrace

COCKATOO = Path("/usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4")


@dataclass(frozen=True)
class DemoConfig:
    bundle: Path
    out_dir: Path
    video: Path = COCKATOO
    gaze: str = "replay:eyelink"  # replay:eyelink | csv:PATH | edf:PATH
    backend: str = "auto"
    precision: str | None = None
    policy: SchedulePolicy = SchedulePolicy("every_frame")
    horizontal_fov_deg: float = 60.0  # the scene camera's field of view, for pixels per degree
    max_frames: int | None = None
    gif_width: int = 480
    threads: int | None = None  # per session; 1 leaves a core for the decoder while the encoder runs
    realtime: bool = True  # frames arrive at the video's rate, as from a camera; False: as fast as possible

    def __post_init__(self) -> None:
        if not 1 <= self.horizontal_fov_deg <= 180:
            raise InputError(f"horizontal field of view must be 1..180 degrees, got {self.horizontal_fov_deg}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"max_frames must be >= 1, got {self.max_frames}")


def load_gaze(spec: str, frame_wh: tuple[int, int], duration_s: float) -> tuple[GazeTrace, str]:
    """Gaze in the video frame's pixels, starting at t=0."""
    from .adapters import read_csv, read_eyelink_edf
    kind, _, arg = spec.partition(":")
    if kind == "replay" and arg == "eyelink":
        import eyelinkio
        path = Path(eyelinkio.__file__).parent / "tests" / "data" / "test_2_raw.edf"
        trace, meta = read_eyelink_edf(path)
        sw, sh = meta["screen"] if len(meta["screen"]) == 2 and min(meta["screen"]) > 0 else (1920, 1080)
        label = (f"REPLAY: a real EyeLink recording ({path.name}, {meta['sfreq']:.0f} Hz, screen {sw:.0f}x{sh:.0f}) "
                 "scaled onto this video; the gaze was not recorded on it")
    elif kind == "edf":
        trace, meta = read_eyelink_edf(Path(arg))
        sw, sh = meta["screen"]
        label = f"EyeLink EDF {arg} scaled from its screen to the video"
    elif kind == "csv":
        trace, sw, sh = read_csv(Path(arg)), frame_wh[0], frame_wh[1]
        label = f"CSV {arg} (pixels of the video)"
    else:
        raise InputError(f"gaze source must be replay:eyelink, edf:PATH or csv:PATH, got {spec!r}")
    w, h = frame_wh
    keep = trace.t <= trace.t[0] + duration_s
    t = trace.t[keep] - trace.t[0]
    return GazeTrace(t, trace.x[keep] * w / sw, trace.y[keep] * h / sh, trace.confidence[keep], label), label


def _overlay(frame_bgr, mask, raw, smooth, fixation, lines):
    import cv2
    out = frame_bgr.copy()
    if mask is not None:
        colour = np.zeros_like(out)
        colour[mask] = (255, 144, 30)
        out = cv2.addWeighted(out, 1.0, colour, 0.45, 0)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 200, 80), 2)
    if raw is not None and np.isfinite(raw).all():
        cv2.circle(out, (int(raw[0]), int(raw[1])), 4, (0, 0, 255), -1)
    if smooth is not None and np.isfinite(smooth).all():
        cv2.circle(out, (int(smooth[0]), int(smooth[1])), 9, (0, 255, 0), 2)
    if fixation is not None:
        cv2.circle(out, (int(fixation.x), int(fixation.y)), 28, (0, 255, 255), 2)
    for i, text in enumerate(lines):
        cv2.putText(out, text, (12, 28 + 26 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def run_demo(cfg: DemoConfig) -> dict:
    import cv2
    from PIL import Image

    from samedge import SamPredictor
    if not cfg.video.is_file():
        raise InputError(f"{cfg.video} not found; on Debian `apt install python3-imageio` ships "
                                "cockatoo.mp4, or pass --video FILE")
    cap = cv2.VideoCapture(str(cfg.video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if cfg.max_frames:
        n_frames = min(n_frames, cfg.max_frames)
    gaze, label = load_gaze(cfg.gaze, (w, h), n_frames / fps)
    gaze = gaze.cleaned()
    ppd = px_per_degree(w, cfg.horizontal_fov_deg)
    detector = OnlineIVT(ppd)
    fx, fy = OneEuroFilter(1.0, 0.02), OneEuroFilter(1.0, 0.02)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(cfg.out_dir / "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    gif_frames, rows, latencies, stability = [], [], [], []
    predictor = SamPredictor.from_bundle(cfg.bundle, cfg.backend, precision=cfg.precision, threads=cfg.threads,
                                         embedding_cache_size=0)
    seg = GazeSegmenter(predictor, cfg.policy)
    fixation, fixation_id, pending_onset = None, 0, None
    previous: tuple[int | None, np.ndarray | None] = (None, None)
    gi, start = 0, time.perf_counter()
    with open(cfg.out_dir / "frames.jsonl", "w") as jl:
        for index in range(n_frames):
            ok, bgr = cap.read()
            if not ok:
                break
            t_frame = index / fps
            if cfg.realtime:  # a camera delivers frame i at i / fps: never earlier
                ahead = start + t_frame - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            frame_t0 = time.perf_counter()
            seg.on_frame(np.ascontiguousarray(bgr[..., ::-1]))
            enc_ms = (time.perf_counter() - frame_t0) * 1e3
            raw = smooth = None
            dec_before = seg.stats.decoder_calls
            while gi < len(gaze.t) and gaze.t[gi] < t_frame + 1 / fps:
                t, x, y = gaze.t[gi], gaze.x[gi], gaze.y[gi]
                gi += 1
                if not (np.isfinite(x) and np.isfinite(y)):
                    continue
                raw, smooth = (x, y), (fx(t, x), fy(t, y))
                event = detector.feed(t, x, y)
                if event is None:
                    continue
                kind, fix = event
                t0 = time.perf_counter()
                seg.on_fixation(kind, fix)
                if kind == "onset":
                    fixation, fixation_id = fix, fixation_id + 1
                    if seg.mask is not None:
                        latencies.append((time.perf_counter() - t0) * 1e3)
                    else:
                        pending_onset = t0  # no embedding yet: the mask comes with the first one
                else:
                    fixation = None
            if pending_onset is not None and seg.mask is not None:
                latencies.append((time.perf_counter() - pending_onset) * 1e3)
                pending_onset = None
            if fixation is not None and previous[0] == fixation_id and previous[1] is not None \
                    and seg.mask is not None:
                a, b = previous[1], seg.mask
                union = np.logical_or(a, b).sum()
                stability.append(float(np.logical_and(a, b).sum() / union) if union else 1.0)
            frame_ms = (time.perf_counter() - frame_t0) * 1e3
            lines = [f"samedge gaze demo | {predictor.backend} | frame {index} | {frame_ms:.0f} ms/frame",
                     f"encoder requests {seg.stats.encoder_requests}, decoder calls {seg.stats.decoder_calls}",
                     "REPLAY: recorded EyeLink gaze mapped onto this video" if cfg.gaze.startswith("replay") else label,
                     "random weights: masks are meaningless" if predictor.bundle.manifest.weights.is_random else ""]
            out = _overlay(bgr, seg.mask, raw, smooth, fixation if fixation else None, [s for s in lines if s])
            writer.write(out)
            if index % 2 == 0:
                scale = cfg.gif_width / w
                gif_frames.append(Image.fromarray(cv2.resize(out, (cfg.gif_width, int(h * scale)))[..., ::-1]))
            row = {"frame": index, "t": t_frame, "gaze": None if raw is None else [float(raw[0]), float(raw[1])],
                   "gaze_filtered": None if smooth is None else [float(smooth[0]), float(smooth[1])],
                   "fixation_id": fixation_id if fixation is not None else None,
                   "mask_area": int(seg.mask.sum()) if seg.mask is not None else 0,
                   "decoder_calls": seg.stats.decoder_calls - dec_before, "on_frame_ms": enc_ms,
                   "frame_ms": frame_ms}
            jl.write(json.dumps(row) + "\n")
            rows.append(row)
            previous = (row["fixation_id"], seg.mask)  # frame-to-frame mask stability within a fixation
    wall = time.perf_counter() - start
    writer.release()
    predictor.close()
    if gif_frames:
        gif_frames[0].save(cfg.out_dir / "overlay.gif", save_all=True, append_images=gif_frames[1:],
                           duration=int(2000 / fps), loop=0)
    frame_ms = [r["frame_ms"] for r in rows]
    q = lambda xs, p: float(np.percentile(xs, p)) if xs else None  # noqa: E731
    summary = {
        "video": str(cfg.video), "frames": len(rows), "video_fps": fps, "gaze": label,
        "bundle": str(cfg.bundle), "backend": predictor.backend, "policy": asdict(cfg.policy),
        "weights": predictor.bundle.manifest.weights.source,
        "output_fps": len(rows) / wall if wall else None, "frame_ms_p50": q(frame_ms, 50), "frame_ms_p95": q(frame_ms, 95),
        "gaze_to_mask_ms_p50": q(latencies, 50), "gaze_to_mask_ms_p95": q(latencies, 95),
        "gaze_to_mask_ms": [round(v, 1) for v in latencies],
        "fixations": fixation_id, "encoder_requests": seg.stats.encoder_requests,
        "decoder_calls": seg.stats.decoder_calls, "masks_kept": seg.stats.masks_kept,
        "encoder_reasons": seg.stats.reasons,
        "encoder_calls_per_s": seg.stats.encoder_requests / wall, "decoder_calls_per_s": seg.stats.decoder_calls / wall,
        "mask_stability_iou_mean": statistics.fmean(stability) if stability else None,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "note": "with random weights the masks are meaningless; latency, fps and scheduling figures are real",
    }
    (cfg.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
