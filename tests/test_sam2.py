"""SAM 2.1 image mode: model definitions against the official key lists and the official sam2 package, SAM 2's
processing against the PyTorch transforms, export + parity on ONNX Runtime and OpenVINO, and the new bad inputs.

The official sam2 1.1.0 package (scripts/setup.sh installs it --no-deps, with hydra-core and iopath; torchvision
is the test-only shim in tests/upstream_shim) is the reference for the architecture and SamPredictor-level
results; samedge never imports it outside tests."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samedge import SamPredictor, processing
from samedge.compare import batch_prompts, compare_prompt, prompt_set
from samedge.errors import BundleError, CheckpointError, InputError, ManifestVersionError
from samedge.families import SAM2
from samedge.metrics import cosine
from samedge.models import build_sam, load_checkpoint, randomize_weights

SIZES = ("tiny", "small", "base_plus", "large")
KEYS_DIR = Path(__file__).resolve().parents[2] / "shared" / "official_keys"
# the official config of each size, and the test-only Hiera as overrides of the tiny one
CONFIGS = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
TEST_TINY_OVERRIDES = ["++model.image_encoder.trunk.embed_dim=8", "++model.image_encoder.trunk.stages=[1,1,2,1]",
                       "++model.image_encoder.trunk.global_att_blocks=[3]",
                       "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]"]


@pytest.fixture(scope="module")
def sam2_model():
    return randomize_weights(build_sam("test_tiny_sam2"), seed=0)


@pytest.fixture(scope="module")
def sam2_bundle(tmp_path_factory) -> Path:
    """test_tiny_sam2 (a real Hiera layout, a few MB, full-size SAM 2 heads) with OpenVINO IR, parity-gated."""
    from samedge.export.pipeline import ExportConfig, export_bundle
    out = tmp_path_factory.mktemp("sam2") / "tiny"
    export_bundle(ExportConfig("test_tiny_sam2", out, seed=0, decoder_points=(1,), parity_images=1,
                               formats=("openvino",)))
    return out


def _official(name: str, overrides=()):
    sam2_build = pytest.importorskip("sam2.build_sam", reason="bash scripts/setup.sh installs sam2==1.1.0")
    return sam2_build.build_sam2(f"configs/sam2.1/sam2.1_hiera_{CONFIGS[name]}.yaml", ckpt_path=None, device="cpu",
                                 mode="eval", hydra_overrides_extra=list(overrides))


# -- definitions and checkpoints -----------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
def test_state_dict_matches_the_official_key_list(size):
    listing = KEYS_DIR / f"sam2.1_hiera_{size}.json"
    if not listing.is_file():
        pytest.skip("shared/official_keys is not beside this checkout")
    want = {k: tuple(shape) for k, shape, _ in json.loads(listing.read_text())["keys"]}
    got = {k: tuple(v.shape) for k, v in build_sam(f"sam2.1_hiera_{size}").state_dict().items()}
    assert sorted(set(want) - set(got)) == [] and sorted(set(got) - set(want)) == []
    assert {k: s for k, s in got.items() if want[k] != s} == {}


@pytest.mark.parametrize("size", ("tiny", "small"))
def test_official_format_checkpoint_loads_strictly(size, tmp_path):
    name = f"sam2.1_hiera_{size}"
    model = randomize_weights(build_sam(name), seed=3)
    path = tmp_path / f"{name}.pt"
    torch.save({"model": model.state_dict()}, path)  # the official file's layout
    loaded = load_checkpoint(path, name)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_sam1_checkpoint_for_a_sam2_model_is_named(tiny_model, tmp_path):
    sam1 = tmp_path / "vit.pth"
    torch.save(randomize_weights(build_sam("vit_b"), 0).state_dict(), sam1)
    with pytest.raises(CheckpointError, match="SAM 1 / MobileSAM checkpoint \\(vit_b\\).*SAM 2.1 model"):
        load_checkpoint(sam1, "sam2.1_hiera_tiny")
    sam2 = tmp_path / "sam2.pt"
    torch.save({"model": build_sam("sam2.1_hiera_tiny").state_dict()}, sam2)
    with pytest.raises(CheckpointError, match="SAM 2.1 checkpoint \\(sam2.1_hiera_tiny\\).*pass --model sam2.1_hiera_tiny"):
        load_checkpoint(sam2, "vit_b")
    with pytest.raises(CheckpointError, match="sam2.1_hiera_tiny checkpoint.*--model sam2.1_hiera_small"):
        load_checkpoint(sam2, "sam2.1_hiera_small")


@pytest.mark.parametrize("size", ("tiny", "small"))
def test_encoder_equals_the_official_sam2(size, samples):
    """Our Hiera + FPN + no_mem_embed + conv_s0/s1 on the official SAM2ImagePredictor's own input."""
    ours = randomize_weights(build_sam(f"sam2.1_hiera_{size}"), seed=1)
    official = _official(size)
    official.load_state_dict(ours.state_dict(), strict=True)
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    pred = SAM2ImagePredictor(official)
    pred.set_image(samples[0].rgb)
    with torch.no_grad():
        emb, s0, s1 = ours.image_features(pred._transforms(samples[0].rgb)[None])
    feats = pred._features
    for a, b in ((emb, feats["image_embed"]), (s0, feats["high_res_feats"][0]), (s1, feats["high_res_feats"][1])):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= 1e-5 * float(b.abs().max())


# -- processing ------------------------------------------------------------------------------------------------
def test_square_resize_matches_torch_antialias(samples):
    for sample in samples[:3]:
        ours, geom = processing.preprocess_image(sample.rgb, 1024, SAM2.pixel_mean, SAM2.pixel_std, SAM2.processing)
        x = torch.as_tensor(sample.rgb).permute(2, 0, 1).float().div(255)[None]
        x = F.interpolate(x, (1024, 1024), mode="bilinear", align_corners=False, antialias=True)
        ref = ((x - torch.tensor(SAM2.pixel_mean).view(1, 3, 1, 1)) / torch.tensor(SAM2.pixel_std).view(1, 3, 1, 1))
        assert ours.shape == (1, 3, 1024, 1024) and ours.dtype == np.float32
        assert np.abs(ours - ref.numpy()).max() < 1e-4
        assert geom.square and geom.input_hw == (1024, 1024)


def test_sam2_coords_and_masks_follow_the_official_transforms():
    geom = processing.geometry_for(375, 500, square=True)
    pts = np.array([[10.0, 20.0], [499.0, 374.0]])
    np.testing.assert_allclose(processing.transform_coords(pts, geom), pts / [500, 375] * 1024, rtol=1e-6)
    low = np.random.default_rng(0).standard_normal((2, 256, 256))  # float64: exactness, not float32 rounding
    ref = F.interpolate(torch.from_numpy(low)[None], (375, 500), mode="bilinear", align_corners=False)[0].numpy()
    assert np.abs(processing.postprocess_masks(low, geom) - ref).max() < 1e-9
    with pytest.raises(InputError, match="not the resize"):
        processing.check_geometry(processing.ImageGeometry((375, 500), (768, 1024), 1024, square=True), 1024)


def test_dynamic_single_mask_rule_matches_the_decoder():
    """Token 0 when stable, else the best-scored multimask output, against the reference's torch version."""
    from samedge.export.reference import TorchReferenceSam2Predictor
    rng = np.random.default_rng(1)
    low = rng.standard_normal((6, 4, 256, 256)).astype(np.float32)
    low[:3, 0] = np.where(low[:3, 0] > 0, 5.0, -5.0)  # three stable single-mask outputs, three unstable
    scores = rng.random((6, 4)).astype(np.float32)
    ours_low, ours_scores = processing.select_masks(low, scores, False, SAM2.processing)
    rule = TorchReferenceSam2Predictor.__new__(TorchReferenceSam2Predictor)  # only the rule's two settings
    rule.delta, rule.thresh = 0.05, 0.98
    ref_low, ref_scores = rule._single_mask(torch.from_numpy(low), torch.from_numpy(scores))
    np.testing.assert_array_equal(ours_low, ref_low.numpy())
    np.testing.assert_array_equal(ours_scores, ref_scores.numpy())
    assert np.array_equal(ours_low[:3, 0], low[:3, 0])  # the stable ones kept token 0
    best = 1 + np.argmax(scores[3:, 1:], axis=1)
    assert np.array_equal(ours_low[3:, 0], low[np.arange(3, 6), best])


# -- export, parity, runtimes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size, formats", [("tiny", ("openvino",)), ("small", ())])
def test_real_sizes_export_from_an_official_format_checkpoint_and_pass_parity(size, formats, tmp_path):
    """The real Hiera-T / Hiera-S: {"model": state_dict} file -> strict load -> export -> parity on a real photo,
    every prompt kind (ONNX Runtime; OpenVINO f32 too for tiny). base+ and large: tests/test_large_models.py."""
    from samedge.export.pipeline import ExportConfig, export_bundle
    name = f"sam2.1_hiera_{size}"
    ckpt = tmp_path / f"{name}.pt"
    torch.save({"model": randomize_weights(build_sam(name), seed=0).state_dict()}, ckpt)
    # the decoder (and so the split decoder) is the same for every size: sam2_bundle's tests cover the split
    m = export_bundle(ExportConfig(name, tmp_path / name, weights="checkpoint", checkpoint=ckpt, parity_images=1,
                                   formats=formats, split_decoder=False))
    assert m.parity["passed"] and m.parity["summary"]["min_mask_iou"] >= 0.99
    assert m.parity["summary"]["min_feature_cosine"] >= 0.9999
    assert {p["prompt"] for p in m.parity["prompts"]} == {p.name for p in (*prompt_set(_first_sample()),
                                                                           *batch_prompts(_first_sample()))}
    for fmt in formats:
        assert m.converted[fmt].conversion["parity"]["passed"]
    ckpt.unlink()


def _first_sample():
    from samedge.data import sample_images
    return sample_images(1)[0]


def test_sam2_bundle_has_the_grown_contract(sam2_bundle):
    from samedge.bundle import load_bundle
    m = load_bundle(sam2_bundle, warn_random=False).manifest
    assert m.family == "sam2" and m.format_version == 4 and m.processing == SAM2.processing
    assert [t.name for t in m.encoder.outputs] == ["image_embeddings", "high_res_feats_0", "high_res_feats_1"]
    assert [list(t.shape) for t in m.encoder.outputs[1:]] == [[1, 32, 256, 256], [1, 64, 128, 128]]
    for g in (*m.decoders, *m.converted["openvino"].decoders):
        assert [t.name for t in g.inputs][:3] == ["image_embeddings", "high_res_feats_0", "high_res_feats_1"]
    assert [t.name for t in m.split.context.inputs] == ["image_embeddings", "high_res_feats_0", "high_res_feats_1"]
    assert "split_decoder" not in m.export and m.converted["openvino"].split is not None
    assert m.parity["passed"] and m.parity["summary"]["min_feature_cosine"] >= 0.9999
    assert {p["prompt"] for p in m.parity["prompts"]} >= {"box", "box_point", "point_with_mask_input", "static1_points"}


def test_sam2_split_decoder_gives_the_full_decoders_results(sam2_bundle, samples):
    """The high-res path split like the rest (split_decoder._upscale_addend): single prompts with and without
    a mask prior, and one batched call, all equal to the full decoder."""
    split = SamPredictor(sam2_bundle, embedding_cache_size=0)
    full = SamPredictor(sam2_bundle, embedding_cache_size=0, split_decoder=False)
    assert split.uses_split_decoder and not full.uses_split_decoder
    image = samples[0].rgb
    h, w = image.shape[:2]
    split.set_image(image)
    full.set_image(image)
    _, _, prior = full.predict(point_coords=np.array([[w * 0.4, h * 0.5]]), point_labels=np.array([1]),
                               multimask_output=False)
    prompts = [dict(point_coords=np.array([[w * 0.4, h * 0.5]]), point_labels=np.array([1])),
               dict(point_coords=np.array([[w * 0.3, h * 0.3]]), point_labels=np.array([1]),
                    box=np.array([w * 0.1, h * 0.1, w * 0.6, h * 0.6]), multimask_output=False),
               dict(point_coords=np.array([[w * 0.4, h * 0.5], [w * 0.7, h * 0.2]]), point_labels=np.array([1, 0]),
                    mask_input=prior, multimask_output=False)]
    for kwargs in prompts:
        graph = split.decoder_graph(len(kwargs["point_coords"]) + 2 * ("box" in kwargs), "mask_input" in kwargs)
        assert graph.role == "prompt"
        (m1, s1, l1), (m2, s2, l2) = split.predict(**kwargs), full.predict(**kwargs)
        assert (m1 == m2).mean() > 0.9999
        np.testing.assert_allclose(s1, s2, atol=1e-5)
        np.testing.assert_allclose(l1, l2, atol=1e-4 * max(1.0, np.abs(l2).max()))
    pts = np.random.default_rng(0).uniform([0, 0], [w, h], (5, 1, 2))
    masks, scores, lows = split.predict_batch(pts, np.ones((5, 1)))  # one call of the dynamic prompt graph
    for i in range(5):
        m2, s2, l2 = full.predict(point_coords=pts[i], point_labels=np.ones(1))
        assert (masks[i] == m2).mean() > 0.9999
        np.testing.assert_allclose(scores[i], s2, atol=1e-5)
        np.testing.assert_allclose(lows[i], l2, atol=1e-4 * max(1.0, np.abs(l2).max()))


@pytest.mark.parametrize("backend", ("onnxruntime", "openvino"))
def test_sam2_bundle_matches_the_official_predictor(sam2_bundle, sam2_model, samples, backend):
    """Every prompt kind, on real photos: samedge's numpy predictor on the exported graphs against sam2's own
    SAM2ImagePredictor holding the same weights."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    official = _official("tiny", TEST_TINY_OVERRIDES)
    official.load_state_dict(sam2_model.state_dict(), strict=True)
    reference = SAM2ImagePredictor(official)

    class Logits:
        def predict(self, **kwargs):
            return reference.predict(return_logits=True, **kwargs)

    ours = SamPredictor(sam2_bundle, backend, embedding_cache_size=0)
    rows = []
    for sample in samples[:2]:
        reference.set_image(sample.rgb)
        ours.set_image(sample.rgb)
        assert cosine(reference._features["image_embed"].numpy(), ours.get_image_embedding()) > 0.9999
        for name, ref in zip(("high_res_feats_0", "high_res_feats_1"), reference._features["high_res_feats"]):
            assert cosine(ref.numpy(), ours.current.features[name]) > 0.9999
        previous: dict = {}
        rows += [compare_prompt(Logits(), ours, p, previous) for p in prompt_set(sample)]
    assert min(r["mask_iou"] for r in rows) >= 0.99, rows
    assert max(r["score_abs_error"] for r in rows) < 1e-3, rows
    assert max(r["low_res_max_abs_error"] for r in rows) < 1e-2, rows


def test_coreml_conversion_has_the_sam2_contract(sam2_bundle, tmp_path):
    """CoreML (static shapes, fp16 with the fp32 op list): the encoder gives the three outputs, the static
    decoder takes them; structure only (CoreML prediction needs macOS)."""
    from coreml_structure import check_mlpackage
    from samedge.bundle import load_bundle
    from samedge.export.convert import ConvertConfig, add_formats
    from samedge.export.coreml_convert import DEFAULT_FP32_OPS, CoreMLConfig
    b = tmp_path / "b"
    shutil.copytree(sam2_bundle, b)
    add_formats(b, ConvertConfig(("coreml",), coreml=CoreMLConfig((1,))))
    coreml = load_bundle(b, warn_random=False).manifest.converted["coreml"]
    assert [t.name for t in coreml.encoder.outputs] == list(SAM2.encoder_outputs)
    assert [t.shape for t in coreml.decoders[0].inputs][:4] == [(1, 256, 64, 64), (1, 32, 256, 256),
                                                                (1, 64, 128, 128), (1, 2, 2)]
    for graph in (coreml.encoder, *coreml.decoders):
        check_mlpackage(b / graph.file, graph, DEFAULT_FP32_OPS)


def test_sam2_single_mask_output_uses_the_stability_rule(sam2_bundle, samples):
    p = SamPredictor(sam2_bundle, embedding_cache_size=0)
    p.set_image(samples[0].rgb)
    pt = {"point_coords": np.array([[120.0, 90.0]]), "point_labels": np.array([1])}
    session, feeds = p.prepared_decode(**pt)
    out = session.run(feeds)
    low, scores = out["low_res_masks"], out["iou_predictions"]
    want_low, want_scores = processing.select_masks(low, scores, False, SAM2.processing)
    _, got_scores, got_low = p.predict(**pt, multimask_output=False)
    np.testing.assert_array_equal(got_scores, want_scores[0])
    np.testing.assert_array_equal(got_low, np.clip(want_low[0], -32, 32))
    assert np.all((scores >= 0) & (scores <= 1))  # the sigmoid IoU head


def test_sam2_embedding_round_trip_needs_the_high_res_features(sam2_bundle, samples):
    p = SamPredictor(sam2_bundle, embedding_cache_size=0)
    p.set_image(samples[0].rgb)
    item = p.get_image_embedding_item()
    first = p.predict(point_coords=np.array([[50.0, 60.0]]), point_labels=np.array([1]))[1]
    with pytest.raises(InputError, match="high_res_feats_0.*ImageEmbedding"):
        p.set_image_embedding(p.get_image_embedding(), item.geometry)
    p.reset_image()
    p.set_image_embedding(item)
    np.testing.assert_array_equal(p.predict(point_coords=np.array([[50.0, 60.0]]), point_labels=np.array([1]))[1],
                                  first)


# -- bad bundles -----------------------------------------------------------------------------------------------
def _edited(sam2_bundle, tmp_path, edit) -> Path:
    out = tmp_path / "edited"
    shutil.copytree(sam2_bundle, out)
    d = json.loads((out / "manifest.json").read_text())
    edit(d)
    (out / "manifest.json").write_text(json.dumps(d))
    return out


def test_missing_high_res_input_in_a_hand_edited_manifest(sam2_bundle, tmp_path):
    from samedge.bundle import load_bundle

    def drop(d):
        d["decoders"][0]["inputs"] = [t for t in d["decoders"][0]["inputs"] if t["name"] != "high_res_feats_0"]
    with pytest.raises(BundleError, match="missing input\\(s\\) \\['high_res_feats_0'\\]"):
        load_bundle(_edited(sam2_bundle, tmp_path, drop))


def test_sam2_bundle_with_an_old_format_version_is_refused(sam2_bundle, tmp_path):
    from samedge.bundle import load_bundle
    with pytest.raises(ManifestVersionError, match="format_version 3.*SAM 1 models only.*format_version 4"):
        load_bundle(_edited(sam2_bundle, tmp_path, lambda d: d.update(format_version=3)))


def test_family_that_contradicts_the_model_type_is_refused(sam2_bundle, tmp_path):
    from samedge.bundle import load_bundle
    with pytest.raises(BundleError, match="family 'sam2', the manifest says 'sam'"):
        load_bundle(_edited(sam2_bundle, tmp_path, lambda d: d.update(family="sam")))


# -- segment everything ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_m2m", [False, True])
def test_generator_matches_the_official_sam2_generator(sam2_bundle, sam2_model, samples, use_m2m):
    """SAM2AutomaticMaskGenerator's defaults (pred_iou_thresh 0.8 with the trained model's scale; here thresholds
    on the random weights' scale), with and without m2m refinement, against the official one on the same weights."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from samedge.everything import SamAutomaticMaskGenerator, compare_records
    official_model = _official("tiny", TEST_TINY_OVERRIDES)
    official_model.load_state_dict(sam2_model.state_dict(), strict=True)
    # random weights give image-wide texture masks whose boxes are all the whole image: box NMS at 1.0 keeps them
    # all, so every filter, the m2m pass and the ordering are compared mask by mask
    params = dict(points_per_side=4, points_per_batch=8, pred_iou_thresh=0.5, stability_score_thresh=0.05,
                  stability_score_offset=0.05, box_nms_thresh=1.0, use_m2m=use_m2m)
    photo = samples[1].rgb
    official = SAM2AutomaticMaskGenerator(official_model, **params).generate(photo)
    generator = SamAutomaticMaskGenerator.from_bundle(sam2_bundle, **params)
    ours = generator.generate(photo)
    assert len(official) >= 3, "the parameters must leave masks to compare"
    agreement = compare_records(official, ours, iou=0.99)
    assert agreement.is_exact(1e-3), agreement
    assert generator.last_stats.prompts == 16


def test_generator_takes_sam2_defaults_from_the_bundle(sam2_bundle, tiny_bundle):
    from samedge.everything import SamAutomaticMaskGenerator
    assert SamAutomaticMaskGenerator.from_bundle(sam2_bundle).config.pred_iou_thresh == 0.8
    assert SamAutomaticMaskGenerator.from_bundle(tiny_bundle).config.pred_iou_thresh == 0.88


def test_gaze_demo_runs_on_a_sam2_bundle(sam2_bundle, samples, tmp_path):
    """The AR gaze demo, unchanged, on a SAM 2.1 bundle: real photo panned into a video, real EyeLink trace."""
    cv2 = pytest.importorskip("cv2")
    from samedge.cli import main
    photo = samples[1].rgb
    video = tmp_path / "pan.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for i in range(12):
        writer.write(np.ascontiguousarray(photo[100:340, 100 + 4 * i:420 + 4 * i, ::-1]))
    writer.release()
    out = tmp_path / "demo"
    assert main(["demo", "gaze", "--bundle", str(sam2_bundle), "--out", str(out), "--video", str(video),
                 "--backend", "onnxruntime", "--policy", "every_frame"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 12 and summary["fixations"] >= 1 and summary["decoder_calls"] >= 1
    rows = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert any(r["mask_area"] > 0 for r in rows)


def test_bench_runs_a_sam2_bundle_on_its_split_decoder(sam2_bundle, tmp_path):
    """The bench feeds every graph by name (the context graph takes the high-res maps too)."""
    from samedge.cli import main
    out = tmp_path / "bench"
    assert main(["bench", str(sam2_bundle), "--backend", "onnxruntime", "--quick", "--no-baselines",
                 "--out", str(out)]) == 0
    [ours] = json.loads((out / "bench.json").read_text())["runs"]
    assert ours["split_decoder"] and ours["stages"]["context"]["p50"] > 0
    used = ours["decoder_graphs_used"]
    assert used["1pt"] == "prompt_p1.onnx" and used["mask"].startswith("prompt_mask")
    assert ours["flops"]["decoder_1pt"] * 2 <= ours["flops"]["decoder_full_1pt"]
