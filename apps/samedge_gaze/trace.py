"""A gaze recording: timestamps (s), positions (px in the scene frame), confidence, validity."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GazeTrace:
    t: np.ndarray  # (N,) seconds, increasing
    x: np.ndarray  # (N,) pixels; NaN where the tracker lost the eye
    y: np.ndarray
    confidence: np.ndarray  # (N,) 0..1 (1 where the source has none)
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.t)
        if any(len(a) != n for a in (self.x, self.y, self.confidence)):
            raise ValueError("t, x, y and confidence must have the same length")
        if n > 1 and np.any(np.diff(self.t) < 0):
            raise ValueError("gaze timestamps must not decrease")

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.x) & np.isfinite(self.y)

    def cleaned(self, min_confidence: float = 0.6, max_gap_s: float = 0.075) -> "GazeTrace":
        """Low-confidence samples become invalid; gaps up to max_gap_s (blinks shorter than a saccade's
        detection window) are filled by linear interpolation, longer ones stay NaN."""
        x, y = self.x.astype(float).copy(), self.y.astype(float).copy()
        bad = ~self.valid | (self.confidence < min_confidence)
        x[bad] = y[bad] = np.nan
        good = np.flatnonzero(~bad)
        if len(good) >= 2:
            i = 0
            while i < len(bad):
                if not bad[i]:
                    i += 1
                    continue
                j = i
                while j < len(bad) and bad[j]:
                    j += 1
                if 0 < i and j < len(bad) and self.t[j] - self.t[i - 1] <= max_gap_s:
                    w = (self.t[i:j] - self.t[i - 1]) / (self.t[j] - self.t[i - 1])
                    x[i:j] = x[i - 1] + w * (x[j] - x[i - 1])
                    y[i:j] = y[i - 1] + w * (y[j] - y[i - 1])
                i = j
        return GazeTrace(self.t, x, y, self.confidence, self.source)
