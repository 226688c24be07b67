"""Quantization recipes, one frozen config per method. Each says which backend format it produces."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InputError

GRAPHS = ("encoder", "decoder")
CALIBRATORS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class _OrtMethod:
    graphs: tuple[str, ...] = GRAPHS  # which graphs to quantize; the others are copied unchanged
    keep_fp32_op_types: tuple[str, ...] = ()  # mixed precision: op types left in fp32
    keep_fp32_nodes: tuple[str, ...] = ()  # mixed precision: node names left in fp32
    format = "onnx"

    def __post_init__(self) -> None:
        bad = [g for g in self.graphs if g not in GRAPHS]
        if bad or not self.graphs:
            raise InputError(f"graphs must be among {GRAPHS}, got {list(self.graphs)}")

    def recipe(self) -> dict:
        return {"method": self.name, **asdict(self)}


@dataclass(frozen=True)
class OrtDynamicInt8(_OrtMethod):
    """Weights int8 ahead of time, activations quantized on the fly per call (CPU)."""
    name = "ort-dynamic-int8"
    precision = "int8-dynamic"
    per_channel: bool = True
    op_types: tuple[str, ...] = ("MatMul", "Gemm")


@dataclass(frozen=True)
class OrtStaticInt8(_OrtMethod):
    """QDQ int8 with calibrated activation ranges (what NPUs and TensorRT need)."""
    name = "ort-static-int8"
    precision = "int8-qdq"
    calibrator: str = "minmax"
    per_channel: bool = True
    calibration_images: int = 8
    prompts_per_image: int = 4
    op_types: tuple[str, ...] = ("MatMul", "Gemm", "Conv")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calibrator not in CALIBRATORS:
            raise InputError(f"calibrator must be one of {CALIBRATORS}, got {self.calibrator!r}")
        if self.calibration_images < 1:
            raise InputError(f"calibration_images must be >= 1, got {self.calibration_images}")


@dataclass(frozen=True)
class OrtFp16(_OrtMethod):
    """fp16 weights and compute, fp32 inputs/outputs (keep_io_types) so the contract holds."""
    name = "ort-fp16"
    precision = "fp16"


METHODS = {m.name: m for m in (OrtDynamicInt8, OrtStaticInt8, OrtFp16)}


def method_config(name: str, **options) -> _OrtMethod:
    if name not in METHODS:
        raise InputError(f"unknown quantization method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name](**options)
