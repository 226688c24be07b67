"""Gaze and video sources of the gaze demo: live LSL (loopback only), mouse, camera, recorded file specs."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def pylsl(tmp_path_factory):
    """pylsl with a configuration that never leaves this machine."""
    from samedge_gaze.sources import lsl_loopback_config
    os.environ["LSLAPICFG"] = str(lsl_loopback_config(tmp_path_factory.mktemp("lsl")))
    return pytest.importorskip("pylsl")


class GazeOutlet:
    """A fake eye tracker: pushes a scanpath (x, y, confidence) at `rate` Hz on an LSL outlet, in real time."""

    def __init__(self, pylsl, name: str, points, rate: float = 200.0, channels: int = 3, repeat: bool = False,
                 fmt=None) -> None:
        info = pylsl.StreamInfo(name, "Gaze", channels, rate, fmt or pylsl.cf_float32, f"{name}-uid")
        self.outlet, self.points, self.rate, self.repeat = pylsl.StreamOutlet(info), points, rate, repeat
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and not self.outlet.have_consumers():
            time.sleep(0.01)
        while True:  # a tracker streams until it is stopped
            for p in self.points:
                if self._stop.is_set():
                    return
                self.outlet.push_sample(list(p))
                time.sleep(1.0 / self.rate)
            if not self.repeat:
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


def _scanpath(n_fix: int = 3, samples_per_fix: int = 80, saccade: int = 6):
    """Fixations at three places with a little noise (0.1 px: at ~5 px/deg and 200 Hz more would read as
    > 30 deg/s), joined by fast saccades (pixels of a 320x240 frame)."""
    rng = np.random.default_rng(0)
    places = [(80, 60), (240, 120), (160, 200)][:n_fix]
    out = []
    for k, (x, y) in enumerate(places):
        out += [(x + rng.normal(0, 0.1), y + rng.normal(0, 0.1), 1.0) for _ in range(samples_per_fix)]
        if k + 1 < len(places):
            nx, ny = places[k + 1]
            out += [(x + (nx - x) * u, y + (ny - y) * u, 1.0) for u in np.linspace(0, 1, saccade)]
    return out


def test_lsl_gaze_arrives_on_the_demo_clock_and_drops_low_confidence(pylsl):
    from samedge_gaze.sources import LslGaze
    points = [(100.0, 50.0, 1.0), (101.0, 51.0, 0.1), (0.5, 0.25, 1.0)]
    # repeat: a tracker streams on; start() rightly drops what queued before it, which under load was everything
    with GazeOutlet(pylsl, "samedge-test-px", points * 20, rate=200.0, repeat=True):
        gaze = LslGaze("samedge-test-px", (320, 240))
        gaze.start()
        t0 = time.perf_counter()
        samples = []
        while len(samples) < 20 and time.perf_counter() - t0 < 5:
            samples += gaze.poll(time.perf_counter() - t0)
            time.sleep(0.01)
        gaze.close()
    assert "LIVE" in gaze.label and len(samples) >= 20
    assert all(s.x != 101.0 for s in samples)  # confidence 0.1 < 0.6: dropped
    ts = np.array([s.t for s in samples])
    # stamps are on the demo clock: after start, not in the future, increasing at the tracker's rate
    assert np.all(ts > -0.05) and np.all(ts <= time.perf_counter() - t0 + 0.05) and np.all(np.diff(ts) >= 0)


def test_lsl_normalized_coordinates_and_bad_streams(pylsl):
    from samedge.errors import InputError
    from samedge_gaze.sources import LslGaze, open_gaze
    with GazeOutlet(pylsl, "samedge-test-norm", [(0.5, 0.25)] * 40, channels=2, repeat=True):
        gaze = open_gaze("lsl:samedge-test-norm:normalized", (320, 240))
        gaze.start()
        samples = []
        deadline = time.perf_counter() + 5
        while not samples and time.perf_counter() < deadline:
            samples = gaze.poll(1e9)
            time.sleep(0.01)
        assert samples and (samples[0].x, samples[0].y) == (160.0, 60.0)
    with GazeOutlet(pylsl, "samedge-test-wide", [(1, 2, 3, 4)] * 5, channels=4):
        with pytest.raises(InputError, match="4 channels"):
            LslGaze("samedge-test-wide", (320, 240))
    with GazeOutlet(pylsl, "samedge-test-text", [("a", "b")] * 5, channels=2, fmt=pylsl.cf_string):
        with pytest.raises(InputError, match="2 or 3 numeric channels"):
            LslGaze("samedge-test-text", (320, 240))
    with pytest.raises(InputError, match="no LSL stream named 'nobody'"):
        LslGaze("nobody", (320, 240), resolve_timeout_s=0.3)
    with pytest.raises(InputError, match="lsl:STREAM_NAME"):
        open_gaze("lsl:x:sideways", (320, 240))


def test_demo_with_live_lsl_gaze_end_to_end(pylsl, tiny_bundle, tmp_path):
    """A fake tracker streams a scanpath over loopback LSL while the demo plays a video in real time."""
    import cv2

    from samedge_gaze.demo import DemoConfig, run_demo
    from samedge_gaze.scheduler import SchedulePolicy
    video = tmp_path / "still.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (320, 240))
    for i in range(40):
        writer.write(np.full((240, 320, 3), 60 + i, np.uint8))
    writer.release()
    with GazeOutlet(pylsl, "samedge-test-demo", _scanpath(), rate=200.0, repeat=True):
        summary = run_demo(DemoConfig(tiny_bundle, tmp_path / "out", video, "lsl:samedge-test-demo",
                                      "onnxruntime", policy=SchedulePolicy("every_frame")))
    assert summary["gaze"].startswith("LIVE: LSL") and summary["realtime"]
    assert summary["frames"] + summary["frames_dropped"] == 40 and summary["frames"] >= 20  # late frames dropped
    # the tracker loops three 400 ms fixations; the demo starts streaming after loading (stale samples are
    # dropped) and plays 2 s, so it sees at least 3 fixations, each answered with a mask and its latency
    assert summary["fixations"] >= 3 and summary["decoder_calls"] >= 3
    assert len(summary["gaze_to_mask"]) >= summary["fixations"] - 1  # the last onset may end the run waiting
    assert all(0 <= o["ms"] < 2000 for o in summary["gaze_to_mask"])
    rows = [json.loads(line) for line in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()]
    assert len(rows) == summary["frames"] and sum(r["gaze"] is not None for r in rows) > len(rows) / 2


def test_mouse_gaze_turns_pointer_events_into_timed_samples():
    from samedge.errors import BackendUnavailableError
    from samedge_gaze.sources import MouseGaze, opencv_has_gui
    now = [10.0]
    mouse = MouseGaze("w", clock=lambda: now[0])
    mouse.start()
    for i, (x, y) in enumerate([(5, 6), (7, 8), (9, 10)]):
        now[0] = 10.0 + 0.01 * (i + 1)
        mouse.on_mouse(0, x, y, 0)
    first = mouse.poll(0.025)
    assert [(s.x, s.y) for s in first] == [(5, 6), (7, 8)] and first[0].t == pytest.approx(0.01)
    assert [(s.x, s.y) for s in mouse.poll(1.0)] == [(9, 10)] and mouse.poll(2.0) == []
    if not opencv_has_gui():
        with pytest.raises(BackendUnavailableError, match="pip install opencv-python"):
            mouse.attach()


def test_camera_and_video_specs_fail_clearly(tmp_path):
    from samedge.errors import InputError
    from samedge_gaze.sources import open_video
    with pytest.raises(InputError, match="camera:N"):
        open_video("camera:front")
    if not any(Path("/dev").glob("video*")):  # no camera on CI machines
        with pytest.raises(InputError, match="camera 7 could not be opened"):
            open_video("camera:7")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(InputError, match="not a video OpenCV can read"):
        open_video(junk)


def test_recorded_gaze_specs_use_every_adapter(tmp_path):
    from samedge.errors import InputError
    from samedge_gaze.sources import load_trace
    pupil = tmp_path / "gaze_positions.csv"
    pupil.write_text("world_timestamp,norm_pos_x,norm_pos_y,confidence\n5.0,0.5,0.25,0.9\n5.1,0.5,0.5,0.95\n")
    trace, label = load_trace(f"pupil:{pupil}", (320, 240))
    assert "Pupil Labs" in label and trace.t.tolist() == pytest.approx([0.0, 0.1])
    assert (trace.x[0], trace.y[0]) == (160.0, 180.0)  # y flipped: norm 0.25 from the bottom
    tobii = tmp_path / "rec.tsv"
    tobii.write_text("Recording timestamp [ms]\tGaze point X\tGaze point Y\n100\t10\t20\n116\t\t\n")
    trace, label = load_trace(f"tobii:{tobii}", (320, 240))
    assert "Tobii" in label and trace.t.tolist() == pytest.approx([0.0, 0.016]) and np.isnan(trace.x[1])
    with pytest.raises(InputError, match="not a readable tobii gaze file"):
        load_trace(f"tobii:{pupil}", (320, 240))
    junk = tmp_path / "junk.edf"
    junk.write_text("not an EDF")
    with pytest.raises(InputError, match="not a readable edf gaze file"):  # eyelinkio raises OSError
        load_trace(f"edf:{junk}", (320, 240))
    with pytest.raises(InputError, match="gaze file .* not found"):
        load_trace(f"csv:{tmp_path / 'none.csv'}", (320, 240))
    with pytest.raises(InputError, match=r"one of replay:eyelink, .*lsl:NAME\[:normalized\], mouse; got 'bluetooth"):
        load_trace("bluetooth:glasses", (320, 240))


def test_show_on_a_headless_opencv_is_a_clear_error(tiny_bundle, tmp_path):
    import cv2

    from samedge.errors import BackendUnavailableError
    from samedge_gaze.demo import DemoConfig, run_demo
    from samedge_gaze.sources import opencv_has_gui
    if opencv_has_gui():
        pytest.skip("this OpenCV has a GUI")
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    with pytest.raises(BackendUnavailableError, match="--show needs an OpenCV build with a GUI"):
        run_demo(DemoConfig(tiny_bundle, tmp_path / "out", video, show=True))
    with pytest.raises(BackendUnavailableError, match="mouse-as-gaze needs a window"):
        run_demo(DemoConfig(tiny_bundle, tmp_path / "out", video, "mouse"))
