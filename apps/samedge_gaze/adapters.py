"""Recorded gaze files -> GazeTrace: EyeLink EDF (eyelinkio), Pupil Labs exports, Tobii-style TSV, plain CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .trace import GazeTrace


def read_eyelink_edf(path: Path, eye: str = "left") -> tuple[GazeTrace, dict]:
    """Samples (px on the EyeLink screen) and the file's own parsed fixations, for checking detectors."""
    import eyelinkio
    edf = eyelinkio.read_edf(str(path))
    fields = edf.info["sample_fields"]
    suffix = "" if "xpos" in fields else f"_{eye}"
    x = np.asarray(edf["samples"][fields.index("xpos" + suffix)], float)
    y = np.asarray(edf["samples"][fields.index("ypos" + suffix)], float)
    bad = (x < -1e6) | (x > 1e6) | (y < -1e6) | (y > 1e6) | (x == 0) & (y == 0)
    x[bad] = y[bad] = np.nan
    t = np.asarray(edf["times"], float)
    trace = GazeTrace(t, x, y, np.ones_like(t), f"eyelink {Path(path).name}")
    eye_index = 0 if eye == "left" or "xpos" in fields else 1
    fx = edf["discrete"]["fixations"]
    fx = fx[fx["eye"] == eye_index] if "xpos" not in fields else fx
    return trace, {"sfreq": edf.info["sfreq"], "screen": tuple(edf.info["screen_coords"]), "fixations": fx}


def read_csv(path: Path) -> GazeTrace:
    """Plain CSV with a header: t, x, y[, confidence] (seconds, pixels)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"t", "x", "y"} <= set(rows[0]):
        raise ValueError(f"{path}: need a header with t, x, y[, confidence]")
    col = lambda k, default=np.nan: np.array([float(r[k]) if r.get(k) not in (None, "") else default  # noqa: E731
                                              for r in rows])
    conf = col("confidence", 1.0) if "confidence" in rows[0] else np.ones(len(rows))
    return GazeTrace(col("t"), col("x"), col("y"), conf, f"csv {Path(path).name}")


def read_pupil_labs(path: Path, frame_size: tuple[int, int]) -> GazeTrace:
    """Pupil Core / Neon export gaze_positions.csv: world_timestamp (s), norm_pos_x/y (0..1, origin bottom
    left), confidence. frame_size = (width, height) of the world video."""
    w, h = frame_size
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    t = np.array([float(r["world_timestamp"]) for r in rows])
    x = np.array([float(r["norm_pos_x"]) for r in rows]) * w
    y = (1.0 - np.array([float(r["norm_pos_y"]) for r in rows])) * h
    c = np.array([float(r.get("confidence", 1.0)) for r in rows])
    order = np.argsort(t, kind="stable")
    return GazeTrace(t[order] - t[order][0], x[order], y[order], c[order], f"pupil labs {Path(path).name}")


def read_tobii_tsv(path: Path) -> GazeTrace:
    """Tobii Pro Lab style TSV: 'Recording timestamp' (microseconds or ms per the header's unit),
    'Gaze point X', 'Gaze point Y' (px); rows without gaze are invalid."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    ts_key = next(k for k in rows[0] if k.startswith("Recording timestamp"))
    scale = 1e-6 if "[μs]" in ts_key or "[us]" in ts_key else 1e-3
    num = lambda r, k: float(r[k]) if r.get(k) not in (None, "") else np.nan  # noqa: E731
    t = np.array([float(r[ts_key]) for r in rows]) * scale
    x = np.array([num(r, "Gaze point X") for r in rows])
    y = np.array([num(r, "Gaze point Y") for r in rows])
    return GazeTrace(t - t[0], x, y, np.ones(len(t)), f"tobii {Path(path).name}")
