"""When to run the encoder and the decoder in the gaze demo.

- The decoder runs per fixation event (onset), never per gaze sample; and once more when a new image
  embedding arrives during a fixation, with the previous low-res logits as mask_input (temporal stability).
- A fixation that lands inside the mask on screen keeps it: no decoder call.
- A cut (a large frame-to-frame change) clears the mask and its logits at once; nothing is decoded again
  until an embedding of a frame after the cut is ready, so a mask of the previous scene is never shown.
  The cut frame is encoded at once: an encode still running on the previous scene is worthless, so it is
  preempted (set_image_async(preempt=True)) instead of finished first.
- The encoder runs on every frame for light models (policy "every_frame"), or for heavy ones ("on_demand")
  on the first frame, on a fixation onset when the embedding is older than `stale_after_frames`, on a scene
  change, and at least every `every_k_frames`. It is asynchronous (set_image_async): frames never wait.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .fixations import Fixation

POLICIES = ("every_frame", "on_demand")


@dataclass(frozen=True)
class SchedulePolicy:
    encoder: str = "every_frame"
    every_k_frames: int = 30
    stale_after_frames: int = 10
    scene_change: float = 0.12  # mean absolute difference of 32x32 grey thumbnails, 0..1
    cut: float = 0.25  # frame-to-frame thumbnail difference that means a new scene (fast pans reach ~0.16)
    mask_prior: bool = True  # re-decodes on a new embedding feed the previous low-res logits as mask_input

    def __post_init__(self) -> None:
        if self.encoder not in POLICIES:
            raise ValueError(f"encoder policy must be one of {POLICIES}, got {self.encoder!r}")
        if self.every_k_frames < 1 or self.stale_after_frames < 0:
            raise ValueError("every_k_frames must be >= 1 and stale_after_frames >= 0")


def thumbnail(rgb: np.ndarray, size: int = 32) -> np.ndarray:
    h, w = rgb.shape[:2]
    ys = (np.arange(size) * h // size)[:, None]
    xs = (np.arange(size) * w // size)[None, :]
    return rgb[ys, xs].mean(axis=-1) / 255.0


@dataclass
class SegmenterStats:
    encoder_requests: int = 0
    decoder_calls: int = 0
    masks_kept: int = 0
    decoder_ms: float = 0.0  # total time in predict() (decoder + mask post-processing)
    reasons: dict = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


class GazeSegmenter:
    """Drives a SamPredictor (or anything with set_image_async, current and predict) from frames and
    fixation events; `mask` is what to draw now."""

    def __init__(self, predictor, policy: SchedulePolicy = SchedulePolicy()) -> None:
        self.p, self.policy = predictor, policy
        self.stats = SegmenterStats()
        self.mask: np.ndarray | None = None
        self._logits: np.ndarray | None = None
        self._mask_embedding = None  # the embedding the mask was decoded from
        self._fixation: Fixation | None = None
        self._frame = -1
        self._encoded: list[tuple[object, int]] = []  # (future, frame) of recent encodes, newest last
        self._encoded_thumb: np.ndarray | None = None
        self._last_rgb: np.ndarray | None = None
        self._last_thumb: np.ndarray | None = None
        self._valid_from = 0  # after a cut, embeddings of frames before it show another scene

    @property
    def awaiting_embedding(self) -> bool:
        """A fixation is waiting for the first image embedding (its mask comes with refresh())."""
        return self._fixation is not None and self._usable_embedding() is None

    @property
    def encoder_busy(self) -> bool:
        return bool(self._encoded) and not self._encoded[-1][0].done()

    @property
    def _encoded_frame(self) -> int | None:
        return self._encoded[-1][1] if self._encoded else None

    def _encode(self, rgb: np.ndarray, reason: str, frame: int | None = None, preempt: bool = False):
        if self.encoder_busy and not preempt:  # latest frame wins: never queue frames behind a slow encoder
            self.stats.count("skipped: encoder busy")
            return None
        future = self.p.set_image_async(rgb, preempt=preempt)
        self._encoded = self._encoded[-7:] + [(future, self._frame if frame is None else frame)]
        self._encoded_thumb = thumbnail(rgb)
        self.stats.encoder_requests += 1
        self.stats.count(reason)
        return future

    def prime(self, rgb: np.ndarray) -> None:
        """Encode the first frame and wait for it, before the clock starts (an app is ready once it can
        answer a look); pass the same frame to on_frame next."""
        self._encode(rgb, "first frame, before the clock", frame=0).result()

    def on_frame(self, rgb: np.ndarray) -> None:
        """A new camera frame: start encoding it if the policy says so (asynchronously; returns at once)."""
        self._frame += 1
        pol = self.policy
        thumb = thumbnail(rgb)
        cut = self._last_thumb is not None and np.mean(np.abs(thumb - self._last_thumb)) > pol.cut
        self._last_thumb = thumb
        if cut:
            # the mask and its logits belong to the previous scene, and so does an encode still running: stop
            # it and encode this frame now (finishing it first made the first look after a cut wait for two)
            self._valid_from, self.mask, self._logits, self._mask_embedding = self._frame, None, None, None
            self.stats.count("cut: mask cleared")
            self._encode(rgb, "cut: encoded at once", preempt=True)
        elif pol.encoder == "every_frame":
            self._encode(rgb, "every frame")
        elif self._encoded_frame is None:
            self._encode(rgb, "first frame")
        elif self._frame - self._encoded_frame >= pol.every_k_frames:
            self._encode(rgb, "every k frames")
        elif np.mean(np.abs(thumb - self._encoded_thumb)) > pol.scene_change:
            self._encode(rgb, "scene change")
        self._last_rgb = rgb

    def refresh(self) -> None:
        """Call once per frame after the frame's fixation events: when a new embedding has arrived during a
        fixation, follow the object with the previous low-res logits as the prior (one decoder call)."""
        current = self._usable_embedding()
        if self._fixation is not None and current is not None and current is not self._mask_embedding:
            self._decode(self._fixation, use_prior=True)

    def _usable_embedding(self):
        """The predictor's current embedding, or None while it is of a frame before the last cut."""
        current = self.p.current
        if current is None or self._valid_from == 0:
            return current
        for future, frame in self._encoded:
            if future.done() and not future.cancelled() and future.exception() is None and future.result() is current:
                return current if frame >= self._valid_from else None
        return None

    def on_fixation(self, event: str, fixation: Fixation) -> None:
        if event == "offset":
            self._fixation = None
            return
        h, w = self._last_rgb.shape[:2] if self._last_rgb is not None else (0, 0)
        if not (0 <= fixation.x < w and 0 <= fixation.y < h):  # looking outside the camera's view
            self.stats.count("fixation outside the frame")
            self._fixation, self.mask = None, None
            return
        self._fixation = fixation
        pol = self.policy
        if pol.encoder == "on_demand" and self._frame - (self._encoded_frame or 0) > pol.stale_after_frames:
            self._encode(self._last_rgb, "fixation onset, stale embedding")
        current = self._usable_embedding()
        if current is None:
            return  # decoded when a usable embedding arrives (refresh)
        inside = self._inside(fixation)
        if inside and current is self._mask_embedding:
            self.stats.masks_kept += 1
            return
        self._decode(fixation, use_prior=inside)

    def _inside(self, fixation: Fixation) -> bool:
        if self.mask is None:
            return False
        h, w = self.mask.shape
        x, y = int(round(fixation.x)), int(round(fixation.y))
        return 0 <= x < w and 0 <= y < h and bool(self.mask[y, x])

    def _decode(self, fixation: Fixation, use_prior: bool) -> None:
        # without logits (first decode, after a cut) a single point is ambiguous: take the best of three
        use_prior = use_prior and self.policy.mask_prior and self._logits is not None
        current = self._usable_embedding()
        kwargs = {"point_coords": np.array([[fixation.x, fixation.y]]), "point_labels": np.array([1]),
                  "multimask_output": not use_prior}
        if use_prior:
            kwargs["mask_input"] = self._logits
        t0 = time.perf_counter()
        masks, scores, low_res = self.p.predict(**kwargs)
        self.stats.decoder_ms += (time.perf_counter() - t0) * 1e3
        best = int(np.argmax(scores))
        self.mask, self._logits = masks[best], low_res[best:best + 1]  # (1, 256, 256), as mask_input takes it
        self._mask_embedding = current
        self.stats.decoder_calls += 1
