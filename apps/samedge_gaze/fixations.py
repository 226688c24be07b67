"""Fixation detection: I-VT (velocity threshold) and I-DT (dispersion threshold), offline over a trace and
online per sample. Angles come from pixels through px_per_deg (from the camera's field of view:
image width / horizontal FOV in degrees, near the image centre)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .trace import GazeTrace


@dataclass(frozen=True)
class Fixation:
    start: float  # s
    end: float  # s
    x: float  # centroid, px
    y: float
    samples: int

    @property
    def duration(self) -> float:
        return self.end - self.start


def px_per_degree(image_width_px: int, horizontal_fov_deg: float) -> float:
    return image_width_px / horizontal_fov_deg


def _fixation(trace: GazeTrace, i: int, j: int) -> Fixation:
    return Fixation(float(trace.t[i]), float(trace.t[j - 1]), float(np.nanmean(trace.x[i:j])),
                    float(np.nanmean(trace.y[i:j])), j - i)


def velocity_deg_s(trace: GazeTrace, px_per_deg: float, window_s: float = 0.01) -> np.ndarray:
    """Angular speed by central differences over +-window_s/2 (sample-to-sample differences of a 1 kHz
    tracker are dominated by noise); NaN where either end is invalid."""
    t, x, y = trace.t, trace.x, trace.y
    dt_sample = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    k = max(1, int(round(window_s / 2 / dt_sample)))
    v = np.full(len(t), np.nan)
    if len(t) > 2 * k:
        dx = x[2 * k:] - x[:-2 * k]
        dy = y[2 * k:] - y[:-2 * k]
        dt = t[2 * k:] - t[:-2 * k]
        v[k:-k] = np.hypot(dx, dy) / px_per_deg / dt
    return v


def ivt(trace: GazeTrace, px_per_deg: float, velocity_threshold: float = 30.0,
        min_duration_s: float = 0.06, window_s: float = 0.01) -> list[Fixation]:
    """Runs of samples slower than velocity_threshold (deg/s) lasting at least min_duration_s."""
    slow = velocity_deg_s(trace, px_per_deg, window_s) < velocity_threshold  # NaN compares False: a break
    out, i, n = [], 0, len(slow)
    while i < n:
        if not slow[i]:
            i += 1
            continue
        j = i
        while j < n and slow[j]:
            j += 1
        if trace.t[j - 1] - trace.t[i] >= min_duration_s:
            out.append(_fixation(trace, i, j))
        i = j
    return out


def idt(trace: GazeTrace, px_per_deg: float, dispersion_deg: float = 1.0,
        min_duration_s: float = 0.1) -> list[Fixation]:
    """Salvucci & Goldberg's I-DT: a window of min_duration_s whose dispersion ((max-min) x + (max-min) y,
    in degrees) stays under the threshold grows until it would not; otherwise slide by one sample."""
    t, x, y = trace.t, trace.x / px_per_deg, trace.y / px_per_deg
    out, i, n = [], 0, len(t)

    def dispersion(a: int, b: int) -> float:
        xs, ys = x[a:b], y[a:b]
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            return np.inf
        return float(xs.max() - xs.min() + ys.max() - ys.min())

    while i < n:
        j = int(np.searchsorted(t, t[i] + min_duration_s, side="left")) + 1
        if j > n:
            break
        if dispersion(i, j) <= dispersion_deg:
            while j < n and dispersion(i, j + 1) <= dispersion_deg:
                j += 1
            out.append(_fixation(trace, i, j))
            i = j
        else:
            i += 1
    return out


class OnlineIVT:
    """I-VT one sample at a time, for live gaze: feed() returns "onset" once a fixation has lasted
    min_duration_s (prompt the segmenter then, with the centroid so far) and "offset" with the finished
    Fixation when the eye moves on."""

    def __init__(self, px_per_deg: float, velocity_threshold: float = 30.0, min_duration_s: float = 0.06,
                 window_s: float = 0.01) -> None:
        self.ppd, self.threshold, self.min_duration, self.window = px_per_deg, velocity_threshold, min_duration_s, window_s
        self._buf: list[tuple[float, float, float]] = []
        self._run: list[tuple[float, float, float]] = []
        self._announced = False

    def feed(self, t: float, x: float, y: float) -> tuple[str, Fixation] | None:
        self._buf.append((t, x, y))
        # keep the newest sample that is at least `window` old: at 1 kHz the speed spans the window, below
        # 1 / window Hz (30-90 Hz trackers, the mouse, most LSL streams) it spans one sample interval. Dropping
        # every sample older than the window left only the current one there: speed 0, one endless fixation.
        while len(self._buf) > 1 and t - self._buf[1][0] >= self.window:
            self._buf.pop(0)
        t0, x0, y0 = self._buf[0]
        speed = np.hypot(x - x0, y - y0) / self.ppd / (t - t0) if t > t0 else 0.0
        if np.isfinite(speed) and speed < self.threshold:
            self._run.append((t, x, y))
            if not self._announced and self._run[-1][0] - self._run[0][0] >= self.min_duration:
                self._announced = True
                return "onset", self._current()
            return None
        return self._close()

    def _current(self) -> Fixation:
        a = np.asarray(self._run)
        return Fixation(float(a[0, 0]), float(a[-1, 0]), float(a[:, 1].mean()), float(a[:, 2].mean()), len(a))

    def _close(self) -> tuple[str, Fixation] | None:
        event = ("offset", self._current()) if self._announced else None
        self._run, self._announced = [], False
        return event

    def flush(self) -> tuple[str, Fixation] | None:
        return self._close() if self._run else None
