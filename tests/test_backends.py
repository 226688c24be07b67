"""Backends, devices, selection, conversion, embedding cache and async encoding (issue 3)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from samedge import SamPredictor
from samedge.bundle import load_bundle
from samedge.errors import BackendUnavailableError, BundleError, InputError, RunInterrupted
from samedge.export.convert import ConvertConfig, add_formats, measure_fidelity
from samedge.export.coreml_convert import DEFAULT_FP32_OPS
from samedge.runtimes import Interrupt, SessionOptions, list_devices, open_session
from samedge.runtimes.selection import choose


def _photo(samples, i=0):
    return samples[i].rgb


# -- conversion and fidelity ------------------------------------------------------------------------
def test_openvino_conversion_is_parity_gated_and_recorded(multi_bundle):
    m = load_bundle(multi_bundle).manifest
    assert m.formats == ("onnx", "openvino", "coreml")
    ov = m.converted["openvino"]
    assert [g.num_points for g in ov.decoders] == [g.num_points for g in m.decoders]  # dynamic + static 1, 2
    parity = ov.conversion["parity"]
    assert parity["passed"] and parity["precision"] == "f32" and parity["summary"]["min_mask_iou"] >= 0.99
    assert ov.encoder.external_data.endswith(".bin") and ov.encoder.external_data_bytes > 0
    report = json.loads((multi_bundle / "fidelity" / "openvino-cpu-f32.json").read_text())
    assert report["backend"] == "openvino" and report["executes_on"] == ["CPU"]


def test_openvino_matches_onnxruntime(multi_bundle, samples):
    ort = SamPredictor(multi_bundle, "onnxruntime")
    ov = SamPredictor(multi_bundle, "openvino")
    for p in (ort, ov):
        p.set_image(_photo(samples))
    emb_ort, emb_ov = ort.get_image_embedding(), ov.get_image_embedding()
    assert np.abs(emb_ort - emb_ov).max() < 1e-3 * np.abs(emb_ort).max()
    kw = {"point_coords": np.array([[100.0, 120.0], [300.0, 200.0]]), "point_labels": np.array([1, 0])}
    (m1, s1, l1), (m2, s2, l2) = ort.predict(**kw), ov.predict(**kw)
    assert np.abs(l1 - l2).max() < 1e-3 and np.abs(s1 - s2).max() < 1e-4
    assert (m1 != m2).mean() < 1e-3
    assert ov.sessions["encoder"].info.precision == "f32"


def test_openvino_run_owns_its_outputs_and_run_borrowed_lends_them(tmp_path):
    """run() must hand back copies (the request reuses its buffers); run_borrowed() hands back the buffers."""
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops
    x = ops.parameter([-1, 4], ov.Type.f32, name="x")
    ov.save_model(ov.Model([ops.multiply(x, ops.constant(np.float32(2)))], [x]), str(tmp_path / "double.xml"))
    session = open_session(tmp_path / "double.xml", "openvino", "cpu")
    name = session.output_names[0]
    first = session.run({"x": np.ones((3, 4), np.float32)})[name]
    session.run({"x": np.full((3, 4), 5, np.float32)})
    np.testing.assert_array_equal(first, 2.0)
    lent = session.run_borrowed({"x": np.ones((3, 4), np.float32)})[name]
    np.testing.assert_array_equal(lent, 2.0)
    session.run({"x": np.full((3, 4), 5, np.float32)})
    np.testing.assert_array_equal(lent, 10.0)  # the same buffer, overwritten: why callers must copy in time


def test_openvino_streams_split_a_batch_and_join_it_in_order(tmp_path):
    """streams > 1: the rows of a batch run on parallel streams, the outputs joined in row order, equal to one
    stream; the fixed (non-batch) inputs go whole to every stream."""
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops
    x = ops.parameter([-1, 4], ov.Type.f32, name="x")
    w = ops.parameter([1, 4], ov.Type.f32, name="w")
    ov.save_model(ov.Model([ops.add(ops.multiply(x, w), ops.constant(np.float32(1)))], [x, w]), str(tmp_path / "rows.xml"))
    one = open_session(tmp_path / "rows.xml", "openvino", "cpu")
    two = open_session(tmp_path / "rows.xml", "openvino", "cpu", SessionOptions(streams=2))
    assert two.info.details["streams"] == 2 and one.info.details["streams"] == 1
    weights = np.array([[1, 2, 3, 4]], np.float32)
    for batch in (1, 2, 5):
        rows = np.arange(batch * 4, dtype=np.float32).reshape(batch, 4)
        expected = rows * weights + 1
        for session in (one, two):
            for run in (session.run, session.run_borrowed):
                np.testing.assert_array_equal(run({"x": rows, "w": weights})[session.output_names[0]], expected)
    # a graph with an output that is not per batch row cannot be split: refused when opened
    s = ops.reduce_sum(x, ops.constant(np.array([0], np.int64)), keep_dims=False)
    ov.save_model(ov.Model([s], [x]), str(tmp_path / "total.xml"))
    with pytest.raises(InputError, match="first \\(batch\\) dimension"):
        open_session(tmp_path / "total.xml", "openvino", "cpu", SessionOptions(streams=2))
    with pytest.raises(InputError, match="streams must be a positive integer"):
        SessionOptions(streams=0)


def test_streams_are_an_openvino_cpu_option(tiny_bundle):
    with pytest.raises(InputError, match="OpenVINO CPU option"):
        open_session(tiny_bundle / "prompt_scores.onnx", "onnxruntime", "cpu", SessionOptions(streams=2))
    with pytest.raises(InputError, match="OpenVINO CPU option.*runs on onnxruntime cpu"):  # refused at once
        SamPredictor(tiny_bundle, backend="onnxruntime", options=SessionOptions(streams=2))


def test_the_staged_prompt_graphs_run_on_streams_on_openvino(multi_bundle, samples):
    from samedge.cpu import usable_cores
    p = SamPredictor(multi_bundle, backend="openvino")
    q = SamPredictor(multi_bundle, backend="openvino", options=SessionOptions(streams=1))
    # a user's streams reach the staged graphs only: the encoder (per-image outputs) keeps one stream
    r = SamPredictor(multi_bundle, backend="openvino", options=SessionOptions(streams=2))
    coords = np.array([[[20.0, 30.0]], [[200.0, 100.0]], [[90.0, 250.0]]])
    labels = np.ones((3, 1))
    scored = []
    for predictor in (p, q, r):
        predictor.set_image(samples[0].rgb)
        s = predictor.decode_scores(coords, labels)
        scored.append((s.scores.copy(), predictor.decode_masks(s, np.array([0, 2]))))
    np.testing.assert_array_equal(scored[0][0], scored[1][0])
    np.testing.assert_array_equal(scored[0][1], scored[1][1])
    np.testing.assert_array_equal(scored[0][0], scored[2][0])
    np.testing.assert_array_equal(scored[0][1], scored[2][1])
    streams = {name: s.info.details["streams"] for name, s in p.sessions.items()}
    assert streams["openvino/prompt_scores.xml"] == streams["openvino/prompt_masks.xml"] == min(usable_cores(), 4)
    assert streams["encoder"] == 1  # the rest keep the latency setting
    assert {s.info.details["streams"] for s in q.sessions.values()} == {1}
    given = {name: s.info.details["streams"] for name, s in r.sessions.items()}
    # (OpenVINO compiles at most one stream per core)
    staged = {given.pop("openvino/prompt_scores.xml"), given.pop("openvino/prompt_masks.xml")}
    assert staged == {min(usable_cores(), 2)}
    assert set(given.values()) == {1}


def test_default_precision_is_measured_and_named(multi_bundle):
    from samedge.runtimes.openvino import default_cpu_precision
    report = measure_fidelity(multi_bundle, "openvino", "cpu", "default", parity_images=1)
    assert report["precision"] == default_cpu_precision()  # bf16 on AMX / AVX512-bf16 CPUs, f32 elsewhere
    # every full decoder and every split prompt graph answered prompts (the mask variants with a prior), and
    # the scores + masks pair batched point prompts
    conv = load_bundle(multi_bundle, warn_random=False).manifest.converted["openvino"]
    staged = f"{conv.split.scores.file}+{conv.split.masks.file}"
    graphs = {g.file for g in (*conv.decoders, *conv.split.prompts)}
    assert {p["decoder"] for p in report["prompts"]} == graphs | {staged}
    if report["precision"] == "f32":  # then "default" is exactly samedge's f32 and must pass export parity
        assert report["passed"] and report["summary"]["min_mask_iou"] >= 0.99
    else:  # bf16 moves logits near the threshold (MobileSAM: mean 0.951), a broken conversion lands far below
        assert report["summary"]["mean_mask_iou"] > 0.5 and report["summary"]["min_embedding_cosine"] > 0.99


def test_coreml_packages_have_the_contract_structure(multi_bundle):
    from coreml_structure import check_mlpackage
    m = load_bundle(multi_bundle).manifest
    coreml = m.converted["coreml"]
    assert [g.num_points for g in coreml.decoders] == [1, 2]  # static only, copied from the bundle
    assert coreml.conversion["compute_precision"] == "fp16" and "layer_norm" in coreml.conversion["fp32_ops"]
    for graph in (coreml.encoder, *coreml.decoders):
        assert (multi_bundle / graph.file).is_dir() and graph.file.endswith(".mlpackage")
        check_mlpackage(multi_bundle / graph.file, graph, DEFAULT_FP32_OPS)


def test_coreml_fp32_conversion(tiny_bundle, tmp_path):
    from coreml_structure import check_mlpackage

    from samedge.export.coreml_convert import CoreMLConfig
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    m = add_formats(b, ConvertConfig(("coreml",), coreml=CoreMLConfig((3,), compute_precision="fp32")))
    graph = m.converted["coreml"].decoders[0]
    assert graph.num_points == 3 and graph.inputs[1].shape == (1, 4, 2)
    check_mlpackage(b / graph.file, graph, DEFAULT_FP32_OPS, compute_precision="fp32")


@pytest.mark.skipif(sys.platform != "darwin", reason="CoreML prediction needs macOS; structure is tested above")
def test_coreml_parity_on_macos(multi_bundle):
    report = measure_fidelity(multi_bundle, "coreml", "cpu", parity_images=1)
    assert report["summary"]["min_mask_iou"] >= 0.97  # fp16 compute: a little below the f32 limit


def test_failed_conversion_leaves_the_bundle_as_it_was(tiny_bundle, tmp_path, monkeypatch):
    from samedge.export.parity import ParityThresholds
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    before = (b / "manifest.json").read_text()
    with pytest.raises(Exception, match="parity"):
        add_formats(b, ConvertConfig(("openvino",), parity_images=1,
                                     thresholds=ParityThresholds(min_mask_iou=1.01)))
    assert (b / "manifest.json").read_text() == before and not (b / "openvino").exists()
    assert not [p for p in b.iterdir() if p.name.startswith(".")]
    load_bundle(b)


def test_converting_twice_needs_overwrite(multi_bundle):
    with pytest.raises(InputError, match="already has openvino graphs; pass --overwrite"):
        add_formats(multi_bundle, ConvertConfig(("openvino",), parity_images=1))


def test_truncated_ir_weights_are_caught(multi_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(multi_bundle, b)
    binf = b / "openvino" / "encoder.bin"
    binf.write_bytes(binf.read_bytes()[:-100])
    with pytest.raises(BundleError, match="encoder.bin is .* bytes but the manifest says"):
        load_bundle(b)


def test_version_1_manifest_still_loads(tiny_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    d = json.loads((b / "manifest.json").read_text())
    d["format_version"] = 1
    d.pop("converted")
    d.pop("family"), d.pop("processing")  # format_version 4 fields
    for g in [d["encoder"], *d["decoders"]]:
        g.pop("external_data_bytes")
    (b / "manifest.json").write_text(json.dumps(d))
    assert load_bundle(b).manifest.formats == ("onnx",)


# -- typed errors ---------------------------------------------------------------------------------------
def test_bundle_lacking_the_backends_format(tiny_bundle):
    with pytest.raises(BundleError, match="no openvino graphs.*samedge convert BUNDLE --format openvino"):
        SamPredictor(tiny_bundle, "openvino")


def test_unknown_and_unavailable_devices(multi_bundle):
    with pytest.raises(InputError, match="unknown device 'tpu'; allowed: cpu, gpu, npu or auto"):
        SamPredictor(multi_bundle, device="tpu")
    with pytest.raises(InputError, match="unknown backend 'tensorflow'"):
        SamPredictor(multi_bundle, backend="tensorflow")
    with pytest.raises(BackendUnavailableError, match="no gpu execution provider.*onnxruntime-gpu"):
        SamPredictor(multi_bundle, "onnxruntime", "gpu")
    with pytest.raises(BackendUnavailableError, match="OpenVINO sees no NPU device"):
        SamPredictor(multi_bundle, "openvino", "npu")
    with pytest.raises(BackendUnavailableError, match="CoreML prediction needs macOS"):
        if sys.platform == "darwin":
            pytest.skip("this Mac runs CoreML")
        SamPredictor(multi_bundle, "coreml", "cpu")
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider is not in this onnxruntime build"):
        SamPredictor(multi_bundle, options=SessionOptions(provider="TensorrtExecutionProvider"))
    with pytest.raises(InputError, match="threads must be a positive integer"):
        SamPredictor(multi_bundle, threads=0)


def test_static_shape_device_names_the_supported_point_counts(multi_bundle, samples, monkeypatch):
    """A device that compiles fixed shapes (NPU, CoreML) only gets static decoders; here the OpenVINO CPU
    plays that role so the real code path runs without an NPU."""
    from samedge.runtimes import openvino as ov_backend
    monkeypatch.setattr(ov_backend, "needs_static_shapes", lambda device: True)
    p = SamPredictor(multi_bundle, "openvino", "cpu")
    p.set_image(_photo(samples))
    p.predict(np.array([[10.0, 10.0]]), np.array([1]))  # 1 click: the split decoder's static prompt_p1
    assert "openvino/prompt_p1.xml" in p.sessions
    p.predict(np.array([[10.0, 10.0]]), np.array([1]), mask_input=np.zeros((1, 256, 256), np.float32))
    assert "openvino/prompt_mask_p1.xml" in p.sessions
    with pytest.raises(BundleError, match=r"no openvino decoder for 3 clicks .*openvino on cpu needs static shapes.*"
                                          r"take \[1, 2\] clicks"):
        p.predict(np.array([[10.0, 10.0], [20, 20], [30, 30]]), np.array([1, 1, 0]))
    # predict_batch in calls of the static batch graph (3 prompts each, the last call padded): B predict()s
    assert p.batch_decoder_graph(1).file == "openvino/prompt_p1_b3.xml"
    pts = np.random.default_rng(0).uniform(0, 60, (5, 1, 2))
    masks, scores, low = p.predict_batch(pts, np.ones((5, 1)))
    assert "openvino/prompt_p1_b3.xml" in p.sessions and masks.shape[:2] == (5, 3)
    for i in range(5):
        m1, s1, l1 = p.predict(pts[i], np.ones(1))
        assert (masks[i] == m1).mean() > 0.9999
        np.testing.assert_allclose(scores[i], s1, atol=1e-5)
        np.testing.assert_allclose(low[i], l1, atol=1e-4 * max(1.0, np.abs(l1).max()))


@pytest.mark.parametrize("module,backend,extra", [("onnxruntime", "onnxruntime", "ort"),
                                                  ("openvino", "openvino", "openvino")])
def test_missing_optional_dependency_names_the_extra(multi_bundle, monkeypatch, module, backend, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    if backend == "openvino":
        from samedge.runtimes import openvino as ov_backend
        monkeypatch.setattr(ov_backend, "_core", None)
    with pytest.raises(BackendUnavailableError, match=rf"pip install 'samedge\[{extra}\]'"):
        SamPredictor(multi_bundle, backend)
    statuses = [s for s in list_devices() if s.backend == backend]
    assert all(not s.available and "library missing" in s.detail for s in statuses)


def test_pinned_static_decoder_with_the_wrong_click_count(multi_bundle, samples):
    p = SamPredictor(multi_bundle)
    p.set_image(_photo(samples))
    p.pinned_decoder = p.bundle.decoder_for(2)
    with pytest.raises(InputError, match="takes 2 clicks .* this prompt has 1"):
        p.predict(np.array([[10.0, 10.0]]), np.array([1]))


# -- selection and devices -----------------------------------------------------------------------------------
def test_auto_selection_follows_the_documented_order():
    c = choose("auto", "auto", ("onnx",))
    assert (c.backend, c.device) == ("onnxruntime", "cpu")
    assert any(s.startswith("coreml/auto: the bundle has no coreml") for s in c.skipped)
    assert any(s.startswith("onnxruntime/gpu:") for s in c.skipped)
    assert any(s.startswith("openvino/auto: the bundle has no openvino") for s in c.skipped)
    c = choose("auto", "auto", ("onnx", "openvino"))
    assert (c.backend, c.device) == ("openvino", "auto") and "AUTO plugin" in c.reason
    c = choose("auto", "cpu", ("onnx", "openvino", "coreml"))
    assert (c.backend, c.device) == ("openvino", "cpu")
    with pytest.raises(BackendUnavailableError, match="no backend can run this bundle on npu"):
        choose("auto", "npu", ("onnx", "openvino"))


def test_split_devices_and_auto_in_the_predictor(multi_bundle, samples, caplog):
    import logging
    with caplog.at_level(logging.INFO, logger="samedge.predictor"):
        p = SamPredictor(multi_bundle, "auto", "auto", decoder_device="cpu")
    assert p.backend == "openvino" and (p.encoder_device, p.decoder_device) == ("auto", "cpu")
    assert "encoder: openvino on auto" in caplog.text and "skipped coreml/auto" in caplog.text
    p.set_image(_photo(samples))
    masks, scores, _ = p.predict(np.array([[50.0, 60.0]]), np.array([1]))
    assert masks.shape[0] == 3 and np.isfinite(scores).all()
    assert p.sessions["encoder"].info.executes_on == ("CPU",)


def test_devices_cli_lists_every_pair(capsys):
    from samedge.cli import main
    assert main(["devices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    pairs = {(r["backend"], r["device"]): r for r in rows}
    assert set(pairs) == {(b, d) for b in ("onnxruntime", "openvino", "coreml") for d in ("cpu", "gpu", "npu")}
    assert pairs[("onnxruntime", "cpu")]["available"] and pairs[("openvino", "cpu")]["available"]
    assert all(r["detail"] for r in rows)  # a reason for every unavailable pair
    assert main(["devices"]) == 0
    text = capsys.readouterr().out
    assert "onnxruntime cpu  yes" in text and "coreml" in text


def test_ort_session_reports_placement_and_caches_the_optimised_graph(tiny_bundle, tmp_path):
    opts = SessionOptions(threads=1, cache_dir=tmp_path / "cache")
    first = open_session(tiny_bundle / "decoder.onnx", "onnxruntime", "cpu", opts)
    placement = first.info.details["nodes_per_provider"]
    assert set(placement) == {"CPUExecutionProvider"} and placement["CPUExecutionProvider"] > 50
    cached = Path(first.info.details["optimized_model_cache"])
    assert cached.is_file()
    second = open_session(tiny_bundle / "decoder.onnx", "onnxruntime", "cpu", opts)
    assert second.info.details["optimization_level"] == "disable"  # loaded the already-optimised graph
    rng = np.random.default_rng(0)
    feeds = {"image_embeddings": rng.standard_normal((1, 256, 64, 64), np.float32),
             "point_coords": np.array([[[10.0, 20.0], [0, 0]]], np.float32),
             "point_labels": np.array([[1, -1]], np.float32),
             "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32)}
    a, b = first.run(feeds), second.run(feeds)
    np.testing.assert_allclose(a["low_res_masks"], b["low_res_masks"], atol=1e-5)


# -- embedding cache and async encoding ---------------------------------------------------------------------
class _CountingEncoder:
    """Wraps the real encoder session: counts runs and can hold background (async) runs until released."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.input_names, self.output_names, self.info = inner.input_names, inner.output_names, inner.info
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def run(self, feeds, interrupt=None):
        self.calls += 1
        if threading.current_thread().name.startswith("samedge-encoder"):
            self.started.set()
            for _ in range(6000):  # up to 60 s, as a long encode would: stoppable by its interrupt
                if self.gate.wait(0.01) or (interrupt is not None and interrupt.is_set):
                    break
            if interrupt is not None:
                interrupt.check("held encode")
            assert self.gate.is_set()
        return self.inner.run(feeds, interrupt)


def _counting(p: SamPredictor) -> _CountingEncoder:
    p._encoder = _CountingEncoder(p._encoder)
    return p._encoder


def test_embedding_cache_is_keyed_by_content_and_lru(tiny_bundle, samples):
    p = SamPredictor(tiny_bundle, embedding_cache_size=2)
    enc = _counting(p)
    a, b, c = _photo(samples, 0), _photo(samples, 1), _photo(samples, 0)[::-1].copy()
    p.set_image(a)
    first = p.get_image_embedding()
    p.set_image(a.copy())  # same content, another array: a hit
    assert enc.calls == 1 and p.current.from_cache and np.array_equal(p.get_image_embedding(), first)
    p.set_image(a, "BGR")  # other channel order is another image
    assert enc.calls == 2
    p.set_image(b)
    p.set_image(c)  # capacity 2: evicts the least recently used (a as RGB... then a as BGR)
    p.set_image(a)
    assert enc.calls == 5 and len(p.embedding_cache) == 2
    off = SamPredictor(tiny_bundle, embedding_cache_size=0)
    enc_off = _counting(off)
    off.set_image(a)
    off.set_image(a)
    assert enc_off.calls == 2
    with pytest.raises(InputError, match="embedding cache size"):
        SamPredictor(tiny_bundle, embedding_cache_size=-1)


def test_embedding_round_trip_gives_identical_masks(tiny_bundle, samples):
    p = SamPredictor(tiny_bundle)
    p.set_image(_photo(samples))
    saved = p.current
    kw = {"point_coords": np.array([[40.0, 50.0]]), "point_labels": np.array([1])}
    before = p.predict(**kw)
    p.set_image(_photo(samples, 1))
    p.set_image_embedding(saved)
    after = p.predict(**kw)
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x, y)
    p.set_image_embedding(saved.embedding, saved.geometry)
    np.testing.assert_array_equal(p.predict(**kw)[1], before[1])
    with pytest.raises(InputError, match="needs the image's geometry"):
        p.set_image_embedding(saved.embedding)
    with pytest.raises(InputError, match=r"float32 array of shape \(1, 256, 64, 64\)"):
        p.set_image_embedding(saved.embedding[:, :128], saved.geometry)
    with pytest.raises(InputError, match="embedding contains NaN"):  # an ImageEmbedding is checked too
        p.set_image_embedding(replace(saved, embedding=np.full_like(saved.embedding, np.nan)))
    with pytest.raises(InputError, match="geometry must be a samedge.processing.ImageGeometry"):
        p.set_image_embedding(saved.embedding, (375, 500))
    np.testing.assert_array_equal(p.predict(**kw)[1], before[1])  # the bad calls changed nothing


def test_an_encoder_that_outputs_nan_is_a_bundle_error(tiny_bundle, samples):
    p = SamPredictor(tiny_bundle)

    class NanEncoder:
        input_names, output_names, info = p._encoder.input_names, p._encoder.output_names, p._encoder.info

        def run(self, feeds, interrupt=None):
            return {self.output_names[0]: np.full((1, 256, 64, 64), np.nan, np.float32)}
    p._encoder = NanEncoder()
    with pytest.raises(BundleError, match="encoder of .* output contains NaN or Inf"):
        p.set_image(_photo(samples))
    assert not p.is_image_set


def test_coreml_rejects_runtime_options(multi_bundle, monkeypatch):
    from samedge.runtimes import coreml
    monkeypatch.setattr(coreml, "_check_platform", lambda: None)  # get past the macOS check on Linux
    for options in (SessionOptions(threads=2), SessionOptions(streams=2)):
        with pytest.raises(InputError, match="coreml backend takes no threads/precision/provider/streams options"):
            coreml.CoreMLSession(multi_bundle / "coreml" / "encoder.mlpackage", "cpu", options)


def test_set_image_async_keeps_decoding_on_the_last_embedding(tiny_bundle, samples):
    p = SamPredictor(tiny_bundle, embedding_cache_size=0)
    enc = _counting(p)
    first, second = _photo(samples, 0), _photo(samples, 1)
    p.set_image(first)
    emb_first = p.get_image_embedding()
    enc.gate.clear()
    enc.started.clear()
    frame = second.copy()
    future = p.set_image_async(frame)
    assert enc.started.wait(30)
    frame[:] = 0  # the caller reuses its buffer: the predictor copied it
    # the encoder is busy: predict still runs, on the first image
    masks, _, _ = p.predict(np.array([[10.0, 10.0]]), np.array([1]))
    assert masks.shape[1:] == first.shape[:2] and np.array_equal(p.get_image_embedding(), emb_first)
    enc.gate.set()
    item = future.result(timeout=60)
    assert p.current is item and item.geometry.original_hw == second.shape[:2] and item.encode_ms > 0
    sync = SamPredictor(tiny_bundle)
    sync.set_image(second)
    np.testing.assert_array_equal(item.embedding, sync.get_image_embedding())
    p.close()


def test_a_stale_async_result_never_replaces_a_newer_image(tiny_bundle, samples):
    p = SamPredictor(tiny_bundle, embedding_cache_size=0)
    enc = _counting(p)
    enc.gate.clear()
    future = p.set_image_async(_photo(samples, 0))
    assert enc.started.wait(30)
    p.set_image(_photo(samples, 1))  # newer, synchronous, done while the async one is held
    enc.gate.set()
    future.result(timeout=60)  # finishes last, and must not win
    assert p.original_size == _photo(samples, 1).shape[:2]
    enc.gate.clear()
    enc.started.clear()
    future = p.set_image_async(_photo(samples, 0))
    assert enc.started.wait(30)
    p.reset_image()
    enc.gate.set()
    future.result(timeout=60)
    assert not p.is_image_set  # reset wins over the result that was in flight
    p.close()


def test_preempt_stops_a_running_encode_and_encodes_the_new_image_at_once(tiny_bundle, samples):
    p = SamPredictor(tiny_bundle, embedding_cache_size=0)
    enc = _counting(p)
    enc.gate.clear()
    old = p.set_image_async(_photo(samples, 0))
    assert enc.started.wait(30)  # running, held at the gate as a long encode would be
    newer = p.set_image_async(_photo(samples, 1), preempt=True)
    with pytest.raises(RunInterrupted, match="interrupted"):
        old.result(timeout=30)  # stopped while running, without the gate ever opening
    enc.gate.set()
    item = newer.result(timeout=60)
    assert p.current is item and p.original_size == _photo(samples, 1).shape[:2]
    sync = SamPredictor(tiny_bundle)
    sync.set_image(_photo(samples, 1))
    np.testing.assert_array_equal(item.embedding, sync.get_image_embedding())
    # without preempt a running encode finishes, and a finished one is not touched by a later preempt
    enc.gate.clear()
    enc.started.clear()
    first = p.set_image_async(_photo(samples, 0))
    assert enc.started.wait(30)
    second = p.set_image_async(_photo(samples, 1))
    enc.gate.set()
    assert first.result(timeout=60).geometry.original_hw == _photo(samples, 0).shape[:2]
    second.result(timeout=60)
    third = p.set_image_async(_photo(samples, 0), preempt=True)
    assert third.result(timeout=60) is p.current and second.exception() is None
    with pytest.raises(InputError, match="preempt"):
        p.set_image_async(_photo(samples, 0), preempt="yes")
    p.close()


def _slow_graph(path: Path, matmuls: int = 60, dim: int = 1024) -> np.ndarray:
    """A chain of dim x dim matmuls (seconds on one core): an input that can be stopped mid-run."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.eye(dim, dtype=np.float32), "W")  # identity: the output equals the input
    nodes = [helper.make_node("MatMul", [f"y{i - 1}" if i else "x", "W"], [f"y{i}"]) for i in range(matmuls)]
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dim, dim])],
                              [helper.make_tensor_value_info(f"y{matmuls - 1}", TensorProto.FLOAT, [dim, dim])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return np.random.default_rng(0).random((dim, dim), dtype=np.float32)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_an_interrupt_stops_a_run_in_the_middle_and_the_session_keeps_working(backend, tmp_path):
    if backend == "openvino":
        pytest.importorskip("openvino")
    x = _slow_graph(tmp_path / "slow.onnx")
    session = open_session(tmp_path / "slow.onnx", backend, "cpu", SessionOptions(threads=1))
    interrupt, outcome = Interrupt(), {}

    def run():
        try:
            outcome["out"] = session.run({"x": x}, interrupt)
        except RunInterrupted as exc:
            outcome["error"] = exc
    worker = threading.Thread(target=run)
    worker.start()
    worker.join(0.3)  # 60 GFLOP-scale chain on one thread: seconds, so it is still running here
    assert worker.is_alive()
    interrupt.set()
    worker.join(60)
    assert not worker.is_alive() and "out" not in outcome and "slow.onnx" in str(outcome["error"])
    with pytest.raises(RunInterrupted):  # a set Interrupt refuses to start a run
        session.run({"x": x}, interrupt)
    fresh = Interrupt()
    out = session.run({"x": x}, fresh)  # the session is usable again, and gives the right numbers
    fresh.set()  # set after its run ended: touches nothing
    np.testing.assert_allclose(out[session.output_names[0]], x, rtol=1e-6)
    np.testing.assert_allclose(session.run({"x": x})[session.output_names[0]], x, rtol=1e-6)


def test_cli_convert_fidelity_and_run_on_openvino(tiny_bundle, tmp_path, capsys):
    from samedge.cli import main
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    assert main(["convert", str(b), "--format", "openvino", "--parity-images", "1"]) == 0
    # encoder, 3 decoders, context, 6 prompt graphs, the 2 static-batch ones and the scores + masks pair
    assert "openvino: 15 graphs" in capsys.readouterr().out
    assert main(["convert", str(b), "--format", "onnx"]) == 2
    assert main(["fidelity", str(b), "--parity-images", "1"]) == 0
    report = json.loads((b / "fidelity" / "onnxruntime-cpu-fp32.json").read_text())
    assert report["passed"] and report["precision"] == "fp32"
    assert main(["fidelity", str(b), "--backend", "openvino", "--parity-images", "1", "--min-mask-iou", "1.01"]) == 3
    assert "FAIL: mask IoU" in capsys.readouterr().out
    out = tmp_path / "o.png"
    assert main(["run", "sample:voc", "--bundle", str(b), "--point", "250,180", "--out", str(out),
                 "--backend", "openvino"]) == 0
    assert out.is_file() and "ran on openvino cpu (CPU, precision f32)" in capsys.readouterr().out
    assert main(["run", "sample:voc", "--bundle", str(b), "--point", "250,180", "--out", str(out),
                 "--backend", "coreml"]) == 2
    assert "no coreml graphs" in capsys.readouterr().err
