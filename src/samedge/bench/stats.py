"""Latency statistics of repeated timings (milliseconds)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

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


def time_interleaved(fns: Sequence[Callable[[], object]], plan: TimingPlan) -> list[list[float]]:
    """Timings of several calls taken in rounds (f0, f1, ..., f0, f1, ...), one list per call, all of equal
    length: the i-th entries of every list come from the same round, so a drift in the machine's speed (a
    noisy neighbour, a frequency change) hits them alike and their differences can be paired. Each call gets
    `plan.warmup` untimed calls, then rounds run until `plan.min_runs` and `plan.min_seconds` per call have
    passed (at most `plan.max_runs`)."""
    if not fns:
        raise InputError("time_interleaved needs at least one call")
    for fn in fns:
        for _ in range(plan.warmup):
            fn()
    out: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    budget = plan.min_seconds * len(fns)
    while len(out[0]) < plan.max_runs and (len(out[0]) < plan.min_runs or time.perf_counter() - start < budget):
        for fn, samples in zip(fns, out):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return out
