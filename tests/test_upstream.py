"""The upstream check: Meta's own segment-anything 1.0 (from PyPI, installed --no-deps by scripts/setup.sh) loads
the same seeded weights as samedge, and its SamPredictor is compared with samedge's exported bundle on the real
photos: preprocessing, embedding, masks, IoU scores and low-res logits. torchvision is the test-only shim in
tests/upstream_shim (PyPI's torchvision cannot load beside the CPU torch here)."""
from __future__ import annotations


import numpy as np
import pytest
import torch

segment_anything = pytest.importorskip("segment_anything", reason="bash scripts/setup.sh installs segment-anything==1.0")
from segment_anything import SamPredictor as OfficialPredictor  # noqa: E402
from segment_anything.build_sam import _build_sam  # noqa: E402

from samedge import SamPredictor, processing  # noqa: E402
from samedge.compare import compare_prompt, prompt_set  # noqa: E402
from samedge.metrics import cosine  # noqa: E402
from samedge.model_types import get_spec  # noqa: E402


class _LogitsSide:
    """The official predictor in the comparison engine's reference role (logits, scores, low-res logits)."""

    def __init__(self, predictor: OfficialPredictor) -> None:
        self.p = predictor

    def predict(self, **kwargs):
        return self.p.predict(return_logits=True, **kwargs)


@pytest.fixture(scope="module")
def official(tiny_model):
    enc = get_spec("test_tiny").encoder
    sam = _build_sam(enc.embed_dim, enc.depth, enc.num_heads, list(enc.global_attn_indexes))
    sam.load_state_dict(tiny_model.state_dict(), strict=True)  # the weights the tiny bundle was exported from
    return OfficialPredictor(sam.eval())


def test_preprocessing_matches_the_official_transforms(official, samples):
    for sample in samples:
        resized = official.transform.apply_image(sample.rgb)
        x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].float()
        expected = official.model.preprocess(x).numpy()
        ours, geom = processing.preprocess_image(sample.rgb)
        assert geom.input_hw == resized.shape[:2]
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
        pts = np.array([[0.0, 0.0], [sample.rgb.shape[1], sample.rgb.shape[0]], [17.3, 41.9]])
        np.testing.assert_allclose(processing.transform_coords(pts, geom),
                                   official.transform.apply_coords(pts, sample.rgb.shape[:2]), rtol=1e-6)


def test_bundle_matches_the_official_predictor(official, tiny_bundle, samples):
    ours = SamPredictor(tiny_bundle, embedding_cache_size=0)
    rows = []
    for sample in samples:
        official.set_image(sample.rgb)
        ours.set_image(sample.rgb)
        assert ours.input_size == tuple(official.input_size) and ours.original_size == tuple(official.original_size)
        assert cosine(official.get_image_embedding().numpy(), ours.get_image_embedding()) > 0.9999
        previous: dict = {}
        for prompt in prompt_set(sample):
            rows.append(compare_prompt(_LogitsSide(official), ours, prompt, previous))
    assert len(rows) == 5 * len(samples)
    assert min(r["mask_iou"] for r in rows) >= 0.99, rows
    assert max(r["score_abs_error"] for r in rows) < 1e-3, rows
    assert max(r["low_res_max_abs_error"] for r in rows) < 1e-3, rows
    # the prompts did real work: every mask is neither empty nor the whole image on some photo
    assert any(0.01 < r["reference_mask_fraction"] < 0.99 for r in rows)


def test_thresholded_masks_and_multimask_rule_match(official, tiny_bundle, samples):
    ours = SamPredictor(tiny_bundle, embedding_cache_size=0)
    sample = samples[1]
    official.set_image(sample.rgb)
    ours.set_image(sample.rgb)
    point = {"point_coords": np.array([[320.0, 240.0]]), "point_labels": np.array([1])}
    for multimask in (True, False):
        ref_masks, ref_scores, ref_low = official.predict(multimask_output=multimask, **point)
        masks, scores, low = ours.predict(multimask_output=multimask, **point)
        assert masks.dtype == ref_masks.dtype == bool and masks.shape == ref_masks.shape
        assert scores.shape == ref_scores.shape and low.shape == ref_low.shape
        differing = np.mean(masks != ref_masks)
        assert differing < 1e-3, differing
