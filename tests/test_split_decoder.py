"""The split decoder (per-image context graph + per-prompt graph): exact against the full decoder, a third of
its work per prompt, wired through bundles, predictor and bench."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from samedge import SamPredictor
from samedge.bench.flops import graph_flops
from samedge.bundle import load_bundle
from samedge.errors import BundleError, InputError
from samedge.export.graphs import DecoderGraph
from samedge.export.split_decoder import ContextGraph, PromptGraph


def _rows(batch: int, clicks: int, box: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(batch, clicks + 1 + box, 2, generator=g) * 1024
    labels = torch.randint(0, 2, (batch, clicks + 1 + box), generator=g).float()
    if box:
        labels[:, -2:] = torch.tensor([2.0, 3.0])
    else:
        labels[:, -1] = -1.0
        coords[:, -1] = 0.0
    return coords, labels


@pytest.mark.parametrize("clicks,box", [(1, False), (2, False), (5, False), (0, True), (2, True)])
def test_prompt_graph_equals_the_full_decoder(tiny_model, clicks, box):
    full, context, prompt = DecoderGraph(tiny_model).eval(), ContextGraph(tiny_model).eval(), PromptGraph(tiny_model).eval()
    emb = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(clicks))
    coords, labels = _rows(3, clicks, box, seed=10 + clicks)
    with torch.no_grad():
        masks, iou = prompt(coords, labels, *context(emb))  # a batch of 3 prompts on one image
        for i in range(3):
            ref_masks, ref_iou = full(emb, coords[i:i + 1], labels[i:i + 1], torch.zeros(1, 1, 256, 256),
                                      torch.zeros(1))
            scale = ref_masks.abs().max()
            assert (masks[i] - ref_masks[0]).abs().max() <= 1e-5 * scale
            assert (iou[i] - ref_iou[0]).abs().max() <= 1e-5
            assert ((masks[i] > 0) == (ref_masks[0] > 0)).float().mean() > 0.9999


def test_split_graphs_do_a_third_of_the_work_per_prompt(tiny_bundle):
    """Counted the same way for both (bench's analytic count, ConvTranspose included)."""
    m = load_bundle(tiny_bundle, warn_random=False).manifest
    assert m.split is not None
    for clicks in (1, 2, 5):
        shapes = {"point_coords": (1, clicks + 1, 2), "point_labels": (1, clicks + 1)}
        full = graph_flops(tiny_bundle / "decoder.onnx", shapes)
        split = graph_flops(tiny_bundle / "prompt.onnx", shapes)
        assert full["unresolved_nodes"] == split["unresolved_nodes"] == 0
        assert split["total"] <= full["total"] / (3 if clicks == 1 else 2), (clicks, split, full)
    # the static graphs derived from the dynamic one count the same
    shapes = {"point_coords": (1, 2, 2), "point_labels": (1, 2)}
    assert graph_flops(tiny_bundle / "prompt_p1.onnx", {})["total"] == graph_flops(tiny_bundle / "prompt.onnx",
                                                                                   shapes)["total"]


def _prompts(hw):
    h, w = hw
    return [dict(point_coords=np.array([[w * 0.4, h * 0.5]]), point_labels=np.array([1])),
            dict(point_coords=np.array([[w * 0.4, h * 0.5], [w * 0.7, h * 0.2]]), point_labels=np.array([1, 0]),
                 multimask_output=False),
            dict(point_coords=np.array([[w * 0.1 * i + 5, h * 0.15 * i + 5] for i in range(5)]),
                 point_labels=np.array([1, 1, 0, 1, 0]), multimask_output=False),
            dict(box=np.array([w * 0.2, h * 0.2, w * 0.8, h * 0.9]), multimask_output=False),
            dict(point_coords=np.array([[w * 0.3, h * 0.3]]), point_labels=np.array([1]),
                 box=np.array([w * 0.1, h * 0.1, w * 0.6, h * 0.6]), multimask_output=False)]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_predictor_gives_the_full_decoders_results(multi_bundle, samples, backend):
    split = SamPredictor(multi_bundle, backend, embedding_cache_size=0)
    full = SamPredictor(multi_bundle, backend, embedding_cache_size=0, split_decoder=False)
    assert split.uses_split_decoder and not full.uses_split_decoder
    image = samples[0].rgb
    split.set_image(image)
    full.set_image(image)
    assert split.current.context is not None and full.current.context is None
    for prompt in _prompts(image.shape[:2]):
        assert split.decoder_graph(1).role == "prompt" and full.decoder_graph(1).role == "decoder"
        m1, s1, l1 = split.predict(**prompt)
        m2, s2, l2 = full.predict(**prompt)
        assert (m1 == m2).mean() > 0.9999
        np.testing.assert_allclose(s1, s2, atol=1e-4)
        np.testing.assert_allclose(l1, l2, atol=1e-4 * max(1.0, np.abs(l2).max()))
    # a mask prior runs on the split decoder's mask variant
    prior = l1[:1]
    graph = split.decoder_graph(1, mask_input=True)
    assert graph.role == "prompt" and graph.takes_mask and not split.decoder_graph(1).takes_mask
    for clicks in (1, 2, 3):
        kwargs = dict(point_coords=np.array([[50.0 + 30 * i, 60.0 + 20 * i] for i in range(clicks)]),
                      point_labels=np.ones(clicks), mask_input=prior, multimask_output=clicks == 1)
        m1, s1, l1 = split.predict(**kwargs)
        m2, s2, l2 = full.predict(**kwargs)
        assert (m1 == m2).mean() > 0.9999
        np.testing.assert_allclose(s1, s2, atol=1e-4)
        np.testing.assert_allclose(l1, l2, atol=1e-4 * max(1.0, np.abs(l2).max()))


def test_context_runs_once_per_image_and_is_cached(tiny_bundle, samples):
    p = SamPredictor(tiny_bundle, embedding_cache_size=2)
    calls = []
    session = p.sessions["context"]
    run = session.run
    session.run = lambda feeds, interrupt=None: calls.append(1) or run(feeds, interrupt)
    image = samples[0].rgb
    p.set_image(image)
    for _ in range(3):
        p.predict(point_coords=np.array([[30, 40]]), point_labels=np.array([1]))
    p.set_image(image)  # a cache hit brings its context along
    assert len(calls) == 1 and p.current.from_cache and p.current.context is not None
    assert all(not v.flags.writeable for v in p.current.context.values())
    # an embedding set from outside gets its context computed from that embedding, not taken from elsewhere
    p.set_image_embedding(p.get_image_embedding(), p.geometry)
    assert len(calls) == 2


def test_dynamic_prompt_graph_runs_a_batch_of_prompts(tiny_bundle, samples):
    """One call, B prompts (the shape segment-everything needs): the same as B single calls."""
    p = SamPredictor(tiny_bundle)
    p.set_image(samples[0].rgb)
    session = p._decoder_session(p.bundle.prompt_graph_for(None))
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 1000, (6, 2, 2)).astype(np.float32)
    labels = np.tile(np.array([[1.0, -1.0]], np.float32), (6, 1))
    context = {name: p.current.context[name] for name in session.input_names[2:]}
    batch = session.run({"point_coords": coords, "point_labels": labels, **context})
    for i in range(6):
        one = session.run({"point_coords": coords[i:i + 1], "point_labels": labels[i:i + 1], **context})
        np.testing.assert_allclose(batch["low_res_masks"][i], one["low_res_masks"][0], atol=1e-4)
        np.testing.assert_allclose(batch["iou_predictions"][i], one["iou_predictions"][0], atol=1e-5)


def _entry(manifest: dict, file: str) -> dict:
    return next(g for g in manifest["split"]["prompts"] if g["file"] == file)


def test_manifest_split_entries_are_validated(tiny_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    path = b / "manifest.json"
    good = json.loads(path.read_text())
    for edit, words in [
        (lambda d: d["split"]["prompts"][0]["inputs"].reverse(), "split prompt graph"),
        (lambda d: d["split"]["prompts"][0]["inputs"][3].update(name="context_99"), "split prompt graph"),
        (lambda d: d["split"]["context"].update(role="decoder"), "role 'context'"),
        (lambda d: d["split"].update(prompts=[]), "split"),
        (lambda d: d["split"]["prompts"][1].update(file="../outside.onnx"), "split.prompts.1.file"),
        (lambda d: _entry(d, "prompt_p1_b3.onnx")["inputs"][1].update(shape=[2, 2]), "must share point_coords"),
        (lambda d: _entry(d, "prompt_p1_b3.onnx").update(num_points=None), "static batch > 1"),
        (lambda d: d["split"].update(masks=None), "scores and masks graphs go together"),
        (lambda d: d["split"]["scores"].update(role="prompt"), "split prompt_scores graph"),
        (lambda d: d["split"]["masks"]["inputs"].reverse(), "split prompt_masks graph"),
        (lambda d: d["split"]["masks"]["inputs"][1].update(shape=["num_prompts", 1, 1024]), "mask state"),
        (lambda d: d["split"]["scores"].update(file="../outside.onnx"), "split.scores"),
    ]:
        d = json.loads(json.dumps(good))
        edit(d)
        path.write_text(json.dumps(d))
        with pytest.raises(BundleError, match=words):
            load_bundle(b, warn_random=False)
    # a context tensor dropped from a prompt graph's entry loads (a graph may read a subset) but the graph no
    # longer matches it: refused when the session opens, before it is fed
    d = json.loads(json.dumps(good))
    d["split"]["prompts"][0]["inputs"].pop()
    path.write_text(json.dumps(d))
    p = SamPredictor(b)
    with pytest.raises(BundleError, match="not the one exported"):
        p.set_image(np.zeros((32, 32, 3), np.uint8))
        p.predict(point_coords=np.full((5, 2), 5.0), point_labels=np.ones(5))  # 5 clicks: the dynamic graph
    # a bundle without the two-stage graphs (as before 2026-12-02) decodes everything through the prompt graph
    d = json.loads(json.dumps(good))
    for key in ("scores", "masks"):
        d["split"].pop(key)
    path.write_text(json.dumps(d))
    assert not SamPredictor(b).staged_decoding()
    # a bundle without a split decoder (as before 2026-12) still loads and predicts on the full decoder
    d = json.loads(json.dumps(good))
    d.pop("split")
    path.write_text(json.dumps(d))
    p = SamPredictor(b)
    assert not p.uses_split_decoder


@pytest.mark.parametrize("split", [True, False])
def test_predict_batch_equals_single_predicts(tiny_bundle, samples, split):
    """One batched call (split decoder) or one call per prompt (full decoder): the results of B predict()s."""
    p = SamPredictor(tiny_bundle, split_decoder=split)
    image = samples[0].rgb
    p.set_image(image)
    h, w = image.shape[:2]
    rng = np.random.default_rng(3)
    pts = rng.uniform([0, 0], [w, h], (4, 2, 2))
    labels = np.array([[1, 0], [1, 1], [0, 1], [1, 1]])
    boxes = np.array([[10, 20, 200, 300], [50, 60, 400, 350], [0, 0, w, h], [100, 100, 120, 140]], float)
    _, _, low = p.predict(point_coords=pts[0, :1], point_labels=labels[0, :1])
    priors = np.repeat(low[:1][None], 4, axis=0)  # (4, 1, 256, 256)
    for kwargs, multimask in [(dict(point_coords=pts, point_labels=labels), True),
                              (dict(boxes=boxes), False),
                              (dict(point_coords=pts[:, :1], point_labels=labels[:, :1], boxes=boxes), False),
                              (dict(point_coords=pts, point_labels=labels, mask_input=priors), False)]:
        masks, scores, lows = p.predict_batch(**kwargs, multimask_output=multimask)
        assert masks.shape == (4, 3 if multimask else 1, h, w) and masks.dtype == bool
        for i in range(4):
            one = {k: (v[i] if k != "boxes" else v[i]) for k, v in kwargs.items()}
            if "boxes" in one:
                one["box"] = one.pop("boxes")
            m1, s1, l1 = p.predict(**one, multimask_output=multimask)
            assert (masks[i] == m1).mean() > 0.9999
            np.testing.assert_allclose(scores[i], s1, atol=1e-4)
            np.testing.assert_allclose(lows[i], l1, atol=1e-4 * max(1.0, np.abs(l1).max()))
    # the graph calls a benchmark times alone are predict_batch's own: the same outputs from the same feeds
    calls = p.prepared_decode_batch(pts, labels)
    if split:
        [(session, feeds)] = calls  # the dynamic prompt graph takes the whole batch at once
        out = session.run(feeds)
        _, scores, lows = p.predict_batch(point_coords=pts, point_labels=labels)  # SAM 1, multimask: masks 1..3
        np.testing.assert_array_equal(lows, out[session.output_names[0]][:, 1:])
        np.testing.assert_array_equal(scores, out[session.output_names[1]][:, 1:])
    else:
        assert calls is None  # one predict() per prompt
    with pytest.raises(InputError, match="same batch size"):
        p.predict_batch(point_coords=pts, point_labels=labels[:3])
    with pytest.raises(InputError, match=r"\(B, N, 2\)"):
        p.predict_batch(point_coords=pts[0], point_labels=labels[0])


class _ByPoint:
    """A predictor whose masks follow the clicked point: a stand-in to test the batched comparison itself."""

    def __init__(self, reverse_batch: bool = False) -> None:
        self.reverse_batch = reverse_batch

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True, return_logits=True):
        x, y = (int(v) for v in point_coords[0])
        logits = -np.ones((3 if multimask_output else 1, 48, 64), np.float32)
        logits[:, max(0, y - 4):y + 4, max(0, x - 4):x + 4] = 1.0
        return logits, np.full(len(logits), 0.5 + x / 1000, np.float32), logits[:, :16, :16]

    def predict_batch(self, point_coords=None, point_labels=None, boxes=None, multimask_output=True,
                      return_logits=True):
        rows = [self.predict(point_coords[i], point_labels[i], None if boxes is None else boxes[i], multimask_output)
                for i in range(len(point_coords))]
        rows = rows[::-1] if self.reverse_batch else rows
        return tuple(np.stack([r[k] for r in rows]) for k in range(3))


def test_batched_comparison_checks_every_row(samples):
    """compare_batch (parity and fidelity reports' batched rows) fails a batch whose rows are out of order."""
    from samedge.compare import batch_prompts, compare_batch
    sample = samples[0]
    prompts = batch_prompts(sample)
    assert [p.kwargs["point_coords"].shape for p in prompts] == [(4, 1, 2)] * 2
    assert prompts[1].kwargs["boxes"].shape == (4, 4)
    prompt = replace(prompts[0], kwargs={**prompts[0].kwargs, "point_coords": np.array([[[10, 10]], [[30, 20]],
                                                                                        [[50, 40]], [[20, 30]]])})
    good = compare_batch(_ByPoint(), _ByPoint(), prompt)
    assert good["batch"] == 4 and good["mask_iou"] == 1.0 and good["score_abs_error"] == 0.0
    bad = compare_batch(_ByPoint(), _ByPoint(reverse_batch=True), prompt)
    assert bad["mask_iou"] == 0.0 and bad["score_abs_error"] > 0.01


@pytest.mark.parametrize("model_type", ("test_tiny", "test_tiny_sam2"))
def test_scores_then_masks_equal_the_prompt_graph(model_type):
    """The prompt graph in two stages (segment everything decodes masks only for prompts that pass the
    predicted-IoU filter): the scores graph's IoUs and the masks graph's logits are the prompt graph's."""
    from samedge.export.split_decoder import MasksGraph, ScoresGraph
    from samedge.models import build_sam, randomize_weights
    model = randomize_weights(build_sam(model_type), seed=0)
    context, prompt = ContextGraph(model).eval(), PromptGraph(model).eval()
    scores, masks_graph = ScoresGraph(model).eval(), MasksGraph(model).eval()
    g = torch.Generator().manual_seed(3)
    from samedge.export.specs import spec_for
    features = [torch.randn(*s, generator=g) for s in spec_for(model).feature_shapes]
    coords, labels = _rows(4, 1, False, seed=5)
    with torch.no_grad():
        ctx = dict(zip(context.output_names, context(*features)))
        ref_masks, ref_iou = prompt(coords, labels, *(ctx[n] for n in prompt.context_names))
        iou, *state = scores(coords, labels, *(ctx[n] for n in scores.context_names))
        pick = [2, 0]  # any subset, in any order
        masks = masks_graph(*(t[pick] for t in state), *(ctx[n] for n in masks_graph.context_names))
    # the two stages read only per-image tensors the prompt graph reads
    assert set(scores.context_names) | set(masks_graph.context_names) <= set(prompt.context_names)
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=1e-6)
    scale = ref_masks.abs().max()
    assert (masks - ref_masks[pick]).abs().max() <= 1e-5 * scale
