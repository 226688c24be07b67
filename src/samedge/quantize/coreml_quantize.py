"""CoreML weight compression with coremltools.optimize: the PyTorch model is compressed first (its
`_COREML_` metadata tells ct.convert to emit compressed ops), then converted like `samedge convert`.

Compressing in PyTorch, not on the ML Program, lets fidelity be measured here: the compressed module
holds exactly the weights the package stores, and runs on Linux, where CoreML cannot.
"""
from __future__ import annotations

import copy
import logging
import platform
import warnings
from pathlib import Path

from ..errors import BackendUnavailableError, ExportError
from .methods import CoremlFp16, CoremlInt8Weights, CoremlPalettize, CoremlW8A8

log = logging.getLogger(__name__)
# coremltools ops that hold compressed weights (iOS16/17 and iOS18 opsets)
COMPRESSED_OPS = ("constexpr_lut_to_dense", "constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


def _submodules(sam, graphs: tuple[str, ...]) -> list[str]:
    """Attribute names of `sam` that make up each graph."""
    names = []
    if "encoder" in graphs:
        names.append("image_encoder")
    if "decoder" in graphs:
        names += ["prompt_encoder", "mask_decoder"]
    return names


def _config(method) -> dict:
    skip = {t: None for t in method.keep_fp32_op_types}  # None = leave this module type uncompressed
    names = {n: None for n in method.keep_fp32_nodes}
    if isinstance(method, CoremlInt8Weights):
        glob = {"weight_dtype": "int8", "granularity": "per_channel", "quantization_scheme": "symmetric"}
    else:
        glob = {"n_bits": method.bits, "granularity": "per_tensor"}
    return {"global_config": glob, "module_type_configs": skip, "module_name_configs": names}


def compress(sam, method):
    """A compressed copy of `sam` (the original is left alone); fp16 and W8A8 leave the weights as they are."""
    if isinstance(method, CoremlW8A8) and platform.system() != "Darwin":
        raise BackendUnavailableError(
            f"coreml-w8a8 calibrates activations by running the ML Program, which needs macOS (this is "
            f"{platform.system()}); coremltools' PyTorch-side W8A8 (LinearQuantizer) needs torch.fx tracing, which "
            "SAM's data-dependent control flow breaks. Use coreml-int8-weights or coreml-palettize here.")
    if isinstance(method, (CoremlFp16, CoremlW8A8)):
        return sam
    try:
        from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig
        from coremltools.optimize.torch.quantization import PostTrainingQuantizer, PostTrainingQuantizerConfig
    except ImportError as exc:
        raise BackendUnavailableError("CoreML compression needs coremltools: pip install 'samedge[coreml]'") from exc
    if not log.isEnabledFor(logging.DEBUG):  # coremltools.optimize logs k-means progress at INFO per layer
        for name in [n for n in logging.Logger.manager.loggerDict if n.startswith("coremltools.optimize")]:
            logging.getLogger(name).setLevel(logging.WARNING)
    sam = copy.deepcopy(sam)
    cfg = _config(method)
    for name in _submodules(sam, method.graphs):
        module = getattr(sam, name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if isinstance(method, CoremlInt8Weights):
                    module = PostTrainingQuantizer(module, PostTrainingQuantizerConfig.from_dict(cfg)).compress()
                elif isinstance(method, CoremlPalettize):
                    module = PostTrainingPalettizer(module, PostTrainingPalettizerConfig.from_dict(cfg)).compress()
                else:
                    raise ExportError(f"no CoreML compressor for {type(method).__name__}")
        except (ExportError, BackendUnavailableError):
            raise
        except Exception as exc:
            raise ExportError(f"{method.name} failed on {name}: {type(exc).__name__}: {exc}") from exc
        setattr(sam, name, module)
    return sam.eval()


def as_stored(sam):
    """A copy with every float weight rounded to fp16, as the packages store them (LUTs and scales included)
    for the fidelity simulation; fp16 *compute* is not simulated (CPU autocast to fp16 is ~30x slower here
    and does not follow CoreML's per-op policy)."""
    import torch
    sam = copy.deepcopy(sam)
    with torch.no_grad():
        for t in (*sam.parameters(), *sam.buffers()):
            if t.dtype == torch.float32:
                t.copy_(t.half().float())
    return sam.eval()


def quantize_activations_macos(package: Path, method, calibration: list[dict]) -> None:
    """W8A8 on macOS: coremltools runs the package on calibration feeds, then quantizes activations and
    weights in place. Not exercised on Linux (it cannot run here); see compress() for the refusal."""
    import coremltools as ct
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights
    from coremltools.optimize.coreml.experimental import OpActivationLinearQuantizerConfig, linear_quantize_activations
    model = ct.models.MLModel(str(package))
    act = OptimizationConfig(global_config=OpActivationLinearQuantizerConfig(mode="linear_symmetric"))
    model = linear_quantize_activations(model, act, calibration)
    weights = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
    linear_quantize_weights(model, weights).save(str(package))


def count_ops(package: Path) -> dict[str, int]:
    """Op types in an .mlpackage's main function, read from the saved spec (compressed-weight ops included)."""
    import coremltools as ct
    spec = ct.utils.load_spec(str(package))
    fn = spec.mlProgram.functions["main"]
    counts: dict[str, int] = {}
    for op in fn.block_specializations[fn.opset].operations:
        counts[op.type] = counts.get(op.type, 0) + 1
    return counts
