"""Analytic FLOPs of an ONNX graph at given input shapes: 2 x multiply-adds of MatMul, Gemm, Conv, ConvTranspose
and Einsum (the rest of SAM is elementwise and under 2% of the work). ConvTranspose was left out before
2026-12: the decoder's upscaling path, 0.67 GFLOP, was missing from its count (2.85, now 3.52 GFLOP).
Shapes come from ONNX shape inference."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _dims(vi) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return None if any(d is None for d in dims) else dims


def fix_input_shapes(model, input_shapes: dict[str, tuple[int, ...]]):
    """Set the named inputs' dims in place (a dynamic graph made static for these shapes)."""
    for inp in model.graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, input_shapes[inp.name]):
                d.Clear()
                d.dim_value = int(v)
    return model


def graph_flops(path: Path, input_shapes: dict[str, tuple[int, ...]]) -> dict:
    """{"total": FLOPs, "by_op": {op: FLOPs}, "unresolved": nodes whose shapes could not be inferred}.
    Where ONNX shape inference cannot follow a dynamic graph's shape arithmetic (the split decoder's
    prompt graph), the graph is folded for the given shapes by onnxslim first and counted again."""
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    result = _count(model, input_shapes)
    if result["unresolved_nodes"] and not any(t.data_location == onnx.TensorProto.EXTERNAL
                                              for t in model.graph.initializer):
        try:
            import onnxslim
        except ImportError:
            return result
        folded = onnxslim.slim(fix_input_shapes(onnx.load(str(path)), input_shapes))
        refolded = _count(folded, {})
        if refolded["unresolved_nodes"] < result["unresolved_nodes"]:
            return {**refolded, "folded_by": f"onnxslim {onnxslim.__version__}"}
    return result


def _count(model, input_shapes: dict[str, tuple[int, ...]]) -> dict:
    import onnx
    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]  # the exporter's value_info can be stale; infer from the inputs given
    fix_input_shapes(model, input_shapes)
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {vi.name: _dims(vi) for vi in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    by_op: dict[str, int] = {}
    unresolved = 0
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "MatMulInteger", "ConvInteger"):
            continue
        ins = [shapes.get(i) for i in node.input[:2]]
        out = shapes.get(node.output[0])
        if any(s is None for s in ins) or out is None:
            unresolved += 1
            continue
        a, b = ins
        if node.op_type in ("MatMul", "MatMulInteger"):
            k = a[-1]
            flops = 2 * int(np.prod(out)) * k
        elif node.op_type == "Gemm":
            trans_a = next((att.i for att in node.attribute if att.name == "transA"), 0)
            k = a[0] if trans_a else a[-1]
            flops = 2 * int(np.prod(out)) * k
        elif node.op_type in ("Conv", "ConvInteger"):
            group = next((att.i for att in node.attribute if att.name == "group"), 1)
            flops = 2 * int(np.prod(out)) * (a[1] // group) * int(np.prod(b[2:]))
        elif node.op_type == "ConvTranspose":  # each input value meets C_out/group x kernel weights
            flops = 2 * int(np.prod(a)) * b[1] * int(np.prod(b[2:]))
        else:  # Einsum: every index of the equation once
            eq = next(att.s.decode() for att in node.attribute if att.name == "equation").replace(" ", "")
            lhs = eq.split("->")[0].split(",")
            size: dict[str, int] = {}
            for term, shape in zip(lhs, [shapes.get(i) for i in node.input]):
                if shape is None or "." in term:
                    size = {}
                    break
                size.update(zip(term, shape))
            if not size:
                unresolved += 1
                continue
            flops = 2 * int(np.prod(list(size.values())))
        by_op[node.op_type] = by_op.get(node.op_type, 0) + flops
    return {"total": sum(by_op.values()), "by_op": by_op, "unresolved_nodes": unresolved}
