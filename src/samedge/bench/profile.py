"""Where a graph spends its time: ONNX Runtime's per-node profile, summed by op type."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np


def profile_onnx(path: Path, feeds: dict[str, np.ndarray], runs: int = 3, threads: int | None = None) -> dict:
    """{"total_ms": per run, "by_op_type": [{"op", "ms", "share"}...] largest first} from ORT's node trace."""
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        sess.run(None, feeds)  # warm-up, excluded below by keeping the last `runs` model_run events
        for _ in range(runs):
            sess.run(None, feeds)
        trace = json.loads(Path(sess.end_profiling()).read_text())
    model_runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = model_runs[-runs]["ts"] if len(model_runs) >= runs else 0
    by_op: dict[str, float] = {}
    for e in trace:
        if e.get("cat") == "Node" and e.get("ts", 0) >= start and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1e3 / runs
    total = sum(by_op.values())
    rows = sorted(({"op": k, "ms": v, "share": v / total if total else 0.0} for k, v in by_op.items()),
                  key=lambda r: -r["ms"])
    return {"total_ms": total, "by_op_type": rows}
