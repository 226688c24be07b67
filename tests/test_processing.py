"""Numpy processing vs the official computation in PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samedge import processing
from samedge.export.reference import TorchReferencePredictor, reference_preprocess_shape


@pytest.mark.parametrize("hw, expected", [((375, 500), (768, 1024)), ((500, 375), (1024, 768)),
                                          ((480, 640), (768, 1024)), ((1125, 1500), (768, 1024)),
                                          ((1024, 1024), (1024, 1024)), ((7, 13), (551, 1024)),
                                          ((2000, 300), (1024, 154)), ((1023, 1025), (1022, 1024))])
def test_preprocess_shape(hw, expected):
    """Worked by hand (long side to 1024, the other side * 1024 / long, rounded half up) and, where it is
    installed, by segment-anything's own ResizeLongestSide."""
    assert processing.preprocess_shape(*hw) == expected
    official = _official_transform()
    if official is not None:
        assert official.get_preprocess_shape(*hw, 1024) == expected


def _official_transform():
    try:
        from segment_anything.utils.transforms import ResizeLongestSide
    except ImportError:
        return None
    return ResizeLongestSide(1024)


def _reference(tiny_model, image):
    ref = TorchReferencePredictor(tiny_model)
    ref.original_size = image.shape[:2]
    ref.input_size = reference_preprocess_shape(*image.shape[:2], 1024)
    return ref


def _variants(samples):
    voc = samples[0].rgb
    yield "voc", voc
    yield "arc2017", samples[1].rgb
    yield "larger_than_1024", samples[2].rgb
    yield "portrait", np.ascontiguousarray(voc.transpose(1, 0, 2))
    yield "small_odd", voc[:37, :53]


def test_preprocess_matches_reference(tiny_model, samples):
    for name, image in _variants(samples):
        ours, geom = processing.preprocess_image(image)
        ref = _reference(tiny_model, image).preprocess(image).numpy()
        assert ours.shape == ref.shape == (1, 3, 1024, 1024), name
        np.testing.assert_allclose(ours, ref, atol=1e-5, err_msg=name)
        h, w = geom.input_hw
        assert max(h, w) == 1024 and np.all(ours[..., h:, :] == 0) and np.all(ours[..., :, w:] == 0)


def test_coords_and_boxes_match_the_official_transform(samples):
    official = _official_transform()
    if official is None:
        pytest.skip("segment-anything is not installed (bash scripts/setup.sh installs it)")
    rng = np.random.default_rng(0)
    for name, image in _variants(samples):
        h, w = image.shape[:2]
        geom = processing.geometry_for(h, w)
        pts = rng.uniform(0, [w, h], size=(6, 2))
        np.testing.assert_allclose(processing.transform_coords(pts, geom), official.apply_coords(pts, (h, w)),
                                   rtol=1e-6, err_msg=name)
        box = np.array([[w * 0.1, h * 0.2, w * 0.7, h * 0.9]])
        np.testing.assert_allclose(processing.transform_boxes(box, geom), official.apply_boxes(box, (h, w)),
                                   rtol=1e-6, err_msg=name)


def test_coords_worked_example():
    """375x500 -> 768x1024: x scales by 1024/500, y by 768/375 (both 2.048)."""
    geom = processing.geometry_for(375, 500)
    np.testing.assert_allclose(processing.transform_coords(np.array([[250.0, 100.0], [0.0, 375.0]]), geom),
                               [[512.0, 204.8], [0.0, 768.0]], rtol=1e-6)


def test_postprocess_is_exactly_the_reference_in_float64(tiny_model, samples):
    rng = np.random.default_rng(1)
    low = rng.normal(0, 4, size=(3, 256, 256))
    for name, image in _variants(samples):
        geom = processing.geometry_for(*image.shape[:2])
        ours = processing.postprocess_masks(low, geom)
        ref = _reference(tiny_model, image).postprocess_masks(torch.from_numpy(low)[None])[0].numpy()
        assert ours.shape == ref.shape == (3, *image.shape[:2]) and ours.dtype == np.float64, name
        np.testing.assert_allclose(ours, ref, atol=1e-9, err_msg=name)


def test_postprocess_float32_agrees_with_reference(tiny_model, samples):
    """In float32, torch computes bilinear source positions in float32 (up to 1024 * 6e-8 off), our
    precomposed weights are float64-exact; the logits therefore differ by at most
    ~1e-4 * (largest neighbour difference), here about 1e-3 for N(0, 4) noise, and the thresholded
    masks practically never."""
    rng = np.random.default_rng(1)
    low = rng.normal(0, 4, size=(3, 256, 256)).astype(np.float32)
    for name, image in _variants(samples):
        geom = processing.geometry_for(*image.shape[:2])
        ours = processing.postprocess_masks(low, geom)
        ref = _reference(tiny_model, image).postprocess_masks(torch.from_numpy(low)[None])[0].numpy()
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=2e-3, err_msg=name)
        assert np.mean((ours > 0) != (ref > 0)) < 1e-4, name


@pytest.mark.parametrize("hw", [(480, 640), (1080, 1920), (2000, 300), (7, 9)])
@pytest.mark.parametrize("square", [False, True])
def test_banded_axis_maps_hold_every_weight_of_the_dense_map(hw, square):
    """The upsampling multiplies only inside each band: the bands must cover every output once and every nonzero
    weight of the dense map, or it would silently drop part of the interpolation."""
    for axis in (0, 1):
        geom = processing.ImageGeometry(hw, processing.geometry_for(*hw).input_hw, square=square)
        dense = processing._axis_map(256, 1024, geom.input_hw[axis], hw[axis], "float64", square)
        banded = processing._banded_axis_map(256, 1024, geom.input_hw[axis], hw[axis], "float64", square, 32)
        rebuilt = np.zeros_like(dense)
        covered = np.zeros(len(dense), int)
        for b in banded.bands:
            rebuilt[b.start:b.stop, b.lo:b.hi] += b.weights
            covered[b.start:b.stop] += 1
        assert np.all(covered == 1) and banded.out_size == len(dense)
        np.testing.assert_array_equal(rebuilt, dense)
        assert banded.lo == np.flatnonzero(dense.any(0))[0] and banded.hi == np.flatnonzero(dense.any(0))[-1] + 1
        reads = banded.hi - banded.lo
        for b in banded.bands:  # a band reads its share of the input and a few taps more, not everything
            assert b.hi - b.lo <= np.ceil((b.stop - b.start) * reads / len(dense)) + 4, (b.start, b.lo, b.hi)


@pytest.mark.parametrize("masks", [1, 3, 17])
def test_postprocess_gives_the_same_numbers_on_one_core_and_split_across_cores(monkeypatch, masks):
    """The three ways the upsampling is spread (one task; a few masks a task; one mask's output rows split) must
    give identical numbers: same per-element sums, different threads."""
    low = np.random.default_rng(2).normal(0, 4, size=(masks, 256, 256)).astype(np.float32)
    geom = processing.geometry_for(1080, 1920)
    dense = np.matmul(np.matmul(processing._axis_map(256, 1024, *geom.input_hw[:1], 1080, "float64"), low),
                      processing._axis_map(256, 1024, geom.input_hw[1], 1920, "float64").T)
    monkeypatch.setattr(processing, "_workers", lambda: 1)
    one = processing.postprocess_masks(low, geom)
    monkeypatch.setattr(processing, "_workers", lambda: 3)
    spread = processing.postprocess_masks(low, geom)
    np.testing.assert_array_equal(spread, one)
    np.testing.assert_allclose(one, dense, atol=2e-5)


@pytest.mark.parametrize("size", [(256, 1024), (1024, 375), (768, 1500), (256, 7), (5, 5)])
def test_bilinear_matrix_is_torch_bilinear(size):
    src, dst = size
    x = torch.randn(1, 1, 1, src, dtype=torch.float64)
    ref = F.interpolate(x, size=(1, dst), mode="bilinear", align_corners=False)[0, 0, 0].numpy()
    ours = processing.bilinear_matrix(src, dst) @ x[0, 0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_upsampling_keeps_numpy_blas_on_one_thread(monkeypatch):
    """OpenBLAS threads spinning after the upsampling took the backend's cores (predict() on OpenVINO 77 -> 50 ms
    on 2 AVX2 cores without them); the matmuls must run with BLAS limited to one thread, and give the same numbers."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen, matmul = [], np.matmul

    def recording(a, b):
        blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        numpy_blas = [i for i in blas if processing.is_numpy_blas(i["filepath"])] or blas
        seen.append([i["num_threads"] for i in numpy_blas])
        return matmul(a, b)
    geom = processing.geometry_for(480, 640)
    low = np.random.default_rng(0).normal(0, 4, size=(3, 256, 256)).astype(np.float32)
    expected = processing.postprocess_masks(low, geom)
    monkeypatch.setattr(processing.np, "matmul", recording)
    out = processing.postprocess_masks(low, geom)
    assert seen and all(threads and max(threads) == 1 for threads in seen)
    np.testing.assert_array_equal(out, expected)
