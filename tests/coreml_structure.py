"""Checks of a converted .mlpackage that need no Mac: I/O, shapes, program type, per-op precision."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path


def op_output_dtypes(package: Path) -> dict[str, Counter]:
    """MIL op type -> Counter of its outputs' data types, read from the saved program."""
    import coremltools as ct
    from coremltools.proto import MIL_pb2
    spec = ct.utils.load_spec(str(package))
    fn = spec.mlProgram.functions["main"]
    out: dict[str, Counter] = defaultdict(Counter)
    for op in fn.block_specializations[fn.opset].operations:
        for o in op.outputs:
            out[op.type][MIL_pb2.DataType.Name(o.type.tensorType.dataType)] += 1
    return out


def check_mlpackage(package: Path, graph, fp32_ops: tuple[str, ...], compute_precision: str = "fp16") -> None:
    import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2
    spec = ct.utils.load_spec(str(package))
    assert spec.WhichOneof("Type") == "mlProgram"
    f32 = FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    for desc, expected in ((spec.description.input, graph.inputs), (spec.description.output, graph.outputs)):
        assert [d.name for d in desc] == [t.name for t in expected]
        for d, t in zip(desc, expected):
            assert tuple(d.type.multiArrayType.shape) == tuple(t.shape), (d.name, d.type.multiArrayType.shape)
            assert d.type.multiArrayType.dataType == f32, d.name  # fp32 I/O: the contract holds on every backend
    meta = dict(spec.description.metadata.userDefined)
    assert meta["samedge.compute_precision"] == compute_precision
    dtypes = op_output_dtypes(package)
    heavy = [t for t in ("linear", "matmul", "conv") if t in dtypes]
    assert heavy, dict(dtypes)
    for t in heavy:  # the heavy ops really run in the compute precision
        want = "FLOAT16" if compute_precision == "fp16" else "FLOAT32"
        assert set(dtypes[t]) == {want}, (t, dtypes[t])
    kept = [t for t in fp32_ops if t in dtypes]
    assert "layer_norm" in kept or "reduce_mean" in kept, sorted(dtypes)
    for t in kept:  # the precision policy: these stay fp32
        assert set(dtypes[t]) == {"FLOAT32"}, (t, dtypes[t])
