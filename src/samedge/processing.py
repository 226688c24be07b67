"""Numpy pre- and post-processing that reproduce the official SamPredictor exactly.

Official path (segment_anything.utils.transforms.ResizeLongestSide + Sam.preprocess/postprocess_masks):
  1. resize the uint8 RGB image with PIL bilinear so the longest side is 1024 (PIL antialiases when
     shrinking), rounding each side with int(x + 0.5);
  2. normalise with SAM's pixel mean/std, pad bottom-right with zeros to 1024x1024;
  3. scale point/box coordinates by new/old per axis;
  4. masks: bilinear (align_corners=False) 256 -> 1024, crop to the resized size, bilinear to the
     original size.
Step 4 is two linear maps per axis, so it is done here as one precomposed matrix per axis: the same
numbers as the two-step resize (up to float rounding) in a single pass.

SAM 2 (families.Processing(resize="square"), sam2.utils.transforms.SAM2Transforms): the image / 255 is resized
to 1024x1024 by torchvision's tensor Resize (torch's bilinear with antialias, PIL's algorithm on floats), then
normalised with ImageNet mean/std; coordinates scale by 1024/w and 1024/h; masks go bilinear from 256 straight
to the original size. `square=True` geometries say so.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
from PIL import Image

from .cpu import usable_cores
from .model_types import IMAGE_SIZE, PIXEL_MEAN, PIXEL_STD

T, R = TypeVar("T"), TypeVar("R")


@dataclass(frozen=True)
class ImageGeometry:
    """Sizes that map between the original image, the resized image and the 1024 model input."""
    original_hw: tuple[int, int]
    input_hw: tuple[int, int]
    model_size: int = IMAGE_SIZE
    square: bool = False  # SAM 2: stretched to model_size x model_size, masks upsampled in one step


def check_geometry(geom: object, model_size: int) -> ImageGeometry:
    """An ImageGeometry from outside (set_image_embedding) must be one this model could have made: positive
    integer sizes, input_hw = the resize of original_hw, model_size = the bundle's."""
    from .errors import InputError
    if not isinstance(geom, ImageGeometry):
        raise InputError(f"geometry must be a samedge.processing.ImageGeometry, got {type(geom).__name__}")
    try:
        sizes = (*geom.original_hw, *geom.input_hw, geom.model_size) \
            if len(geom.original_hw) == len(geom.input_hw) == 2 else ()
    except TypeError:  # sizes that are not sequences
        sizes = ()
    if not sizes or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in sizes):
        raise InputError(f"geometry sizes must be positive integers (h, w), got {geom}")
    if geom.model_size != model_size:
        raise InputError(f"geometry is for a {geom.model_size}-px model, this bundle's is {model_size}")
    expected = (model_size, model_size) if geom.square else preprocess_shape(*geom.original_hw, model_size)
    if tuple(geom.input_hw) != expected:
        raise InputError(f"geometry input_hw {tuple(geom.input_hw)} is not the resize of original_hw "
                         f"{tuple(geom.original_hw)} to {model_size} px ({expected}); use geometry_for(h, w)")
    return geom


def preprocess_shape(h: int, w: int, long_side: int = IMAGE_SIZE) -> tuple[int, int]:
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def geometry_for(h: int, w: int, model_size: int = IMAGE_SIZE, square: bool = False) -> ImageGeometry:
    if square:
        return ImageGeometry((h, w), (model_size, model_size), model_size, square=True)
    return ImageGeometry((h, w), preprocess_shape(h, w, model_size), model_size)


def antialias_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights of torch's interpolate(mode="bilinear", antialias=True, align_corners=False), which
    is PIL's resampling: a triangle filter widened by the scale when shrinking, renormalised at the borders."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        x = (np.arange(lo, hi) - center + 0.5) * invscale
        w = np.clip(1.0 - np.abs(x), 0.0, None)
        total = w.sum()
        m[i, lo:hi] = w / total if total > 0 else w
    return m


@lru_cache(maxsize=16)
def _antialias_map(in_size: int, out_size: int) -> np.ndarray:
    return antialias_bilinear_matrix(in_size, out_size).astype(np.float32)


def resize_square(image: np.ndarray, model_size: int, input_scale: float) -> np.ndarray:
    """uint8 HxWx3 -> float32 (3, model_size, model_size): image / input_scale resized like torchvision's
    tensor Resize((s, s)) (separable antialiased bilinear)."""
    chw = image.transpose(2, 0, 1).astype(np.float32) / np.float32(input_scale)
    my = _antialias_map(image.shape[0], model_size)
    mx = _antialias_map(image.shape[1], model_size)
    return np.matmul(np.matmul(my, chw), mx.T)


def resize_image(image: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """uint8 HxWx3 -> uint8 resized, PIL bilinear like torchvision's resize of a PIL image."""
    h, w = input_hw
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def normalize_and_pad(resized: np.ndarray, model_size: int = IMAGE_SIZE,
                      mean: tuple[float, ...] = PIXEL_MEAN, std: tuple[float, ...] = PIXEL_STD) -> np.ndarray:
    """uint8 hxwx3 -> float32 (1, 3, model_size, model_size), zero-padded bottom-right."""
    h, w = resized.shape[:2]
    out = np.zeros((1, 3, model_size, model_size), dtype=np.float32)
    chw = resized.transpose(2, 0, 1).astype(np.float32)
    out[0, :, :h, :w] = (chw - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return out


def preprocess_image(image: np.ndarray, model_size: int = IMAGE_SIZE,
                     mean: tuple[float, ...] = PIXEL_MEAN,
                     std: tuple[float, ...] = PIXEL_STD, processing=None) -> tuple[np.ndarray, ImageGeometry]:
    """Validated uint8 RGB HxWx3 -> encoder input (1, 3, model_size, model_size) float32 and the geometry
    needed to map prompts and masks; `processing` (families.Processing, default SAM's) says how."""
    if processing is not None and processing.resize == "square":
        geom = geometry_for(image.shape[0], image.shape[1], model_size, square=True)
        resized = resize_square(image, model_size, processing.input_scale)
        out = (resized - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
        return out[None].astype(np.float32, copy=False), geom
    geom = geometry_for(image.shape[0], image.shape[1], model_size)
    return normalize_and_pad(resize_image(image, geom.input_hw), model_size, mean, std), geom


def preprocess_for(image: np.ndarray, manifest) -> tuple[np.ndarray, ImageGeometry]:
    """preprocess_image with a bundle manifest's size, mean/std and processing (its family's)."""
    return preprocess_image(image, manifest.image_size, manifest.pixel_mean, manifest.pixel_std, manifest.processing)


def transform_coords(coords: np.ndarray, geom: ImageGeometry) -> np.ndarray:
    """(..., 2) x,y in original pixels -> the resized frame, float32."""
    (old_h, old_w), (new_h, new_w) = geom.original_hw, geom.input_hw
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] *= new_w / old_w
    out[..., 1] *= new_h / old_h
    return out.astype(np.float32)


def transform_boxes(boxes: np.ndarray, geom: ImageGeometry) -> np.ndarray:
    """(..., 4) x0,y0,x1,y1 -> (..., 4) in the resized frame."""
    return transform_coords(np.asarray(boxes).reshape(-1, 2, 2), geom).reshape(np.shape(boxes))


def prompt_rows(points: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
                geom: ImageGeometry, processing=None) -> tuple[np.ndarray, np.ndarray]:
    """Validated prompts in original pixels -> decoder rows (1, N, 2), (1, N) float32 in the model frame, as
    the family's official predictor builds them. SAM: points, then box corners (labels 2, 3), or a padding
    row (-1) when there is no box. SAM 2 (box_first, always_pad_point): corners, points, then the padding row."""
    pts = [] if points is None else [(transform_coords(points, geom), np.asarray(labels, np.float32))]
    corners = [] if box is None else [(transform_boxes(box, geom).reshape(2, 2), np.array([2, 3], np.float32))]
    parts = corners + pts if processing is not None and processing.box_first else pts + corners
    if box is None or (processing is not None and processing.always_pad_point):
        parts.append((np.zeros((1, 2), np.float32), np.array([-1], np.float32)))
    rows = np.concatenate([p[0] for p in parts])[None].astype(np.float32)
    return rows, np.concatenate([p[1] for p in parts])[None].astype(np.float32)


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights of torch's bilinear interpolation with align_corners=False, no antialias."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = src - i0
    m = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m


@lru_cache(maxsize=64)
def _axis_map(low_res: int, model_size: int, crop: int, original: int, dtype: str, square: bool = False) -> np.ndarray:
    """low-res -> model size, crop, -> original, composed into one (original, low_res) matrix; square (SAM 2):
    low-res -> original in one bilinear step."""
    if square:
        return bilinear_matrix(low_res, original).astype(dtype)
    up = bilinear_matrix(low_res, model_size)[:crop]
    down = bilinear_matrix(crop, original)
    return (down @ up).astype(dtype)


def is_numpy_blas(filepath: str) -> bool:
    """numpy wheels bundle their own OpenBLAS in site-packages/numpy.libs (scipy and torch bring others)."""
    return Path(filepath).parent.name.startswith("numpy")


@lru_cache(maxsize=1)
def _blas_controller():
    """numpy's BLAS (the one np.matmul calls); every BLAS loaded so far where numpy uses a system one."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    blas = ThreadpoolController().select(user_api="blas")
    own = [c.filepath for c in blas.lib_controllers if is_numpy_blas(c.filepath)]
    return blas.select(filepath=own) if own else blas


def single_threaded_blas():
    """numpy's BLAS on one thread for the block. OpenBLAS's threads busy-wait after a multi-threaded matmul and
    take the cores the backend's next run needs. MobileSAM predict() (1 point, 640x480, p50 of 50 interleaved
    calls, 2-core AVX2 EPYC): OpenVINO f32 76.9 -> 50.0 ms, ONNX Runtime 83.7 -> 72.1 ms with the upsampling
    on one BLAS thread. One thread makes the upsampling alone ~5 ms slower (10 vs 5 ms), far less than it saves."""
    controller = _blas_controller()
    return controller.limit(limits=1) if controller is not None else nullcontext()


def postprocess_masks(low_res_logits: np.ndarray, geom: ImageGeometry, *, spread: bool = True) -> np.ndarray:
    """(..., 256, 256) low-res logits -> (..., H, W) logits at the original image size. spread=False keeps the
    work on the calling thread (a task already running on the cores: map_on_cores).

    float32 in, float32 out (float64 stays float64, which tests use to check exactness). The two axis maps are
    banded (bilinear twice: every output reads at most a few neighbouring inputs), so each block of outputs is a
    small matmul over only the inputs it reads (_BandedMap). 640x480 from 256x256: 2.7 -> ~1 ms a mask against the
    dense (H, 256) @ (256, 256) @ (256, W) on one core; 1080p: 16 -> ~4 ms (2-core Xeon, AVX-512)."""
    low = np.asarray(low_res_logits)
    if low.dtype != np.float64:
        low = low.astype(np.float32, copy=False)
    size = low.shape[-1]
    rows = _banded_axis_map(size, geom.model_size, geom.input_hw[0], geom.original_hw[0], low.dtype.name,
                            geom.square, _ROW_BLOCK)
    cols = _banded_axis_map(size, geom.model_size, geom.input_hw[1], geom.original_hw[1], low.dtype.name,
                            geom.square, _COL_BLOCK)
    lead = low.shape[:-2]
    flat = low.reshape(-1, low.shape[-2], size)
    out = np.empty((flat.shape[0], rows.out_size, cols.out_size), low.dtype)
    workers = _workers() if spread and out.size >= 200_000 else 1  # threads cost ~50 us each: small outputs stay on one
    with single_threaded_blas():  # numpy releases the GIL in matmul: the tasks run on all cores, one BLAS thread each
        if workers == 1:
            _upsample(flat, out, rows, cols)
        elif len(flat) >= _MASKS_PER_TASK * workers:  # many masks (segment everything): a group a task, in cache
            step = _MASKS_PER_TASK  # the groups apply_last uses on one core too: the same numbers on any core count
            list(_pool().map(lambda i: _upsample(flat[i:i + step], out[i:i + step], rows, cols),
                             range(0, len(flat), step)))
        else:  # one to a few masks (predict): the narrow column pass on one core, the output rows split
            inner = cols.apply_last(np.ascontiguousarray(flat[:, rows.lo:rows.hi]))
            parts = np.array_split(np.arange(len(rows.bands)), workers)
            list(_pool().map(lambda part: rows.apply_rows(inner, out, part), parts))
    return out.reshape(*lead, rows.out_size, cols.out_size)


_ROW_BLOCK, _COL_BLOCK, _MASKS_PER_TASK = 32, 64, 4  # timed on 640x480 and 1080p; flat within ~10% around these


@dataclass(frozen=True)
class _Band:
    """One block of outputs and the inputs it reads: out[start:stop] = weights @ x[lo:hi]."""
    start: int
    stop: int
    lo: int
    hi: int
    weights: np.ndarray  # (stop - start, hi - lo)


@dataclass(frozen=True)
class _BandedMap:
    """An (out_size, in_size) linear map stored as blocks of output positions with the input range each reads;
    lo:hi is the input range the whole map reads (a crop of the 1024 upsampling reads only part of 256)."""
    out_size: int
    lo: int
    hi: int
    bands: tuple[_Band, ...]

    def apply_last(self, x: np.ndarray) -> np.ndarray:
        """(K, R, in_size) -> (K, R, out_size), x contiguous: the map on the last axis, one 2-D matmul per band
        over the rows of a group of masks. The groups are fixed (_MASKS_PER_TASK masks, counted from the first)
        and postprocess_masks hands out the same groups to its tasks, so a mask's numbers come from the same BLAS
        calls whatever the core count (OpenBLAS's AVX2 kernels sum the edge rows of a call in another order: 17
        masks in one call and in calls of 4 differed in the last bit on 1.6% of pixels)."""
        y = np.empty((*x.shape[:-1], self.out_size), x.dtype)
        for k in range(0, len(x), _MASKS_PER_TASK):
            x2 = x[k:k + _MASKS_PER_TASK].reshape(-1, x.shape[-1])
            y2 = y[k:k + _MASKS_PER_TASK].reshape(-1, self.out_size)  # a view: y is contiguous
            for b in self.bands:
                y2[:, b.start:b.stop] = np.matmul(x2[:, b.lo:b.hi], b.weights.T)
        return y

    def apply_rows(self, x: np.ndarray, out: np.ndarray, which: np.ndarray | None = None) -> None:
        """(K, hi - lo, W) inputs already cut to lo:hi -> out (K, out_size, W), for the bands `which` (all)."""
        for i in (range(len(self.bands)) if which is None else which):
            b = self.bands[i]
            out[:, b.start:b.stop] = np.matmul(b.weights, x[:, b.lo - self.lo:b.hi - self.lo])


def _upsample(low: np.ndarray, out: np.ndarray, rows: _BandedMap, cols: _BandedMap) -> None:
    """(K, 256, 256) -> out (K, H, W): columns first over only the low-res rows the output reads, then rows."""
    rows.apply_rows(cols.apply_last(np.ascontiguousarray(low[:, rows.lo:rows.hi])), out)


@lru_cache(maxsize=64)
def _banded_axis_map(low_res: int, model_size: int, crop: int, original: int, dtype: str, square: bool,
                     block: int) -> _BandedMap:
    dense = _axis_map(low_res, model_size, crop, original, dtype, square)
    bands = []
    for start in range(0, dense.shape[0], block):
        rows = dense[start:start + block]
        reads = np.flatnonzero(np.any(rows != 0, axis=0))  # never empty: each output's weights sum to 1
        lo, hi = int(reads[0]), int(reads[-1]) + 1
        bands.append(_Band(start, start + len(rows), lo, hi, np.ascontiguousarray(rows[:, lo:hi])))
    return _BandedMap(dense.shape[0], min(b.lo for b in bands), max(b.hi for b in bands), tuple(bands))


def map_on_cores(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """[fn(item) for item in items], in order, on one thread per core with numpy's BLAS on one thread each: for
    numpy work that releases the GIL (matmuls, comparisons, reductions over large arrays)."""
    if len(items) <= 1 or _workers() == 1:
        with single_threaded_blas():
            return [fn(item) for item in items]
    with single_threaded_blas():
        return list(_pool().map(fn, items))


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="samedge-upsample")
        return _POOL


def _workers() -> int:
    return max(1, min(usable_cores(), 8))


def select_masks(low_res: np.ndarray, scores: np.ndarray, multimask_output: bool,
                 processing=None) -> tuple[np.ndarray, np.ndarray]:
    """All four decoder outputs (B, 4, h, w) logits and (B, 4) scores -> the returned ones: (B, 3, ...) with
    multimask_output, else (B, 1, ...) by the family's single-mask rule (families.Processing.single_mask)."""
    if multimask_output:
        return low_res[:, 1:], scores[:, 1:]
    if processing is None or processing.single_mask == "first":
        return low_res[:, :1], scores[:, :1]
    # SAM 2's dynamic multimask: token 0 if stable, else the best-scored multimask output
    flat = low_res[:, 0].reshape(low_res.shape[0], -1)
    area_i = np.count_nonzero(flat > processing.stability_delta, axis=1).astype(np.float32)
    area_u = np.count_nonzero(flat > -processing.stability_delta, axis=1).astype(np.float32)
    stability = np.where(area_u > 0, area_i / np.maximum(area_u, 1), np.float32(1.0))
    best = 1 + np.argmax(scores[:, 1:], axis=1)
    pick = np.where(stability >= processing.stability_thresh, 0, best)
    rows = np.arange(low_res.shape[0])
    return low_res[rows, pick][:, None], scores[rows, pick][:, None]
