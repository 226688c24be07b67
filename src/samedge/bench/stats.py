"""Latency statistics of repeated timings (milliseconds)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class LatencyStats:
    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for one sample
    min: float
    max: float

    @property
    def spread(self) -> float:
        """(p90 - p50) / p50: how noisy the stage is, to read a ratio against."""
        return (self.p90 - self.p50) / self.p50 if self.p50 else float("nan")


def summarize(samples_ms: list[float] | np.ndarray) -> LatencyStats:
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise InputError(f"need a non-empty 1-D list of timings, got shape {x.shape}")
    if not np.isfinite(x).all() or (x < 0).any():
        raise InputError("timings must be finite and non-negative")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])  # linear interpolation between closest ranks
    return LatencyStats(n=int(x.size), p50=float(p50), p90=float(p90), p99=float(p99), mean=float(x.mean()),
                        std=float(x.std(ddof=1)) if x.size > 1 else 0.0, min=float(x.min()), max=float(x.max()))


@dataclass(frozen=True)
class TimingPlan:
    """How long to time a stage: `warmup` untimed calls, then at least `min_runs` and until `min_seconds`
    have passed, at most `max_runs`."""
    warmup: int = 2
    min_runs: int = 5
    max_runs: int = 200
    min_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_runs < 1 or self.max_runs < self.min_runs or self.min_seconds < 0:
            raise InputError(f"bad timing plan {self}: need warmup >= 0, 1 <= min_runs <= max_runs, min_seconds >= 0")


def time_calls(fn: Callable[[], object], plan: TimingPlan) -> list[float]:
    for _ in range(plan.warmup):
        fn()
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < plan.max_runs and (len(out) < plan.min_runs or time.perf_counter() - start < plan.min_seconds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out
