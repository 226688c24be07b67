"""Exact GELU rebracketed so ONNX Runtime fuses it (export/gelu.py): every exported graph, same numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from samedge.export.gelu import rebracket_gelu


def _optimized_ops(path: Path, tmp_path: Path) -> list[str]:
    """Operator types of the graph after ORT's CPU optimisation (what a session runs)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(tmp_path / f"{path.stem}.opt.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]


def test_exported_gelu_is_fused_by_onnxruntime_and_exact(tmp_path):
    """torch writes x * (0.5 * (1 + erf(x / sqrt 2))), which ORT leaves as five passes; samedge's export writes
    it so ORT runs one BiasGelu kernel, with torch's values."""
    from samedge.export.onnx_export import _export
    module = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8)).eval()
    x = torch.randn(4, 16)
    path = tmp_path / "mlp.onnx"
    _export(module, (x,), path, ("x",), ("y",), 18)
    ops = _optimized_ops(path, tmp_path)
    assert "Erf" not in ops and {"Gelu", "BiasGelu"} & set(ops), ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, module(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def _torch_style_gelu(extra_consumer: bool) -> onnx.ModelProto:
    scalar = lambda name, v: helper.make_tensor(name, TensorProto.FLOAT, [], [v])  # noqa: E731
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["half", "a"], ["h"]),
             helper.make_node("Mul", ["x", "h"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])]
    if extra_consumer:  # the half-product is used elsewhere: rebracketing would change that use
        nodes.append(helper.make_node("Neg", ["h"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [3]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])], outputs,
                              [scalar("sqrt2", 2 ** 0.5), scalar("one", 1.0), scalar("half", 0.5)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("extra_consumer", (False, True))
def test_rebracketing_keeps_values_and_leaves_shared_products_alone(extra_consumer):
    model = _torch_style_gelu(extra_consumer)
    x = np.array([-2.0, 0.3, 1.7], np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert rebracket_gelu(model) == (0 if extra_consumer else 1)
    onnx.checker.check_model(model)
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    expected = x * 0.5 * (1 + np.vectorize(__import__("math").erf)(x / 2 ** 0.5))
    np.testing.assert_allclose(after[0], expected, rtol=1e-6)


def test_every_graph_of_a_bundle_has_its_gelus_fused(tiny_bundle, tmp_path):
    """The encoder (ViT MLPs), the decoders and the split prompt graphs (output upscaling) as ORT runs them."""
    graphs = sorted(tiny_bundle.glob("*.onnx"))
    assert {"encoder.onnx", "decoder.onnx", "prompt.onnx"} <= {p.name for p in graphs}
    for path in graphs:
        ops = _optimized_ops(path, tmp_path)
        assert "Erf" not in ops, f"{path.name}: {ops.count('Erf')} GELUs left unfused"
