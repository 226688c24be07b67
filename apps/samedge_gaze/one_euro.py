"""One Euro filter (Casiez, Roussel, Vogel, CHI 2012): a low-pass whose cutoff rises with speed, so a
still cursor stops jittering and a fast one does not lag."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class OneEuroFilter:
    min_cutoff: float = 1.0  # Hz: smoothing when still (lower = smoother)
    beta: float = 0.007  # how fast the cutoff rises with speed (higher = less lag)
    d_cutoff: float = 1.0  # Hz: smoothing of the speed estimate
    _x: float | None = None
    _dx: float = 0.0
    _t: float | None = None

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, t: float, x: float) -> float:
        if self._t is None or t <= self._t:
            self._x, self._t = x, t
            return x
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * abs(self._dx)
        a = self._alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x

    def reset(self) -> None:
        self._x, self._dx, self._t = None, 0.0, None
