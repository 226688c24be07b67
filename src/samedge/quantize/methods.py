"""Quantization recipes, one frozen config per method. Each names the backend format it produces.

ONNX Runtime methods write quantized ONNX graphs. OpenVINO and CoreML methods keep the fp32 ONNX
graphs (the bundle's source of truth) and add the quantized graphs as that backend's format.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InputError

GRAPHS = ("encoder", "decoder")
# "auto": 7-bit weights where this CPU's int8 kernels saturate (x86 without VNNI, see samedge.cpu), else 8-bit.
# "reduce-range" is portable to every CPU; "full-range" only where int8 products do not saturate (VNNI / ARM).
INT8_SCHEMES = ("auto", "reduce-range", "full-range")
CALIBRATORS = ("minmax", "percentile", "entropy")
PALETTE_BITS = (4, 6, 8)


@dataclass(frozen=True)
class _Method:
    graphs: tuple[str, ...] = GRAPHS  # which graphs to quantize; the others are copied unchanged
    keep_fp32_op_types: tuple[str, ...] = ()  # mixed precision: op types left in fp32
    keep_fp32_nodes: tuple[str, ...] = ()  # mixed precision: node names left in fp32
    name = ""
    precision = ""
    format = "onnx"
    calibrated = False  # needs calibration images

    def __post_init__(self) -> None:
        bad = [g for g in self.graphs if g not in GRAPHS]
        if bad or not self.graphs:
            raise InputError(f"graphs must be among {GRAPHS}, got {list(self.graphs)}")

    def recipe(self) -> dict:
        return {"method": self.name, "format": self.format, "precision": self.precision, **asdict(self)}


@dataclass(frozen=True)
class _Calibrated(_Method):
    calibration_images: int = 8
    prompts_per_image: int = 4
    calibrated = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calibration_images < 1:
            raise InputError(f"calibration_images must be >= 1, got {self.calibration_images}")
        if self.prompts_per_image < 1:
            raise InputError(f"prompts_per_image must be >= 1, got {self.prompts_per_image}")


@dataclass(frozen=True)
class _Int8(_Method):
    int8_scheme: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.int8_scheme not in INT8_SCHEMES:
            raise InputError(f"int8_scheme must be one of {INT8_SCHEMES}, got {self.int8_scheme!r}")

    def resolved_int8_scheme(self) -> str:
        """The scheme to quantize with on this CPU ('auto' resolved)."""
        if self.int8_scheme != "auto":
            return self.int8_scheme
        from ..cpu import cpu_capabilities
        return "reduce-range" if cpu_capabilities().int8_saturates else "full-range"

    def recipe(self) -> dict:
        from ..cpu import cpu_capabilities
        return {**super().recipe(), "int8_scheme": self.resolved_int8_scheme(),
                "int8_scheme_requested": self.int8_scheme, "quantized_on": cpu_capabilities().to_dict()}


# --- ONNX Runtime ------------------------------------------------------------------------------

@dataclass(frozen=True)
class OrtDynamicInt8(_Int8):
    """Weights int8 ahead of time, activations quantized on the fly per call (CPU)."""
    name = "ort-dynamic-int8"
    precision = "int8-dynamic"
    per_channel: bool = True
    op_types: tuple[str, ...] = ("MatMul", "Gemm")


@dataclass(frozen=True)
class OrtStaticInt8(_Int8, _Calibrated):
    """QDQ int8 with calibrated activation ranges (what NPUs and TensorRT need)."""
    name = "ort-static-int8"
    precision = "int8-qdq"
    calibrator: str = "minmax"
    per_channel: bool = True
    op_types: tuple[str, ...] = ("MatMul", "Gemm", "Conv")
    # attention's activation x activation MatMuls (q @ k, attn @ v): off by default. Calibrating them keeps
    # ViT-B's 12 x 4096 x 4096 global-attention maps per image (out of memory at 24 GB here), and int8
    # attention maps cost the most accuracy for the least speed on CPUs.
    quantize_attention_matmuls: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calibrator not in CALIBRATORS:
            raise InputError(f"calibrator must be one of {CALIBRATORS}, got {self.calibrator!r}")


@dataclass(frozen=True)
class OrtFp16(_Method):
    """fp16 weights and compute, fp32 inputs/outputs (keep_io_types) so the contract holds."""
    name = "ort-fp16"
    precision = "fp16"


# --- OpenVINO (NNCF) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class OvFp16(_Method):
    """IR with fp16 weights (half the file); the CPU decompresses them and computes in f32."""
    name = "ov-fp16"
    precision = "fp16-weights"
    format = "openvino"


@dataclass(frozen=True)
class OvInt8(_Int8, _Calibrated):
    """NNCF post-training W8A8 (FakeQuantize on weights and activations), transformer model type."""
    name = "ov-int8"
    precision = "int8-w8a8"
    format = "openvino"
    preset: str = "mixed"  # NNCF: symmetric weights, asymmetric activations

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset not in ("mixed", "performance"):
            raise InputError(f"preset must be 'mixed' or 'performance', got {self.preset!r}")


@dataclass(frozen=True)
class OvWeightInt8(_Method):
    """NNCF weight-only int8 (asymmetric, per channel); activations stay f32. Data-free."""
    name = "ov-weight-int8"
    precision = "int8-weights"
    format = "openvino"


@dataclass(frozen=True)
class OvWeightInt4(_Method):
    """NNCF weight-only int4 (symmetric, group-wise); `ratio` of the layers int4, the rest int8."""
    name = "ov-weight-int4"
    precision = "int4-weights"
    format = "openvino"
    group_size: int = 32
    ratio: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 8 or not 0 < self.ratio <= 1:
            raise InputError(f"group_size must be >= 8 and ratio in (0, 1], got {self.group_size}, {self.ratio}")


# --- CoreML (coremltools.optimize) -------------------------------------------------------------

@dataclass(frozen=True)
class _CoreMLMethod(_Method):
    format = "coreml"
    decoder_points: tuple[int, ...] | None = None  # static decoders; default: the bundle's static counts


@dataclass(frozen=True)
class CoremlFp16(_CoreMLMethod):
    """fp16 weights and compute with samedge's fp32 precision policy (as `samedge convert` makes it)."""
    name = "coreml-fp16"
    precision = "fp16"


@dataclass(frozen=True)
class CoremlInt8Weights(_CoreMLMethod):
    """Linear int8 weights, per output channel, symmetric (coremltools.optimize.torch PostTrainingQuantizer)."""
    name = "coreml-int8-weights"
    precision = "int8-weights"


@dataclass(frozen=True)
class CoremlPalettize(_CoreMLMethod):
    """k-means palettized weights: a lookup table of 2^bits values per weight tensor
    (coremltools.optimize.torch PostTrainingPalettizer)."""
    name = "coreml-palettize"
    bits: int = 6

    @property
    def precision(self) -> str:  # type: ignore[override]
        return f"palettized-{self.bits}bit"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bits not in PALETTE_BITS:
            raise InputError(f"palettization bits must be one of {PALETTE_BITS}, got {self.bits}")


@dataclass(frozen=True)
class CoremlW8A8(_CoreMLMethod, _Calibrated):
    """int8 weights and activations. coremltools calibrates activations by running the ML Program
    (macOS only); its PyTorch-side alternative needs torch.fx tracing, which SAM's control flow breaks."""
    name = "coreml-w8a8"
    precision = "int8-w8a8"


METHODS = {m.name: m for m in (OrtDynamicInt8, OrtStaticInt8, OrtFp16, OvFp16, OvInt8, OvWeightInt8, OvWeightInt4,
                               CoremlFp16, CoremlInt8Weights, CoremlPalettize, CoremlW8A8)}


def method_config(name: str, **options) -> _Method:
    if name not in METHODS:
        raise InputError(f"unknown quantization method {name!r}; available: {', '.join(METHODS)}")
    cls = METHODS[name]
    allowed = set(cls.__dataclass_fields__)
    unknown = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if unknown:
        raise InputError(f"{name} takes no option(s) {unknown}; its options: {sorted(allowed)}")
    return cls(**{k: v for k, v in options.items() if k in allowed and v is not None})
