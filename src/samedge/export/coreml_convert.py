"""PyTorch -> CoreML ML Programs (coreml/*.mlpackage): static shapes, fp16 compute with a precision policy.

Conversion goes through torch.export (coremltools' TorchScript frontend fails on SAM under numpy 2.4).
CoreML cannot take a flexible point count here, so the decoder comes as static point-count variants.
"""
from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..artifacts import artifact_bytes, artifact_sha256
from ..contract import DECODER_OUTPUTS, ENCODER_INPUT
from ..errors import BackendUnavailableError, ExportError, InputError
from ..manifest import ConvertedGraphs, GraphInfo, TensorSpec
from ..model_types import EMBEDDING_SHAPE, IMAGE_SIZE, LOW_RES_MASK_SIZE
from .side_by_side import default_jobs, run_side_by_side

log = logging.getLogger(__name__)
SUBDIR = "coreml"

# fp16 overflows or loses the small differences these ops work on: squares and means of activations
# (LayerNorm statistics), exponentials (softmax), and sin/cos of the prompt's positional encoding.
# Matmuls, convolutions and the elementwise rest run in fp16 on the GPU / Neural Engine.
DEFAULT_FP32_OPS = ("layer_norm", "softmax", "reduce_mean", "reduce_sum", "pow", "sqrt", "rsqrt", "exp",
                    "sin", "cos")


@dataclass(frozen=True)
class CoreMLConfig:
    decoder_points: tuple[int, ...]  # static click counts (a box counts as one)
    compute_precision: str = "fp16"  # "fp16" (with fp32_ops kept in fp32) | "fp32"
    fp32_ops: tuple[str, ...] = DEFAULT_FP32_OPS
    minimum_deployment_target: str = "iOS16"  # ML Program with fp16 I/O support; macOS 13
    skip_passes: tuple[str, ...] = ()  # coremltools graph passes to leave out (see quantize.coreml_quantize)
    jobs: int | None = None  # graphs converted side by side (export/side_by_side.py); None: default_jobs() (1)

    def __post_init__(self) -> None:
        if not self.decoder_points:
            raise InputError("CoreML needs static decoders: give at least one point count (--decoder-points)")
        if any(k < 1 or k > 64 for k in self.decoder_points):
            raise InputError(f"decoder point counts must be in 1..64, got {list(self.decoder_points)}")
        if self.compute_precision not in ("fp16", "fp32"):
            raise InputError(f"CoreML compute precision must be fp16 or fp32, got {self.compute_precision!r}")


def _ct():
    try:
        import coremltools
    except ImportError as exc:
        raise BackendUnavailableError("CoreML conversion needs coremltools: pip install 'samedge[coreml]'") from exc
    return coremltools


@contextmanager
def _quiet_progress():
    """coremltools draws a progress bar per frontend and per pass pipeline (a dozen per export); samedge's own
    bar says where the export is. They come back with debug logging (samedge -v)."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    from tqdm import tqdm
    try:
        from coremltools.converters.mil.frontend.torch import ops
        from coremltools.converters.mil.mil.passes import pass_pipeline
    except ImportError:  # another coremltools layout: bars stay, nothing breaks
        yield
        return
    silent = partial(tqdm, disable=True)
    saved = getattr(ops, "_tqdm", None), getattr(pass_pipeline, "tqdm", None)
    ops._tqdm, pass_pipeline.tqdm = silent, silent
    try:
        yield
    finally:
        ops._tqdm, pass_pipeline.tqdm = saved


def _convert(ct, module, args: tuple, in_names, out_names, cfg: CoreMLConfig, path: Path) -> None:
    import torch
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_progress():
            warnings.simplefilter("ignore")
            program = torch.export.export(module.eval(), args).run_decompositions({})
            if cfg.compute_precision == "fp16":
                keep = frozenset(cfg.fp32_ops)
                precision = ct.transform.FP16ComputePrecision(op_selector=lambda op: op.op_type not in keep)
            else:
                precision = ct.precision.FLOAT32
            pipeline = ct.PassPipeline.DEFAULT
            if cfg.skip_passes:
                pipeline.remove_passes(list(cfg.skip_passes))
            model = ct.convert(
                program, convert_to="mlprogram", compute_precision=precision, pass_pipeline=pipeline,
                minimum_deployment_target=getattr(ct.target, cfg.minimum_deployment_target),
                inputs=[ct.TensorType(name=n, shape=tuple(a.shape), dtype=np.float32) for n, a in zip(in_names, args)],
                outputs=[ct.TensorType(name=n, dtype=np.float32) for n in out_names])
    except Exception as exc:
        raise ExportError(f"coremltools could not convert {path.name}: {type(exc).__name__}: {exc}") from exc
    model.user_defined_metadata["samedge.compute_precision"] = cfg.compute_precision
    model.user_defined_metadata["samedge.precision_policy"] = json.dumps(
        {"fp32_ops": list(cfg.fp32_ops)} if cfg.compute_precision == "fp16" else {})
    model.save(str(path))


def _info(bundle_dir: Path, path: Path, role: str, inputs, outputs, num_points: int | None = None) -> GraphInfo:
    return GraphInfo(role=role, file=path.relative_to(bundle_dir).as_posix(), format="coreml",
                     inputs=inputs, outputs=outputs, bytes=artifact_bytes(path), sha256=artifact_sha256(path),
                     num_points=num_points)


def convert_bundle_coreml(sam, out_root: Path, cfg: CoreMLConfig) -> ConvertedGraphs:
    """sam -> out_root/coreml/{encoder,decoder_pK}.mlpackage; file names relative to out_root."""
    import torch

    from ..families import SAM2_HIGH_RES_SHAPES
    from .onnx_export import _named_arguments
    from .specs import spec_for
    spec = spec_for(sam)  # the family's graphs and I/O names (SAM 2.1: high-res features out of / into them)
    fam = spec.family
    ct = _ct()
    bundle_dir = out_root
    out = out_root / SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    image = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    enc_path = out / "encoder.mlpackage"
    points = sorted(set(cfg.decoder_points))
    decoder_args = {k: spec.dummy_decoder_inputs(k + 1) for k in points}
    # one graph per task, side by side (export/side_by_side.py: torch.export and the MIL passes are
    # single-threaded Python); each task writes its package, the manifest entries are made here
    tasks = [partial(_convert, ct, spec.encoder_graph(sam), (image,), fam.encoder_inputs, fam.encoder_outputs, cfg,
                     enc_path)]
    tasks += [partial(_convert, ct, _named_arguments(spec.decoder_graph(sam), fam.decoder_inputs), decoder_args[k],
                      fam.decoder_inputs, fam.decoder_outputs, cfg, out / f"decoder_p{k}.mlpackage") for k in points]
    run_side_by_side(tasks, cfg.jobs or default_jobs())
    out_shapes = (EMBEDDING_SHAPE, *SAM2_HIGH_RES_SHAPES)[:len(fam.encoder_outputs)]
    encoder = _info(bundle_dir, enc_path, "encoder", (TensorSpec(ENCODER_INPUT, (1, 3, IMAGE_SIZE, IMAGE_SIZE),
                                                                  "float32"),),
                    tuple(TensorSpec(n, s, "float32") for n, s in zip(fam.encoder_outputs, out_shapes)))
    decoders = []
    for k in points:
        args = decoder_args[k]
        ins = tuple(TensorSpec(n, tuple(a.shape), "float32") for n, a in zip(fam.decoder_inputs, args))
        outs = (TensorSpec(DECODER_OUTPUTS[0], (1, 4, LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE), "float32"),
                TensorSpec(DECODER_OUTPUTS[1], (1, 4), "float32"))
        decoders.append(_info(bundle_dir, out / f"decoder_p{k}.mlpackage", "decoder", ins, outs, k))
    return ConvertedGraphs(encoder, tuple(decoders), {
        "tool": f"coremltools {ct.__version__}", "source": "torch.export", "program": "mlprogram",
        "minimum_deployment_target": cfg.minimum_deployment_target, "compute_precision": cfg.compute_precision,
        "fp32_ops": list(cfg.fp32_ops) if cfg.compute_precision == "fp16" else [],
        "parity": "not measured: CoreML prediction needs macOS (run `samedge fidelity BUNDLE --backend coreml` "
                  "on a Mac)"})
