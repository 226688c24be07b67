"""SamPredictor (numpy + ONNX Runtime) vs the PyTorch fp32 reference on real photos, every prompt kind."""
from __future__ import annotations

import numpy as np
import pytest

from samedge import SamPredictor
from samedge.export.parity import prompt_set
from samedge.metrics import mask_iou
from samedge.predictor import NoImageError


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    return SamPredictor(tiny_bundle)


def test_every_prompt_kind_matches_reference_on_real_photos(predictor, reference, samples):
    kinds = set()
    for sample in samples:
        predictor.set_image(sample.rgb)
        reference.set_image(sample.rgb)
        previous = {}
        for prompt in prompt_set(sample):
            kinds.add(prompt.name)
            kw = dict(prompt.kwargs)
            ref_kw, our_kw = dict(kw), dict(kw)
            if prompt.feed_previous_logits:
                ref_kw["mask_input"], our_kw["mask_input"] = previous["ref"], previous["ours"]
            ref_full, ref_scores, ref_low = reference.predict(**ref_kw)
            masks, scores, low = predictor.predict(**our_kw)
            n = 3 if kw["multimask_output"] else 1
            h, w = sample.rgb.shape[:2]
            assert masks.shape == (n, h, w) and masks.dtype == bool
            assert scores.shape == (n,) and scores.dtype == np.float32
            assert low.shape == (n, 256, 256) and low.dtype == np.float32
            for r, o in zip(ref_full, masks):
                assert mask_iou(r > 0, o) >= 0.99, (sample.name, prompt.name)
            np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
            np.testing.assert_allclose(low, ref_low, atol=1e-3)
            # masks are non-trivial, so IoU is informative
            assert 0.01 < (ref_full > 0).mean() < 0.99
            best = int(np.argmax(ref_scores))
            previous = {"ref": ref_low[best:best + 1], "ours": low[best:best + 1]}
    assert kinds == {"point_multimask", "fg_bg_points", "box", "box_point", "point_with_mask_input"}


def test_return_logits_and_threshold(predictor, samples):
    predictor.set_image(samples[0].rgb)
    pt = np.array([[250.0, 180.0]])
    logits, scores, _ = predictor.predict(pt, np.array([1]), return_logits=True)
    masks, scores2, _ = predictor.predict(pt, np.array([1]))
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(masks, logits > 0.0)
    np.testing.assert_array_equal(scores, scores2)


def test_bgr_input_equals_rgb(predictor, samples):
    rgb = samples[1].rgb
    predictor.set_image(rgb)
    emb_rgb = predictor.get_image_embedding().copy()
    predictor.set_image(np.ascontiguousarray(rgb[..., ::-1]), image_format="BGR")
    np.testing.assert_array_equal(predictor.get_image_embedding(), emb_rgb)


def test_static_decoder_is_chosen_for_its_click_count_and_matches_dynamic(tiny_bundle, samples):
    predictor = SamPredictor(tiny_bundle)
    predictor.set_image(samples[0].rgb)
    pts, labels = np.array([[250.0, 180.0], [30.0, 20.0]]), np.array([1, 0])
    static = predictor.predict(pts, labels, multimask_output=False)
    assert set(predictor._decoders) == {"prompt_p2.onnx"}  # the split decoder's static graph for 2 clicks
    m = predictor.bundle.manifest
    for pin in (next(g for g in m.decoders if g.num_points is None),  # the full dynamic decoder
                next(g for g in m.decoders if g.num_points == 2)):  # the full static one
        predictor.pinned_decoder = pin
        other = predictor.predict(pts, labels, multimask_output=False)
        np.testing.assert_allclose(static[2], other[2], atol=1e-4)
        np.testing.assert_allclose(static[1], other[1], atol=1e-5)


def test_reset_image_and_no_image_errors(tiny_bundle, samples):
    predictor = SamPredictor(tiny_bundle)
    with pytest.raises(NoImageError, match="set_image"):
        predictor.predict(np.array([[1.0, 1.0]]), np.array([1]))
    predictor.set_image(samples[0].rgb)
    assert predictor.is_image_set and predictor.original_size == (375, 500) and predictor.input_size == (768, 1024)
    predictor.reset_image()
    assert not predictor.is_image_set
    with pytest.raises(NoImageError):
        predictor.get_image_embedding()


def test_warm_up_opens_and_runs_every_graph_without_setting_an_image(tiny_bundle):
    import numpy as np

    from samedge import SamPredictor
    from samedge.errors import InputError
    from samedge import processing
    with SamPredictor.from_bundle(tiny_bundle, "onnxruntime") as p:
        assert set(p.sessions) == {"encoder", "context"}  # decoders open lazily...
        processing._banded_axis_map.cache_clear()
        times = p.warm_up((240, 320), clicks=(1, 2))
        assert set(times) == {"encoder", "context", "decoder_1click", "decoder_1click_prior", "decoder_2click",
                              "decoder_2click_prior", "postprocess"} and all(v > 0 for v in times.values())
        assert processing._banded_axis_map.cache_info().currsize == 2  # this size's row and column maps, built now
        opened = {p.decoder_graph(k, prior).file for k in (1, 2) for prior in (False, True)}
        assert len(opened) == 4  # with and without a mask prior: the split decoder's two prompt graphs
        assert set(p.sessions) == {"encoder", "context", *opened} and p.current is None  # ...opened; no image
        with pytest.raises(InputError, match="image_hw"):
            p.warm_up((0, 320))
        with pytest.raises(InputError, match="clicks"):
            p.warm_up((240, 320), clicks=())
        p.set_image(np.zeros((240, 320, 3), np.uint8))
        masks, _, _ = p.predict(point_coords=np.array([[10, 10]]), point_labels=np.array([1]))
        assert masks.shape == (3, 240, 320)
        assert processing._banded_axis_map.cache_info().currsize == 2  # the first predict() built none
    for bad in (0, "2", True):
        with pytest.raises(InputError, match="encoder_threads must be a positive integer"):
            SamPredictor(tiny_bundle, encoder_threads=bad)
    with SamPredictor(tiny_bundle, threads=2, encoder_threads=1) as p:
        assert p.sessions["encoder"].info.details["threads"] == 1 and p.sessions["context"].info.details["threads"] == 2
