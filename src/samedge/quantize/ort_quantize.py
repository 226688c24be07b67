"""ONNX Runtime quantization of one graph: dynamic int8, static QDQ int8, fp16."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx

from ..errors import ExportError
from .methods import OrtDynamicInt8, OrtFp16, OrtStaticInt8

log = logging.getLogger(__name__)


def _clean(src: Path, dst: Path) -> Path:
    """Drop the dynamo exporter's stale value_info: it breaks the quantizer's shape inference."""
    model = onnx.load(str(src))
    del model.graph.value_info[:]
    onnx.save_model(model, str(dst))
    return dst


def nodes_for_role(names: tuple[str, ...], role: str) -> set[str]:
    """Node names that apply to one graph: "NAME" applies to every graph, "ROLE:NAME" to that role's only
    (exported graphs reuse names like node_MatMul_113, so a name alone can hit the wrong graph)."""
    out = set()
    for entry in names:
        scope, sep, name = entry.rpartition(":")
        if not sep or scope == role:
            out.add(name)
    return out


def _excluded_nodes(path: Path, method, role: str) -> list[str]:
    model = onnx.load(str(path), load_external_data=False)
    keep_types = set(method.keep_fp32_op_types)
    names = {n.name for n in model.graph.node if n.op_type in keep_types} | nodes_for_role(method.keep_fp32_nodes, role)
    # ORT's quantizer first splits a Gemm into MatMul + Add and names the MatMul "<gemm>_MatMul"; the
    # exclusion list is matched after that split, so a Gemm is excluded under both names
    gemms = {n.name for n in model.graph.node if n.op_type == "Gemm"}
    if isinstance(method, OrtStaticInt8) and not method.quantize_attention_matmuls:
        weights = {i.name for i in model.graph.initializer}
        names |= {n.name for n in model.graph.node
                  if n.op_type == "MatMul" and not any(i in weights for i in n.input)}
    return sorted(names | {f"{n}_MatMul" for n in names & gemms})


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a list of feeds; len + set_range let ORT calibrate
    in strides (CalibStridedMinMax) and fold ranges between them."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._it = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._feeds[start_index:end_index])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # the calibrators iterate once
        pass


def quantize_graph(method, src: Path, dst: Path, calibration: Iterable[dict[str, np.ndarray]] | None = None,
                   role: str = "encoder") -> None:
    from onnxruntime import quantization as q
    with tempfile.TemporaryDirectory() as tmp:
        clean = _clean(src, Path(tmp) / "clean.onnx")
        exclude = _excluded_nodes(clean, method, role)
        try:
            if isinstance(method, OrtDynamicInt8):
                q.quantize_dynamic(clean, dst, op_types_to_quantize=list(method.op_types),
                                   per_channel=method.per_channel, weight_type=q.QuantType.QInt8,
                                   reduce_range=method.resolved_int8_scheme() == "reduce-range",
                                   nodes_to_exclude=exclude)
            elif isinstance(method, OrtStaticInt8):
                calibrate = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
                             "entropy": q.CalibrationMethod.Entropy}[method.calibrator]
                q.quantize_static(clean, dst, _Reader(calibration or []), quant_format=q.QuantFormat.QDQ,
                                  op_types_to_quantize=list(method.op_types), per_channel=method.per_channel,
                                  reduce_range=method.resolved_int8_scheme() == "reduce-range",
                                  activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                                  nodes_to_exclude=exclude, calibrate_method=calibrate,
                                  extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                                 # fold min/max after every image instead of holding every
                                                 # image's outputs (CalibMaxIntermediateOutputs, meant for
                                                 # this, drops the data in ORT 1.31: "No data is collected")
                                                 **({"CalibStridedMinMax": 1}
                                                    if method.calibrator == "minmax" else {})},
                                  calibration_providers=["CPUExecutionProvider"])
            elif isinstance(method, OrtFp16):
                from onnxruntime.transformers.float16 import convert_float_to_float16
                model = onnx.load(str(clean))
                block = list(method.keep_fp32_op_types) or None
                nodes = sorted(nodes_for_role(method.keep_fp32_nodes, role))
                model = convert_float_to_float16(model, keep_io_types=True, op_block_list=block,
                                                 node_block_list=nodes or None)
                onnx.save_model(model, str(dst))
            else:
                raise ExportError(f"no ONNX Runtime quantizer for {type(method).__name__}")
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"{method.name} failed on {src.name}: {type(exc).__name__}: {exc}") from exc


def count_ops(path: Path) -> dict[str, int]:
    model = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts
