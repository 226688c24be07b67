"""Independent graph exports run side by side, one per core, in forked worker processes.

Why: torch.onnx's dynamo exporter spends nearly all of a graph's export in single-threaded Python (tracing,
decompositions, the ONNX translation): 36 s of the 38 s that the tiny model's prompt graph takes here, on one
core of two. The encoder, the decoders and the split decoder's graphs do not depend on each other, so a bundle
exports in about 1 / cores of the time. Forked, not spawned: the workers see the model already in memory
(copy-on-write) instead of unpickling gigabytes of weights, and nothing but the small results travels back.
Linux only (fork with macOS frameworks is unsafe); elsewhere, and with jobs=1, the tasks run in this process.
"""
from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Callable, Sequence

from ..errors import InputError

# The tasks of the run in progress, read by the forked workers (a task is a closure over the model: it is
# never pickled, only its index is sent).
_TASKS: Sequence[Callable[[], object]] = ()


def default_jobs() -> int:
    """1: one after another, in this process. A clean-clone CI run (2026-12-03) hung with two forked export
    workers asleep on a futex: a lock held by one of the parent's threads (ORT / OpenVINO / torch pools) when
    it forked. Until the workers start from a clean process, side by side is opt-in (--jobs N)."""
    return 1


def can_fork() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _run_task(index: int) -> tuple[int, object, float]:
    import torch
    torch.set_num_threads(1)  # one core per worker; the workers together fill the machine
    t0 = time.perf_counter()
    result = _TASKS[index]()
    return index, result, time.perf_counter() - t0


def run_side_by_side(tasks: Sequence[Callable[[], object]], jobs: int,
                     on_done: Callable[[int, float], None] | None = None) -> list[object]:
    """Run every task (results in task order); on_done(index, seconds) as each one finishes. Tasks are handed
    out in the order given, so put the longest first. A task's exception is raised here (the other workers are
    stopped); its results must be picklable when jobs > 1."""
    if jobs < 1:
        raise InputError(f"jobs must be >= 1, got {jobs}")
    results: list[object] = [None] * len(tasks)
    if jobs == 1 or len(tasks) <= 1 or not can_fork():
        for i, task in enumerate(tasks):
            t0 = time.perf_counter()
            results[i] = task()
            if on_done:
                on_done(i, time.perf_counter() - t0)
        return results
    global _TASKS
    _TASKS = tasks
    try:
        with multiprocessing.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
            for i, result, seconds in pool.imap_unordered(_run_task, range(len(tasks)), chunksize=1):
                results[i] = result
                if on_done:
                    on_done(i, seconds)
    finally:
        _TASKS = ()
    return results
