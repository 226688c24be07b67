"""Where frames and gaze come from: a video file or a camera; a recorded trace, a live Lab Streaming Layer
stream, or the mouse in a window.

Every gaze source answers poll(now_s) with the samples that have arrived by `now_s` seconds after
start(), as (t, x, y) in the video frame's pixels on that same clock, so the demo measures gaze-to-mask
latency from the moment a sample arrived, whatever the source.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from samedge.errors import BackendUnavailableError, InputError

from .trace import GazeTrace

COCKATOO = Path("/usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4")
GAZE_SPECS = ("replay:eyelink", "edf:PATH", "csv:PATH", "pupil:PATH", "tobii:PATH", "lsl:NAME[:normalized]",
              "mouse")


@dataclass(frozen=True)
class GazeSample:
    t: float  # seconds on the demo's clock (0 = start())
    x: float  # pixels of the video frame
    y: float


# -- video --------------------------------------------------------------------------------------------
class VideoSource(Protocol):
    fps: float
    size: tuple[int, int]  # (width, height)
    n_frames: int | None  # None: live, runs until stopped
    live: bool  # frames arrive on their own clock (a camera): the demo must not pace them
    label: str

    def read(self) -> np.ndarray | None: ...  # BGR uint8, None at the end

    def close(self) -> None: ...


class OpenCVVideo:
    """A video file or a camera through OpenCV."""

    def __init__(self, spec: str | Path) -> None:
        import cv2
        text = str(spec)
        self.live = text.startswith("camera:")
        if self.live:
            index = text.partition(":")[2]
            if not index.isdigit():
                raise InputError(f"camera must be camera:N with N the device index, got {text!r}")
            self._cap = cv2.VideoCapture(int(index))
            if not self._cap.isOpened():
                raise InputError(f"camera {index} could not be opened (is one attached, and is this user allowed "
                                 "to read /dev/video*?); pass --video FILE to use a recording")
            self.label = f"camera {index}"
        else:
            path = Path(text)
            if not path.is_file():
                raise InputError(f"video {path} not found; pass --video FILE or --video camera:N (the default, "
                                 f"{COCKATOO.name}, comes with Debian's python3-imageio: apt install python3-imageio)")
            self._cap = cv2.VideoCapture(str(path))
            if not self._cap.isOpened():
                raise InputError(f"{path} is not a video OpenCV can read")
            self.label = path.name
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.n_frames = None if self.live or count <= 0 else count
        if min(self.size) < 1:
            raise InputError(f"{self.label} reports a frame size of {self.size}")

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok else None

    def close(self) -> None:
        self._cap.release()


def open_video(spec: str | Path) -> VideoSource:
    return OpenCVVideo(spec)


# -- gaze ---------------------------------------------------------------------------------------------
class GazeSource(Protocol):
    label: str
    live: bool

    def start(self) -> None: ...  # time 0 of the demo's clock

    def poll(self, now_s: float) -> list[GazeSample]: ...

    def close(self) -> None: ...


class TraceGaze:
    """A recorded trace, cleaned (low confidence dropped, short gaps filled), delivered at its own times."""

    live = False

    def __init__(self, trace: GazeTrace, label: str) -> None:
        self.trace, self.label = trace.cleaned(), label
        self._i = 0

    def start(self) -> None:
        self._i = 0

    def poll(self, now_s: float) -> list[GazeSample]:
        tr, out = self.trace, []
        while self._i < len(tr.t) and tr.t[self._i] <= now_s:
            i = self._i
            self._i += 1
            if np.isfinite(tr.x[i]) and np.isfinite(tr.y[i]):
                out.append(GazeSample(float(tr.t[i]), float(tr.x[i]), float(tr.y[i])))
        return out

    def close(self) -> None:
        pass


class LslGaze:
    """Live gaze from a Lab Streaming Layer stream with channels x, y[, confidence]: pixels of the scene
    video, or 0..1 of its width and height (top-left origin) with `normalized`. liblsl's clock
    synchronisation (proc_clocksync) puts the tracker's timestamps on this machine's clock, so latency
    counts from when the tracker took the sample. Configure LSL as usual (LSLAPICFG); the tests use a loopback-only configuration."""

    live = True

    def __init__(self, name: str, frame_wh: tuple[int, int], normalized: bool = False,
                 min_confidence: float = 0.6, resolve_timeout_s: float = 5.0) -> None:
        try:
            import pylsl
        except (ImportError, RuntimeError) as exc:  # pylsl raises RuntimeError when liblsl is missing
            raise BackendUnavailableError(f"live LSL gaze needs pylsl with liblsl: pip install 'samedge[apps]' "
                                          f"({exc})") from exc
        self._lsl = pylsl
        streams = pylsl.resolve_byprop("name", name, timeout=resolve_timeout_s)
        if not streams:
            raise InputError(f"no LSL stream named {name!r} found within {resolve_timeout_s:.0f} s "
                             "(is the tracker's LSL relay running, and on this network / LSLAPICFG scope?)")
        info = streams[0]
        if info.channel_count() not in (2, 3) or info.channel_format() == pylsl.cf_string:
            raise InputError(f"LSL stream {name!r} has {info.channel_count()} channels of format "
                             f"{info.channel_format()}; gaze needs 2 or 3 numeric channels: x, y[, confidence]")
        self._inlet = pylsl.StreamInlet(info, max_buflen=2, processing_flags=pylsl.proc_clocksync)
        self._inlet.open_stream(timeout=resolve_timeout_s)
        self._scale = frame_wh if normalized else (1, 1)
        self.min_confidence = min_confidence
        self.label = (f"LIVE: LSL stream {name!r} ({info.type()}, {info.nominal_srate():.0f} Hz, "
                      f"{'normalized' if normalized else 'pixel'} coordinates)")
        self._origin = pylsl.local_clock()

    def start(self) -> None:
        self._origin = self._lsl.local_clock()
        self._inlet.pull_chunk(timeout=0.0)  # drop what queued before the demo started

    def poll(self, now_s: float) -> list[GazeSample]:
        chunk, stamps = self._inlet.pull_chunk(timeout=0.0)
        if not stamps:
            return []
        sx, sy = self._scale
        out = []
        for row, ts in zip(chunk, stamps):
            conf = row[2] if len(row) > 2 else 1.0
            x, y = row[0] * sx, row[1] * sy
            if conf >= self.min_confidence and np.isfinite(x) and np.isfinite(y):
                out.append(GazeSample(float(ts - self._origin), float(x), float(y)))
        return out

    def close(self) -> None:
        self._inlet.close_stream()


def opencv_has_gui() -> bool:
    import cv2
    info = cv2.getBuildInformation()
    gui = next((line for line in info.splitlines() if line.strip().startswith("GUI:")), "GUI: NONE")
    return "NONE" not in gui


class MouseGaze:
    """The mouse as the gaze point in the demo's window: every mouse event is a gaze sample at the moment
    OpenCV reports it. Hold the pointer still on an object to fixate it."""

    live = True

    def __init__(self, window: str, clock=time.perf_counter) -> None:
        self.window, self._clock = window, clock
        self._pending: list[GazeSample] = []
        self._origin = clock()
        self.label = "LIVE: mouse as gaze (move the pointer over the window; q quits)"

    def attach(self) -> None:
        """Open the window and listen; needs an OpenCV build with a GUI (opencv-python, not -headless)."""
        import cv2
        if not opencv_has_gui():
            raise BackendUnavailableError("mouse-as-gaze needs a window, and this OpenCV was built without a GUI "
                                          "(opencv-python-headless); pip install opencv-python, or use a "
                                          "recorded or LSL gaze source")
        cv2.namedWindow(self.window, cv2.WINDOW_AUTOSIZE)
        cv2.setMouseCallback(self.window, self.on_mouse)

    def on_mouse(self, event: int, x: int, y: int, flags: int, param=None) -> None:
        self._pending.append(GazeSample(self._clock() - self._origin, float(x), float(y)))

    def start(self) -> None:
        self._origin = self._clock()
        self._pending.clear()

    def poll(self, now_s: float) -> list[GazeSample]:
        out = [s for s in self._pending if s.t <= now_s]
        self._pending = [s for s in self._pending if s.t > now_s]
        return out

    def close(self) -> None:
        pass


def load_trace(spec: str, frame_wh: tuple[int, int]) -> tuple[GazeTrace, str]:
    """A recorded gaze file in the video frame's pixels, starting at t=0."""
    from .adapters import read_csv, read_eyelink_edf, read_pupil_labs, read_tobii_tsv
    kind, _, arg = spec.partition(":")
    w, h = frame_wh
    screen = None
    if kind == "replay" and arg == "eyelink":
        import eyelinkio
        path = Path(eyelinkio.__file__).parent / "tests" / "data" / "test_2_raw.edf"
        trace, meta = read_eyelink_edf(path)
        screen = meta["screen"] if len(meta["screen"]) == 2 and min(meta["screen"]) > 0 else (1920, 1080)
        label = (f"REPLAY: a real EyeLink recording ({path.name}, {meta['sfreq']:.0f} Hz, screen "
                 f"{screen[0]:.0f}x{screen[1]:.0f}) scaled onto this video; the gaze was not recorded on it")
    elif kind in ("edf", "csv", "pupil", "tobii"):
        path = Path(arg)
        if not path.is_file():
            raise InputError(f"gaze file {path} not found")
        try:
            if kind == "edf":
                trace, meta = read_eyelink_edf(path)
                screen, label = meta["screen"], f"EyeLink EDF {path.name} scaled from its screen to the video"
            elif kind == "csv":
                trace, label = read_csv(path), f"CSV {path.name} (pixels of the video)"
            elif kind == "pupil":
                trace, label = read_pupil_labs(path, frame_wh), f"Pupil Labs {path.name} (world camera)"
            else:
                trace, label = read_tobii_tsv(path), f"Tobii TSV {path.name} (pixels of the video)"
        except (KeyError, ValueError, StopIteration, IndexError, OSError, RuntimeError) as exc:  # eyelinkio: OSError
            raise InputError(f"{path} is not a readable {kind} gaze file: {exc!r}") from exc
    else:
        raise InputError(f"gaze source must be one of {', '.join(GAZE_SPECS)}; got {spec!r}")
    if len(trace.t) == 0:
        raise InputError(f"{spec}: the gaze file has no samples")
    sx, sy = (w / screen[0], h / screen[1]) if screen else (1.0, 1.0)
    t = trace.t - trace.t[0]
    return GazeTrace(t, trace.x * sx, trace.y * sy, trace.confidence, label), label


def open_gaze(spec: str, frame_wh: tuple[int, int], window: str = "samedge gaze") -> GazeSource:
    kind, _, arg = spec.partition(":")
    if kind == "lsl":
        name, _, flag = arg.partition(":")
        if not name or flag not in ("", "normalized"):
            raise InputError(f"LSL gaze is lsl:STREAM_NAME or lsl:STREAM_NAME:normalized, got {spec!r}")
        return LslGaze(name, frame_wh, normalized=flag == "normalized")
    if spec == "mouse":
        return MouseGaze(window)
    trace, label = load_trace(spec, frame_wh)
    return TraceGaze(trace, label)


def lsl_loopback_config(folder: Path) -> Path:
    """An LSL configuration that never leaves this machine (for tests and offline demos); point LSLAPICFG
    at it before importing pylsl."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lsl_api.cfg"
    path.write_text("[ports]\nIPv6 = disable\n[multicast]\nResolveScope = machine\n[lab]\nKnownPeers = {127.0.0.1}\n")
    return path

