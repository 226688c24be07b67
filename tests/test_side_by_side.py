"""export/side_by_side.py: graph exports run in forked workers give the results of running them in turn."""
from __future__ import annotations

import os

import pytest

from samedge.errors import ExportError, InputError
from samedge.export.side_by_side import can_fork, run_side_by_side


def _tasks():
    # closures over local state: never pickled, the workers read them from the forked memory
    weights = {"a": 2, "b": 3, "c": 5}
    return [lambda k=k: (k, weights[k] * 10, os.getpid()) for k in weights]


@pytest.mark.parametrize("jobs", [1, 2])
def test_results_come_back_in_task_order_with_each_tasks_time(jobs):
    done = []
    results = run_side_by_side(_tasks(), jobs, on_done=lambda i, s: done.append((i, s)))
    assert [r[:2] for r in results] == [("a", 20), ("b", 30), ("c", 50)]
    assert sorted(i for i, _ in done) == [0, 1, 2] and all(s >= 0 for _, s in done)
    pids = {r[2] for r in results}
    if jobs == 1 or not can_fork():
        assert pids == {os.getpid()}  # in this process
    else:
        assert os.getpid() not in pids  # in the workers


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_task_raises_its_own_error(jobs):
    def broken():
        raise ExportError("torch.onnx.export of prompt.onnx failed: boom")
    with pytest.raises(ExportError, match="prompt.onnx failed: boom"):
        run_side_by_side([lambda: 1, broken, lambda: 3], jobs)


def test_jobs_must_be_positive():
    with pytest.raises(InputError, match="jobs must be >= 1"):
        run_side_by_side([lambda: 1], 0)


def test_convert_jobs_reach_the_coreml_conversion(monkeypatch, tmp_path):
    """ConvertConfig.jobs (samedge convert --jobs; ExportConfig.jobs within an export) is what the CoreML
    conversion runs side by side with, unless the CoreMLConfig given sets its own."""
    from samedge.export import convert, coreml_convert
    from samedge.export.convert import ConvertConfig
    from samedge.export.coreml_convert import CoreMLConfig
    seen = []
    monkeypatch.setattr(coreml_convert, "convert_bundle_coreml", lambda sam, out, cfg: seen.append(cfg.jobs))
    configs = (ConvertConfig(("coreml",), jobs=1),
               ConvertConfig(("coreml",), coreml=CoreMLConfig((1,), jobs=3), jobs=1),
               ConvertConfig(("coreml",), coreml=CoreMLConfig((1,)), jobs=2),
               ConvertConfig(("coreml",)))
    for cfg in configs:
        convert._convert_one("coreml", lambda: None, tmp_path, tmp_path, None if cfg.coreml else _manifest(), cfg)
    assert seen == [1, 3, 2, None]
    with pytest.raises(InputError, match="jobs must be 1..64"):
        ConvertConfig(("coreml",), jobs=0)


def _manifest():
    from types import SimpleNamespace
    return SimpleNamespace(decoders=[SimpleNamespace(num_points=1)])  # what static_points reads
