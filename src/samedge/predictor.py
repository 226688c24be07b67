"""SamPredictor: the official predictor's API on top of an exported bundle, on any backend and device.

No backend code here: sessions come from samedge.runtimes. The encoder and the decoders may run on
different devices (e.g. encoder on the NPU, decoder on the CPU).
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import processing
from .bundle import Bundle, load_bundle
from .embedding_cache import EmbeddingCache, ImageEmbedding, image_key
from .errors import BundleError, InputError, SamEdgeError
from .families import SAM2_HIGH_RES_SHAPES
from .contract import MASK_STATE, PROMPT_INPUTS
from .cpu import usable_cores
from .manifest import GraphInfo
from .runtimes import (Interrupt, Session, SessionOptions, backend_module, check_device, check_session_io,
                       open_session)
from .runtimes.selection import Choice, choose
from .validation import check_box, check_flag, check_image, check_mask_input, check_points, check_positive_count

log = logging.getLogger(__name__)


# Prompts per call of the masks graph: its intermediates are ~12 MB per prompt, and past ~16 prompts a call
# runs out of cache and gets slower per prompt (MobileSAM prompt graph, 2-core Xeon: 25 ms/prompt at 16,
# 31 at 64); the calls give the same logits whatever their size.
MASKS_PER_CALL = 16


class ScoredPrompts:
    """decode_scores' result: scores (B, C), the mask state of each prompt (contract.MASK_STATE, first axis B),
    which of the decoder's 4 outputs the C columns are, and the image they were scored on.

    The state can be on loan from the scores session's output buffers (OpenVINO: no copy of its ~2 MB a
    prompt). The predictor copies it into this object before that session runs again, and reading .state
    copies it first, so a held ScoredPrompts never sees a later batch's numbers."""

    def __init__(self, scores: np.ndarray, state: dict[str, np.ndarray], outputs: slice, image: ImageEmbedding,
                 borrowed: bool = False) -> None:
        self.scores = scores
        self.outputs = outputs
        self.image = image
        self._state = state
        self._borrowed = borrowed

    @property
    def state(self) -> dict[str, np.ndarray]:
        self.own()
        return self._state

    def own(self) -> None:
        """Copy a borrowed state into arrays of this object's own."""
        if self._borrowed:
            self._state = {name: np.array(value) for name, value in self._state.items()}
            self._borrowed = False

    def rows_of_state(self, take: np.ndarray) -> dict[str, np.ndarray]:
        """The state of the prompts `take` (K indices): copies, read from the (possibly borrowed) buffers."""
        return {name: value[take] for name, value in self._state.items()}


class NoImageError(SamEdgeError, RuntimeError):
    """predict() or get_image_embedding() was called before set_image()."""


class SamPredictor:
    """Drop-in for segment_anything.SamPredictor: set_image(), then predict() as often as you like.

    backend: onnxruntime | openvino | coreml | auto; device: cpu | gpu | npu | auto (see
    samedge.runtimes.selection for what auto prefers). encoder_device / decoder_device override device
    for one graph. threads: intra-op CPU threads of every session (None: the backend's default, all cores);
    encoder_threads: the encoder's alone, where it runs beside the decoder (set_image_async) and the two
    share the cores. embedding_cache_size: how many image embeddings to keep (LRU by image content; 0 off).
    split_decoder: with a bundle that has one (export/split_decoder.py), run the decoder's per-image part
    once in set_image and only the per-prompt part in predict(), with or without a mask_input (formats and
    point counts with no split graph use the full decoder). False: the full decoder for every prompt.
    options.streams (OpenVINO CPU only) applies to the staged prompt graphs that segment-everything batches
    (decode_scores / decode_masks); every other graph runs on one stream. Unset, those two get one stream per
    core (up to 4) unless threads is set.
    """

    def __init__(self, bundle: Bundle | str | Path, backend: str = "onnxruntime", device: str = "cpu", *,
                 encoder_device: str | None = None, decoder_device: str | None = None,
                 threads: int | None = None, encoder_threads: int | None = None, precision: str | None = None,
                 cache_dir: str | Path | None = None,
                 options: SessionOptions | None = None, embedding_cache_size: int = 4,
                 split_decoder: bool = True) -> None:
        check_positive_count(encoder_threads, "encoder_threads")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        base = options or SessionOptions()
        self.options = replace(base, threads=threads if threads is not None else base.threads,
                               precision=precision if precision is not None else base.precision,
                               cache_dir=Path(cache_dir) if cache_dir is not None else base.cache_dir)
        formats = self.bundle.manifest.formats
        enc = choose(backend, check_device(encoder_device or device), formats)
        dec = choose(enc.backend if backend == "auto" else backend, check_device(decoder_device or device), formats)
        self.backend = enc.backend
        self.encoder_device, self.decoder_device = enc.device, dec.device
        if self.options.streams is not None and (self.backend, self.decoder_device) != ("openvino", "cpu"):
            raise InputError(f"streams={self.options.streams} is an OpenVINO CPU option (it splits the staged "
                             f"prompt graphs' batches); this predictor runs on {self.backend} {self.decoder_device}: "
                             "leave streams unset")
        self.choices: dict[str, Choice] = {"encoder": enc, "decoder": dec}
        for role, c in self.choices.items():
            log.info("%s: %s on %s (%s)%s", role, c.backend, c.device, c.reason,
                     "; skipped " + "; ".join(c.skipped) if c.skipped else "")
        module = backend_module(self.backend)
        self.format = module.FORMAT
        encoder_graph, _ = self.bundle.manifest.graphs_for(self.format)  # BundleError naming the fix if absent
        self._static_decoders = module.needs_static_shapes(self.decoder_device)
        self._encoder = self._open(encoder_graph, self.encoder_device,
                                   self.options.threads if encoder_threads is None else encoder_threads)
        self._decoders: dict[str, Session] = {}
        check_flag(split_decoder, "split_decoder")
        split = self.bundle.manifest.split_for(self.format) if split_decoder else None
        self._context = self._open(split.context, self.decoder_device) if split is not None else None
        # Parity checks pin one graph (a full decoder, or a split prompt graph); normal use picks per prompt.
        self.pinned_decoder: GraphInfo | None = None
        self.pinned_prompt_graph: GraphInfo | None = None
        self.embedding_cache = EmbeddingCache(embedding_cache_size)
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()  # decoder sessions open lazily, possibly from two threads at once
        self._executor: ThreadPoolExecutor | None = None
        self._latest_request: Future | None = None  # the newest set_image_async request
        self._latest_interrupt = Interrupt()  # stops the newest request's encode (set_image_async preempt)
        self._generation = 0  # bumped by every set_image*/reset; a stale async result never overwrites a newer one
        self._applied_generation = 0
        self._scores_on_loan: weakref.ref | None = None  # the last ScoredPrompts whose state is borrowed
        self._current: ImageEmbedding | None = None

    @classmethod
    def from_bundle(cls, path: str | Path, backend: str = "onnxruntime", device: str = "cpu", *,
                    encoder_device: str | None = None, decoder_device: str | None = None,
                    **kwargs) -> "SamPredictor":
        return cls(path, backend, device, encoder_device=encoder_device, decoder_device=decoder_device, **kwargs)

    def _open(self, graph: GraphInfo, device: str, threads: int | None = None) -> Session:
        options = self.options if threads is None else replace(self.options, threads=threads)
        split = self.bundle.manifest.split_for(self.format) if self.bundle.manifest.split is not None else None
        staged = split is not None and graph in (split.scores, split.masks)
        if not staged:
            # streams split a batch of prompts (SessionOptions.streams): they are for the staged graphs alone;
            # the encoder, context and single-prompt graphs keep the latency setting
            options = replace(options, streams=None)
        elif self.backend == "openvino" and device == "cpu" and options.streams is None and options.threads is None:
            # the staged graphs take batches of prompts: OpenVINO runs their rows on parallel streams
            # (runtimes/openvino.py), one per core up to 4 (measured: 2 streams on 2 cores, scores stage 1.30x, masks stage 1.11x)
            options = replace(options, streams=min(usable_cores(), 4))
        session = open_session(self.bundle.file(graph), self.backend, device, options)
        check_session_io(session, graph)  # a graph swapped for another one is caught before it is fed
        return session

    @property
    def static_decoders(self) -> bool:
        """True where the decoder device compiles fixed shapes only (NPU, CoreML): static-point graphs."""
        return self._static_decoders

    @property
    def sessions(self) -> dict[str, Session]:
        """Open sessions by graph file; each has .info saying what actually runs (providers, precision)."""
        return {"encoder": self._encoder, **({"context": self._context} if self._context else {}), **self._decoders}

    @property
    def uses_split_decoder(self) -> bool:
        return self._context is not None

    # -- image -----------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an image (or take its embedding from the cache) and make it the current one."""
        image = check_image(image, image_format, self.bundle.manifest.image_size)
        generation = self._next_generation()
        self._apply(self._encode(image, image_format), generation)

    def set_image_async(self, image: np.ndarray, image_format: str = "RGB", *,
                        preempt: bool = False) -> Future[ImageEmbedding]:
        """Start encoding on a background thread and return at once; predict() keeps using the previous
        image until this one is ready, then switches to it (unless a newer set_image* came first).
        The image is validated now and copied, so the caller may reuse its frame buffer. A request still
        queued when a newer one arrives is cancelled (its future says so): the encoder never works on a stale
        frame.

        preempt=True also stops an encode already running for an older request, within one graph node
        (ONNX Runtime, OpenVINO; CoreML only refuses a run not yet started): that request's future raises
        RunInterrupted and this one starts at once. For when the older frame is worthless, e.g. after a scene
        cut. Not for every frame: frames that come faster than the encoder would then never finish one."""
        image = np.array(check_image(image, image_format, self.bundle.manifest.image_size), copy=True)
        check_flag(preempt, "preempt")
        generation = self._next_generation()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samedge-encoder")
        interrupt = Interrupt()

        def work() -> ImageEmbedding:
            item = self._encode(image, image_format, interrupt)
            self._apply(item, generation)
            return item
        with self._lock:
            if self._latest_request is not None:
                self._latest_request.cancel()  # only succeeds while it waits
                if preempt:
                    self._latest_interrupt.set()  # a running encode stops too (a finished one is unaffected)
            future = self._latest_request = self._executor.submit(work)
            self._latest_interrupt = interrupt
        return future

    def _encode(self, image: np.ndarray, image_format: str, interrupt: Interrupt | None = None) -> ImageEmbedding:
        key = image_key(image, image_format) if self.embedding_cache.capacity else None
        cached = self.embedding_cache.get(key) if key else None
        if cached is not None:
            return replace(cached, encode_ms=0.0, from_cache=True)
        t0 = time.perf_counter()
        if image_format == "BGR":
            image = np.ascontiguousarray(image[..., ::-1])
        m = self.bundle.manifest
        model_input, geom = processing.preprocess_for(image, m)
        outputs = self._encoder.run({self._encoder.input_names[0]: model_input}, interrupt)
        embedding = outputs[self._encoder.output_names[0]]
        features = self._extra_features(outputs)
        problem = self._embedding_problem(embedding) or self._features_problem(features)
        if problem:  # e.g. fp16/bf16 overflow in a converted or quantized encoder: the graph's fault
            raise BundleError(f"the {self.backend} encoder of {self.bundle.path} output {problem} "
                              f"(precision {self._encoder.info.precision}); this graph/precision is broken")
        embedding.setflags(write=False)  # cached and shared: writing into it is an error, not a poisoned cache
        t1 = time.perf_counter()
        context = self._image_context(embedding, features, interrupt)
        t2 = time.perf_counter()
        item = ImageEmbedding(embedding, geom, key, (t2 - t0) * 1e3, context=context, context_ms=(t2 - t1) * 1e3,
                              features=features)
        self.embedding_cache.put(item)
        return item

    def _extra_features(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The encoder outputs beyond the embedding that the decoder takes (the manifest's family names them),
        read-only; None where there are none (SAM 1)."""
        names = self.bundle.manifest.contract.encoder_outputs[1:]
        if not names:
            return None
        for name in names:
            outputs[name].setflags(write=False)
        return {name: outputs[name] for name in names}

    def _features_problem(self, features: dict[str, np.ndarray] | None) -> str | None:
        want = dict(zip(self.bundle.manifest.contract.encoder_outputs[1:], SAM2_HIGH_RES_SHAPES))
        for name, shape in want.items():
            value = None if features is None else features.get(name)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != np.float32:
                got = f"{value.shape} {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
                return f"{name} must be a float32 array of shape {shape}, got {got}"
            if not np.isfinite(value).all():
                return f"{name} contains NaN or Inf"
        return None

    def _image_context(self, embedding: np.ndarray, features: dict[str, np.ndarray] | None,
                       interrupt: Interrupt | None = None) -> dict[str, np.ndarray] | None:
        """The split decoder's per-image products (read-only), or None without a split decoder. The context
        graph takes the family's per-image decoder inputs by name (SAM 2.1: the high-res features too)."""
        if self._context is None:
            return None
        given = {self.bundle.manifest.contract.feature_names[0]: embedding, **(features or {})}
        out = self._context.run({name: given[name] for name in self._context.input_names}, interrupt)
        for value in out.values():
            value.setflags(write=False)
        return out

    def _next_generation(self) -> int:
        with self._lock:
            self._generation += 1
            return self._generation

    def _apply(self, item: ImageEmbedding, generation: int) -> None:
        with self._lock:
            if generation > self._applied_generation:
                self._applied_generation = generation
                self._current = item

    def _embedding_problem(self, embedding: object) -> str | None:
        """What is wrong with an embedding (shape, dtype, NaN/Inf), or None."""
        expected = tuple(self.bundle.manifest.embedding_shape)
        if not isinstance(embedding, np.ndarray) or embedding.shape != expected or embedding.dtype != np.float32:
            got = f"{embedding.shape} {embedding.dtype}" if isinstance(embedding, np.ndarray) else type(embedding)
            return f"must be a float32 array of shape {expected}, got {got}"
        if not np.isfinite(embedding).all():
            return "contains NaN or Inf"
        return None

    def set_image_embedding(self, embedding: np.ndarray | ImageEmbedding,
                            geometry: processing.ImageGeometry | None = None) -> None:
        """Reuse an embedding from get_image_embedding() / an earlier frame (with the image's geometry)."""
        if isinstance(embedding, ImageEmbedding):
            if geometry is not None and geometry != embedding.geometry:
                raise InputError(f"geometry {geometry} contradicts the ImageEmbedding's own {embedding.geometry}; "
                                 "pass one or the other")
            item = embedding
        elif self.bundle.manifest.contract.encoder_outputs[1:]:
            raise InputError(f"a {self.bundle.manifest.model_type} decoder also takes the encoder's "
                             f"{list(self.bundle.manifest.contract.encoder_outputs[1:])}: pass the ImageEmbedding "
                             "from get_image_embedding_item() / set_image_async(), not a bare array")
        elif geometry is None:
            raise InputError("set_image_embedding(array) needs the image's geometry "
                             "(predictor.geometry when the embedding was taken), or pass an ImageEmbedding")
        else:
            item = ImageEmbedding(embedding, geometry)
        processing.check_geometry(item.geometry, self.bundle.manifest.image_size)
        problem = self._embedding_problem(item.embedding)
        if problem:
            raise InputError(f"embedding {problem}")
        problem = self._features_problem(item.features)
        if problem:
            raise InputError(f"ImageEmbedding.features: {problem}")
        own = np.array(item.embedding, copy=True)  # the caller may go on writing into its array
        own.setflags(write=False)
        if item.features is not None:
            item = replace(item, features=self._extra_features({k: np.array(v, copy=True)
                                                                for k, v in item.features.items()}))
        # never trust a context that came with the item: it is recomputed from this embedding
        self._apply(replace(item, embedding=own, context=self._image_context(own, item.features)),
                    self._next_generation())

    def get_image_embedding(self) -> np.ndarray:
        """(1, 256, 64, 64) float32: a copy, so writing into it cannot change the cached embedding."""
        return self._require_image().embedding.copy()

    def get_image_embedding_item(self) -> ImageEmbedding:
        """The current image's ImageEmbedding (embedding, geometry, SAM 2.1's high-res features): what
        set_image_embedding() takes back for any family. Its arrays are read-only."""
        return self._require_image()

    @property
    def current(self) -> ImageEmbedding | None:
        """The image embedding predict() uses now (None before set_image)."""
        return self._current

    def reset_image(self) -> None:
        """Forget the current image; a set_image_async() still running will not bring it back."""
        with self._lock:
            self._generation += 1
            self._applied_generation = self._generation
            self._current = None

    def warm_up(self, image_hw: tuple[int, int], clicks: tuple[int, ...] = (1,)) -> dict[str, float]:
        """Open and run every graph a session will need once, before the first real frame, so no user
        prompt pays for session compilation, lazy decoder loading or first-run allocation.

        Runs the encoder on a black image of `image_hw` and, for each click count in `clicks`, the decoder
        with and without a mask prior. The current image is left untouched. Returns the ms each step took.
        """
        if len(image_hw) != 2 or min(image_hw) < 1:
            raise InputError(f"image_hw must be (height, width) with both >= 1, got {image_hw}")
        if not clicks or min(clicks) < 1:
            raise InputError(f"clicks must be one or more counts >= 1, got {clicks}")
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        m = self.bundle.manifest
        model_input, geometry = processing.preprocess_for(np.zeros((*image_hw, 3), np.uint8), m)
        outputs = self._encoder.run({self._encoder.input_names[0]: model_input})
        embedding, features = outputs[self._encoder.output_names[0]], self._extra_features(outputs)
        times["encoder"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        context = self._image_context(embedding, features)
        if context is not None:
            times["context"] = (time.perf_counter() - t0) * 1e3
        size = m.low_res_mask_size
        for n in clicks:
            coords, labels = self._prompt_rows(np.zeros((n, 2), np.float32), np.ones(n, np.float32), None, geometry)
            for prior in (False, True):
                t0 = time.perf_counter()
                mask = np.zeros((1, 1, size, size), np.float32) if prior else None
                low_res, _ = self._decode(ImageEmbedding(embedding, geometry, context=context, features=features),
                                          coords, labels, mask)
                times[f"decoder_{n}click{'_prior' if prior else ''}"] = (time.perf_counter() - t0) * 1e3
        # the upsampling maps of this image size and the thread pool are built on first use: here, not in the
        # first predict() (+33 ms on the first look of the gaze demo, MobileSAM at 640x480, 2-core AVX2 EPYC)
        t0 = time.perf_counter()
        processing.postprocess_masks(low_res[0, :3], geometry)
        times["postprocess"] = (time.perf_counter() - t0) * 1e3
        return times

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> "SamPredictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # The official predictor's attributes, read from the current image.
    is_image_set = property(lambda self: self._current is not None)
    features = property(lambda self: None if self._current is None else self._current.embedding)
    geometry = property(lambda self: None if self._current is None else self._current.geometry)
    original_size = property(lambda self: None if self._current is None else self._current.geometry.original_hw)
    input_size = property(lambda self: None if self._current is None else self._current.geometry.input_hw)

    def _require_image(self) -> ImageEmbedding:
        current = self._current
        if current is None:
            raise NoImageError("an image must be set with .set_image(...) first (or set_image_async(...) must "
                               "have finished)")
        return current

    # -- prompts ---------------------------------------------------------------------------------
    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask_output: bool = True,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks (C, H, W) bool (float32 logits with return_logits), scores (C,), low-res logits (C, 256, 256).

        C is 3 with multimask_output, else 1, exactly as in the official predictor.
        """
        check_flag(multimask_output, "multimask_output")
        check_flag(return_logits, "return_logits")
        current = self._require_image()  # read once: an async switch mid-call cannot mix two images
        m = self.bundle.manifest
        coords, labels = self._prompt_rows(point_coords, point_labels, box, current.geometry)
        mask = None if mask_input is None else check_mask_input(mask_input, m.low_res_mask_size)[None]
        low_res, scores = self._decode(current, coords, labels, mask)
        low_res, scores = processing.select_masks(low_res, scores, multimask_output, m.processing)
        low_res, scores = low_res[0], scores[0]
        masks = processing.postprocess_masks(low_res, current.geometry)
        if not return_logits:
            masks = masks > m.mask_threshold
        return masks, scores, self._clamped(low_res)

    def _clamped(self, low_res: np.ndarray) -> np.ndarray:
        """SAM 2 returns its low-res logits clamped (after upsampling the unclamped ones)."""
        bound = self.bundle.manifest.processing.low_res_clamp
        return low_res if bound is None else np.clip(low_res, -bound, bound)

    def predict_batch(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                      boxes: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                      multimask_output: bool = True,
                      return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """B prompts on the current image at once, like the official predict_torch (in original-image
        coordinates, as predict() takes them): point_coords (B, N, 2) with point_labels (B, N), and/or boxes
        (B, 4), mask_input (B, 1, 256, 256). Returns masks (B, C, H, W) bool (float32 logits with
        return_logits), scores (B, C), low-res logits (B, C, 256, 256); C = 3 with multimask_output, else 1.

        The same results as B predict() calls: one call of the split decoder's dynamic prompt graph where the
        bundle has it and the device takes dynamic shapes; otherwise one graph call per prompt."""
        check_flag(return_logits, "return_logits")
        current = self._require_image()
        low_res, scores = self._decode_batch(current, point_coords, point_labels, boxes, mask_input, multimask_output)
        full = processing.postprocess_masks(low_res, current.geometry)
        return (full if return_logits else full > self.bundle.manifest.mask_threshold), scores, self._clamped(low_res)

    def decode_batch(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                     boxes: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                     multimask_output: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """predict_batch without the upsampling: low-res logits (B, C, 256, 256) and scores (B, C). Callers
        that filter on the scores first (segment everything) upsample only what survives
        (processing.postprocess_masks with .geometry)."""
        return self._decode_batch(self._require_image(), point_coords, point_labels, boxes, mask_input,
                                  multimask_output)

    def _decode_batch(self, current: ImageEmbedding, point_coords, point_labels, boxes, mask_input,
                      multimask_output: bool) -> tuple[np.ndarray, np.ndarray]:
        check_flag(multimask_output, "multimask_output")
        m = self.bundle.manifest
        given = {name: np.asarray(v) for name, v in (("point_coords", point_coords), ("point_labels", point_labels),
                                                      ("boxes", boxes), ("mask_input", mask_input)) if v is not None}
        if "point_coords" not in given and "boxes" not in given:
            raise InputError("give at least one prompt: point_coords (B, N, 2) with point_labels (B, N), and/or "
                             "boxes (B, 4)")
        sizes = {name: v.shape[0] if v.ndim else None for name, v in given.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values() or next(iter(sizes.values())) < 1:
            raise InputError(f"every prompt array needs the same batch size B >= 1 as its first axis, got "
                             f"{ {k: list(v.shape) for k, v in given.items()} }")
        batch = next(iter(sizes.values()))
        if "point_coords" in given and given["point_coords"].ndim != 3:
            raise InputError(f"point_coords must be (B, N, 2) for predict_batch, got {list(given['point_coords'].shape)}")
        coords, labels = self._batch_rows(current, given.get("point_coords"), given.get("point_labels"),
                                          given.get("boxes"))
        masks = None
        if mask_input is not None:
            masks = np.stack([check_mask_input(mk, m.low_res_mask_size) for mk in given["mask_input"]])
        graph = self.batch_decoder_graph(coords.shape[1] - 1, mask=masks is not None)
        if graph is not None:
            low_res, scores = self._run_batches(graph, current, coords, labels, masks)
        else:
            parts = [self._decode(current, coords[i:i + 1], labels[i:i + 1], None if masks is None else masks[i:i + 1])
                     for i in range(batch)]
            low_res, scores = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return processing.select_masks(low_res, scores, multimask_output, m.processing)

    # -- two-stage decoding: scores first, masks for the prompts that need them ---------------------------
    def staged_decoding(self, multimask_output: bool = True) -> bool:
        """True where decode_scores / decode_masks can run: the bundle has the two-stage prompt graph in this
        format, the decoder takes dynamic shapes, no graph is pinned, and the returned scores do not depend on
        the masks (SAM 2's single-mask rule picks by mask stability, so it needs the masks)."""
        split = self.bundle.manifest.split_for(self.format) if self._context is not None else None
        return (split is not None and split.scores is not None and not self._static_decoders
                and self.pinned_decoder is None and self.pinned_prompt_graph is None
                and (multimask_output or self.bundle.manifest.processing.single_mask == "first"))

    def decode_scores(self, point_coords: np.ndarray, point_labels: np.ndarray,
                      multimask_output: bool = True) -> "ScoredPrompts":
        """The decoder's scores for B prompts without their masks: point_coords (B, N, 2), point_labels (B, N)
        -> ScoredPrompts with .scores (B, C) exactly as decode_batch gives them (C = 3 with multimask_output,
        else 1). decode_masks(scored, rows) then gives the low-res logits of the chosen prompts only."""
        check_flag(multimask_output, "multimask_output")
        if not self.staged_decoding(multimask_output):
            raise InputError("decode_scores needs a bundle with the two-stage prompt graph (prompt_scores / "
                             "prompt_masks: exported by samedge >= 2026-12-02 with the dynamic decoder) on a "
                             "dynamic-shape device, and multimask_output=True on SAM 2; use decode_batch")
        current = self._require_image()
        coords, labels = self._batch_rows(current, point_coords, point_labels, None)
        split = self.bundle.manifest.split_for(self.format)
        graph = split.scores
        session = self._decoder_session(graph)
        earlier = self._scores_on_loan() if self._scores_on_loan is not None else None
        if earlier is not None:  # its state is in the buffers this run overwrites
            earlier.own()
        out = session.run_borrowed({"point_coords": coords, "point_labels": labels,
                                    **{t.name: current.context[t.name] for t in graph.inputs[len(PROMPT_INPUTS):]}})
        pick = slice(1, None) if multimask_output else slice(0, 1)
        state = {name: out[name] for name in MASK_STATE}
        scored = ScoredPrompts(np.array(out["iou_predictions"][:, pick]), state, pick, current, borrowed=True)
        self._scores_on_loan = weakref.ref(scored)
        return scored

    def decode_masks(self, scored: "ScoredPrompts", rows: np.ndarray) -> np.ndarray:
        """Low-res logits (K, C, 256, 256) of the prompts scored.scores[rows] (rows: K indices into the batch),
        equal to decode_batch's for those prompts, on the image they were scored on."""
        rows = np.asarray(rows)
        total = scored.scores.shape[0]
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer) or (rows.size and
                                                                           (rows.min() < 0 or rows.max() >= total)):
            raise InputError(f"rows must be a 1-D array of prompt indices in [0, {total}), got {rows!r}")
        size = self.bundle.manifest.low_res_mask_size
        channels = scored.scores.shape[1]
        if rows.size == 0:
            return np.zeros((0, channels, size, size), np.float32)
        graph = self.bundle.manifest.split_for(self.format).masks
        session = self._decoder_session(graph)
        context = {t.name: scored.image.context[t.name] for t in graph.inputs[len(MASK_STATE):]}
        result = np.empty((rows.size, channels, size, size), np.float32)
        for start in range(0, rows.size, MASKS_PER_CALL):
            take = rows[start:start + MASKS_PER_CALL]
            # borrowed outputs: each chunk is copied into the result before the next run reuses the buffer
            out = session.run_borrowed({**scored.rows_of_state(take), **context})
            result[start:start + take.size] = out["low_res_masks"][:, scored.outputs]
        return result

    def _batch_rows(self, current: ImageEmbedding, point_coords, point_labels, boxes) -> tuple[np.ndarray, np.ndarray]:
        """B prompts -> decoder rows (B, N, 2), (B, N) in the model frame, each checked as predict() checks it."""
        arrays = [np.asarray(a) for a in (point_coords, point_labels, boxes) if a is not None]
        if not arrays or any(a.ndim == 0 for a in arrays):
            raise InputError("give B prompts: point_coords (B, N, 2) with point_labels (B, N), and/or boxes (B, 4)")
        if point_coords is not None and np.asarray(point_coords).ndim != 3:
            raise InputError(f"point_coords must be (B, N, 2) for a batch, got {list(np.asarray(point_coords).shape)}")
        batch = arrays[0].shape[0]
        if any(a.shape[0] != batch for a in arrays):
            raise InputError(f"every prompt array needs the same batch size B as its first axis, got "
                             f"{[list(a.shape) for a in arrays]}")
        rows = [self._prompt_rows(None if point_coords is None else point_coords[i],
                                  None if point_labels is None else point_labels[i],
                                  None if boxes is None else boxes[i], current.geometry) for i in range(batch)]
        return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])

    def batch_decoder_graph(self, num_clicks: int = 1, mask: bool = False) -> GraphInfo | None:
        """The split prompt graph predict_batch runs a batch of num_clicks-click prompts on: the dynamic one
        (the whole batch in one call), or on a static-shape device a static one of fixed batch_size (calls of
        that many prompts, the last one padded); None where it runs one predict()-sized call per prompt
        (no split decoder, no fitting graph, a pinned full decoder)."""
        if self._context is None or self.pinned_decoder is not None:
            return None
        pinned = self.pinned_prompt_graph
        if pinned is not None and pinned.takes_mask == mask and pinned.batch_size != 1:
            return pinned
        if self._static_decoders:
            return self.bundle.prompt_graph_for(num_clicks, self.format, static_only=True, mask=mask, batched=True)
        return self.bundle.prompt_graph_for(None, self.format, mask=mask)

    def _run_batches(self, graph: GraphInfo, current: ImageEmbedding, coords: np.ndarray, labels: np.ndarray,
                     masks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Rows (B, N, 2), (B, N) [, masks (B, 1, 256, 256)] through one prompt graph: in one call if its batch is
        dynamic, else in calls of its batch_size (the last padded by repeating its last prompt, padding dropped)."""
        parts = []
        for session, feeds, keep in self._batch_calls(graph, current, coords, labels, masks):
            out = session.run(feeds)
            parts.append((out[session.output_names[0]][:keep], out[session.output_names[1]][:keep]))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _batch_calls(self, graph: GraphInfo, current: ImageEmbedding, coords: np.ndarray, labels: np.ndarray,
                     masks: np.ndarray | None) -> list[tuple[Session, dict[str, np.ndarray], int]]:
        """The graph calls _run_batches makes: (session, feeds, rows of its output to keep) per call."""
        session = self._decoder_session(graph)
        total = coords.shape[0]
        size = graph.batch_size or total
        calls = []
        for start in range(0, total, size):
            stop = min(start + size, total)
            pad = size - (stop - start)
            chunk = [a if a is None else np.concatenate([a[start:stop], np.repeat(a[stop - 1:stop], pad, 0)])
                     for a in (coords, labels, masks)]
            feeds = self._feeds(graph, session, current, *chunk)
            if masks is not None:
                feeds["has_mask_input"] = np.ones(size, np.float32)
            calls.append((session, feeds, size - pad))
        return calls

    def _prompt_rows(self, point_coords, point_labels, box, geometry) -> tuple[np.ndarray, np.ndarray]:
        """User prompts -> decoder rows (1, N, 2), (1, N) in the model frame (processing.prompt_rows)."""
        if point_coords is None and point_labels is None and box is None:
            raise InputError("give at least one prompt: point_coords with point_labels, and/or box")
        c = lab = b = None
        if point_coords is not None or point_labels is not None:
            c, lab = check_points(point_coords, point_labels, geometry.original_hw)
        if box is not None:
            b = check_box(box, geometry.original_hw)
        return processing.prompt_rows(c, lab, b, geometry, self.bundle.manifest.processing)

    def decoder_graph(self, num_clicks: int, mask_input: bool = False) -> GraphInfo:
        """The graph a prompt of num_clicks clicks (a box counts as one) runs on: the split decoder's prompt
        graph where the bundle has one for it (with or without a mask prior), else the full decoder graph."""
        if self.pinned_decoder is not None:
            return self.pinned_decoder
        if self._context is not None:
            pinned = self.pinned_prompt_graph
            if pinned is not None and pinned.takes_mask == mask_input:
                return pinned
            graph = self.bundle.prompt_graph_for(num_clicks, self.format, static_only=self._static_decoders,
                                                 mask=mask_input)
            if graph is not None:
                return graph
        why = f"{self.backend} on {self.decoder_device}" if self._static_decoders else ""
        return self.bundle.decoder_for(num_clicks, self.format, static_only=self._static_decoders, why_static=why)

    def _decoder_session(self, graph: GraphInfo) -> Session:
        session = self._decoders.get(graph.file)
        if session is None:
            with self._open_lock:  # two threads asking at once must not open (and compile) it twice
                session = self._decoders.get(graph.file)
                if session is None:
                    session = self._decoders[graph.file] = self._open(graph, self.decoder_device)
        return session

    def decoder_session(self, num_clicks: int, mask_input: bool = False) -> Session:
        """The open session a prompt of num_clicks clicks runs on (benchmarks time it directly)."""
        return self._decoder_session(self.decoder_graph(num_clicks, mask_input))

    def prepared_decode(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                        box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                        **_ignored) -> tuple[Session, dict[str, np.ndarray]]:
        """The session and feeds predict() would run for this prompt on the current image, so benchmarks can
        time the graph alone with exactly predict()'s inputs (extra predict() keywords are ignored)."""
        current = self._require_image()
        coords, labels = self._prompt_rows(point_coords, point_labels, box, current.geometry)
        mask = None if mask_input is None else check_mask_input(mask_input, self.bundle.manifest.low_res_mask_size)[None]
        graph = self.decoder_graph(coords.shape[1] - 1, mask is not None)
        session = self._decoder_session(graph)
        return session, self._feeds(graph, session, current, coords, labels, mask)

    def prepared_decode_batch(self, point_coords: np.ndarray, point_labels: np.ndarray
                              ) -> list[tuple[Session, dict[str, np.ndarray]]] | None:
        """The graph calls predict_batch(point_coords (B, N, 2), point_labels (B, N)) makes on the current
        image, with exactly its feeds, so benchmarks can time the graph alone; None where predict_batch runs
        one predict() per prompt (prepared_decode times that)."""
        current = self._require_image()
        coords, labels = self._batch_rows(current, np.asarray(point_coords), np.asarray(point_labels), None)
        graph = self.batch_decoder_graph(coords.shape[1] - 1)
        if graph is None:
            return None
        return [(session, feeds) for session, feeds, _ in self._batch_calls(graph, current, coords, labels, None)]

    @property
    def encoder_session(self) -> Session:
        return self._encoder

    def _feeds(self, graph: GraphInfo, session: Session, image: ImageEmbedding, coords: np.ndarray,
               labels: np.ndarray, mask: np.ndarray | None) -> dict[str, np.ndarray]:
        if graph.num_points is not None and graph.graph_point_rows != coords.shape[1]:
            raise InputError(f"decoder {graph.file} takes {graph.num_points} clicks ({graph.graph_point_rows} rows); "
                             f"this prompt has {coords.shape[1] - 1}")
        size = self.bundle.manifest.low_res_mask_size
        has_mask = np.full(1, 0.0 if mask is None else 1.0, np.float32)
        mask = np.zeros((1, 1, size, size), np.float32) if mask is None else mask
        if graph.role == "prompt":
            if image.context is None:
                raise InputError("this image has no split-decoder context (it was set by another predictor?); "
                                 "set it again with set_image or set_image_embedding")
            feeds = {"point_coords": coords, "point_labels": labels}
            if graph.takes_mask:
                feeds.update(mask_input=mask, has_mask_input=has_mask)
            return {**feeds, **{t.name: image.context[t.name] for t in graph.inputs if t.name not in feeds}}
        given = {"image_embeddings": image.embedding, **(image.features or {}), "point_coords": coords,
                 "point_labels": labels, "mask_input": mask, "has_mask_input": has_mask}
        missing = [t.name for t in graph.inputs if t.name not in given]
        if missing:  # an ImageEmbedding made for another family's bundle
            raise InputError(f"decoder {graph.file} takes {missing}, which this image's embedding does not have; "
                             "set the image again with set_image on this predictor")
        return {t.name: given[t.name] for t in graph.inputs}

    def _decode(self, image: ImageEmbedding, coords: np.ndarray, labels: np.ndarray,
                mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Decoder rows (1, N, 2), (1, N) [+ mask prior (1, 1, 256, 256)] -> low-res logits (1, 4, 256, 256),
        scores (1, 4), on the split decoder's prompt graph or the full decoder (decoder_graph)."""
        graph = self.decoder_graph(coords.shape[1] - 1, mask is not None)
        session = self._decoder_session(graph)
        out = session.run(self._feeds(graph, session, image, coords, labels, mask))
        return out[session.output_names[0]], out[session.output_names[1]]
