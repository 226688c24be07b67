"""OpenVINO quantization of one graph with NNCF: fp16 IR, W8A8 post-training, weight-only int8 / int4.

The input is the bundle's fp32 ONNX graph (read by OpenVINO's ONNX frontend, as `samedge convert` does);
the output is an IR pair (.xml + .bin).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import BackendUnavailableError, ExportError
from .methods import OvFp16, OvInt8, OvWeightInt4, OvWeightInt8

log = logging.getLogger(__name__)


def _libs():
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError(f"OpenVINO quantization needs openvino and nncf ({exc.name} is missing): "
                                      "pip install 'samedge[quantize]'") from exc
    if not log.isEnabledFor(logging.DEBUG):  # NNCF sets its logger to INFO when imported: bit-width tables
        nncf.set_log_level(logging.WARNING)
    return ov, nncf


def _ignored_scope(nncf, method):
    if not (method.keep_fp32_op_types or method.keep_fp32_nodes):
        return None
    # validate=False: a name or type absent from this graph (e.g. Softmax in the decoder) is not an error
    return nncf.IgnoredScope(types=list(method.keep_fp32_op_types), names=list(method.keep_fp32_nodes),
                             validate=False)


def quantize_graph(method, src: Path, dst_xml: Path, calibration: Iterable[dict[str, np.ndarray]] | None = None) -> None:
    ov, nncf = _libs()
    dst_xml.parent.mkdir(parents=True, exist_ok=True)
    try:
        model = ov.Core().read_model(str(src))
        compress_to_fp16 = False
        if isinstance(method, OvFp16):
            compress_to_fp16 = True
        elif isinstance(method, OvInt8):
            feeds = list(calibration or [])
            preset = {"mixed": nncf.QuantizationPreset.MIXED,
                      "performance": nncf.QuantizationPreset.PERFORMANCE}[method.preset]
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
            # NNCF's overflow fix = 7-bit weights in every layer (its default fixes only the first layer)
            overflow = OverflowFix.ENABLE if method.resolved_int8_scheme() == "reduce-range" else OverflowFix.DISABLE
            model = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, preset=preset,
                                  subset_size=len(feeds), ignored_scope=_ignored_scope(nncf, method),
                                  advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow))
        elif isinstance(method, OvWeightInt8):
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                          ignored_scope=_ignored_scope(nncf, method))
        elif isinstance(method, OvWeightInt4):
            from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode
            # SAM's widths (e.g. MobileSAM's 160) are not all multiples of a group size; ADJUST picks the
            # nearest group size that divides the channel instead of failing
            model = nncf.compress_weights(
                model, mode=nncf.CompressWeightsMode.INT4_SYM, ratio=method.ratio, group_size=method.group_size,
                all_layers=True, ignored_scope=_ignored_scope(nncf, method),
                advanced_parameters=AdvancedCompressionParameters(
                    group_size_fallback_mode=GroupSizeFallbackMode.ADJUST))
        else:
            raise ExportError(f"no OpenVINO quantizer for {type(method).__name__}")
        ov.save_model(model, str(dst_xml), compress_to_fp16=compress_to_fp16)
    except (ExportError, BackendUnavailableError):
        raise
    except Exception as exc:
        raise ExportError(f"{method.name} failed on {src.name}: {type(exc).__name__}: {exc}") from exc


def count_ops(xml: Path) -> dict[str, int]:
    """Op types, plus weight constants by element type (weights_u8, weights_i4, weights_f16, ...): the
    evidence that a graph really changed."""
    ov, _ = _libs()
    model = ov.Core().read_model(str(xml))
    counts: dict[str, int] = {}
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "Constant" and op.get_output_partial_shape(0).rank.get_length() >= 2:
            kind = f"weights_{op.get_output_element_type(0).get_type_name()}"
        counts[kind] = counts.get(kind, 0) + 1
    return counts
