"""`samedge quantize`: fp32 bundle -> a new quantized bundle (never in place), fidelity measured and enforced.

ONNX Runtime methods replace the bundle's ONNX graphs. OpenVINO and CoreML methods keep the fp32 ONNX
graphs (what ORT runs and what conversions start from) and add their quantized graphs under openvino/ or
coreml/, with the recipe in that format's `conversion` record.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..artifacts import artifact_bytes, artifact_sha256, check_output_dir, staged_directory
from ..bundle import load_bundle
from ..errors import InputError, ParityError
from ..manifest import ConvertedGraphs, GraphInfo, Manifest
from ..runtimes import backend_for_format
from .calibration import CalibrationSet, decoder_inputs, encoder_inputs
from .fidelity import PredictorSide, QuantThresholds, TorchSide, measure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizeConfig:
    source: Path
    out_dir: Path
    method: object  # a config from samedge.quantize.methods
    calibration_folder: Path | None = None  # default: the built-in real photos
    fidelity_images: int = 3
    thresholds: QuantThresholds = field(default_factory=QuantThresholds)
    overwrite: bool = False
    checkpoint: Path | None = None  # CoreML methods rebuild the PyTorch model; a checkpoint bundle needs it

    def __post_init__(self) -> None:  # str paths from callers work like Paths
        for name in ("source", "out_dir", "calibration_folder", "checkpoint"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Path(value))


def variant_precision(manifest: Manifest) -> str:
    """The precision a quantized bundle was made for: its ONNX graphs' or its quantized format's."""
    for conv in manifest.converted.values():
        if "quantization" in conv.conversion:
            return conv.conversion["quantization"]["precision"]
    return manifest.precision


def _graph_info(src: GraphInfo, path: Path) -> GraphInfo:
    return replace(src, file=path.name, bytes=artifact_bytes(path), sha256=artifact_sha256(path),
                   external_data=None, external_data_bytes=None, external_data_sha256=None, simplify={})


def _validate(cfg: QuantizeConfig, m: Manifest) -> None:
    from ..data import NUM_SAMPLE_IMAGES
    if m.precision != "fp32":
        raise InputError(f"{cfg.source} is already {m.precision}; quantize an fp32 bundle")
    if cfg.out_dir.resolve() == Path(cfg.source).resolve():
        raise InputError("quantize writes a new bundle; --out must differ from the source")
    check_output_dir(cfg.out_dir, cfg.overwrite, (Path(cfg.source),)
                     + ((Path(cfg.calibration_folder),) if cfg.calibration_folder else ()))
    if not 1 <= cfg.fidelity_images <= NUM_SAMPLE_IMAGES:
        raise InputError(f"fidelity_images must be 1..{NUM_SAMPLE_IMAGES}, got {cfg.fidelity_images}")
    if m.encoder.external_data:
        raise InputError("graphs with external data (over 2 GB, ViT-H) are not supported by this quantizer yet")


class _Feeds:
    """Calibration feeds per graph: encoder inputs from the photos, decoder inputs from fp32 embeddings."""

    def __init__(self, cal: CalibrationSet | None, source, method) -> None:
        self.cal, self.m, self.method = cal, source.manifest, method
        self.embeddings = None
        if cal is not None and "decoder" in method.graphs:
            from ..predictor import SamPredictor
            fp32 = SamPredictor(source, "onnxruntime", "cpu", embedding_cache_size=0)
            self.embeddings = []
            for image in cal.images:
                fp32.set_image(image)
                self.embeddings.append(fp32.get_image_embedding_item())

    def for_graph(self, g: GraphInfo):
        if self.cal is None:
            return None
        if g.role == "encoder":
            return [{self.m.encoder.inputs[0].name: x} for x in encoder_inputs(self.cal, self.m)]
        return list(decoder_inputs(self.embeddings, g.graph_point_rows, self.method.prompts_per_image))


def _carry_split(method, source, work: Path):
    """The source's split decoder, copied unchanged into the variant where the decoder is not quantized (it
    is then the same fp32 computation); None where it is: an fp32 split beside int8 decoders would answer
    prompts with other weights than the variant's decoder."""
    split = source.manifest.split
    if split is None or "decoder" in method.graphs:
        return None
    for g in split.graphs():
        shutil.copy2(source.file(g), work / g.file)
    return split


def _quantize_onnx(method, source, work: Path, feeds: _Feeds, bar) -> tuple[Manifest, dict]:
    from . import ort_quantize
    m = source.manifest
    new_graphs, ops = [], {}
    for g in (m.encoder, *m.decoders):
        bar.set_postfix_str(g.file)
        dst = work / g.file
        if g.role in method.graphs:
            ort_quantize.quantize_graph(method, source.file(g), dst, feeds.for_graph(g), g.role)
            ops[g.file] = ort_quantize.count_ops(dst)
        else:
            shutil.copy2(source.file(g), dst)
        new_graphs.append(_graph_info(g, dst))
        bar.update(1)
    return replace(m, precision=method.precision, encoder=new_graphs[0], decoders=tuple(new_graphs[1:]),
                   converted={}, split=_carry_split(method, source, work)), ops


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows it (no extra disk for GB graphs), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_onnx(source, work: Path) -> None:
    m = source.manifest
    for g in (m.encoder, *m.decoders):
        shutil.copy2(source.file(g), work / g.file)


def _quantize_openvino(method, source, work: Path, feeds: _Feeds, bar) -> tuple[Manifest, dict]:
    from ..export import openvino_convert
    from . import ov_quantize
    m = source.manifest
    _copy_onnx(source, work)
    split = _carry_split(method, source, work)
    graphs, ops = [], {}
    for g in (m.encoder, *m.decoders):
        bar.set_postfix_str(g.file)
        if g.role in method.graphs:
            xml = work / openvino_convert.SUBDIR / (Path(g.file).stem + ".xml")
            ov_quantize.quantize_graph(method, source.file(g), xml, feeds.for_graph(g))
            info = openvino_convert.graph_info(work, xml, g)
            ops[info.file] = ov_quantize.count_ops(xml)
        else:
            info = openvino_convert.convert_graph(source.path, work, g)
        graphs.append(info)
        bar.update(1)
    import openvino
    ov_split = None if split is None else split.with_graphs(
        lambda g: openvino_convert.convert_graph(source.path, work, g))
    conv = ConvertedGraphs(graphs[0], tuple(graphs[1:]), {"tool": f"openvino {openvino.__version__}",
                                                          "source": "onnx"}, ov_split)
    return replace(m, converted={"openvino": conv}, split=split), ops


def _quantize_coreml(method, source, work: Path, feeds: _Feeds, sam, bar):
    from ..export.convert import static_points
    from ..export.coreml_convert import CoreMLConfig, convert_bundle_coreml
    from . import coreml_quantize
    m = source.manifest
    points = method.decoder_points or static_points(m)
    if not points:
        raise InputError("CoreML needs static decoders: this bundle has none; pass decoder_points "
                         "(--decoder-points) or export with --decoder-points")
    _copy_onnx(source, work)
    split = _carry_split(method, source, work)  # ONNX only: CoreML packages have no split decoder yet
    bar.set_postfix_str("compress (PyTorch)")
    compressed = coreml_quantize.compress(sam, method)
    compressing = compressed is not sam
    # compressed-weight ops with per-channel scales and grouped LUTs need the iOS18 / macOS 15 opset
    # coremltools 9's fuse_conv_bias fails on a compressed conv weight followed by a transpose (the ViT patch
    # embedding); without it the bias stays a separate add
    cfg = CoreMLConfig(points, minimum_deployment_target="iOS18" if compressing else "iOS16",
                       skip_passes=("common::fuse_conv_bias",) if compressing else ())
    bar.set_postfix_str("convert (coremltools)")
    conv = convert_bundle_coreml(compressed, work, cfg)
    if method.calibrated:  # W8A8, macOS only (compress() refused it elsewhere)
        for g in (conv.encoder, *conv.decoders):
            coreml_quantize.quantize_activations_macos(work / g.file, method, feeds.for_graph(g))
    ops = {g.file: coreml_quantize.count_ops(work / g.file) for g in (conv.encoder, *conv.decoders)}
    bar.update(len(m.decoders) + 1)
    return replace(m, converted={"coreml": conv}, split=split), ops, compressed


def _openvino_fp32(source, tmp: Path):
    """The source bundle with fp32 OpenVINO IR: the same-backend baseline for OpenVINO variants."""
    if "openvino" in source.manifest.converted:
        return source
    from ..export import openvino_convert
    split = source.manifest.split
    for g in (source.manifest.encoder, *source.manifest.decoders, *(split.graphs() if split else ())):
        link_or_copy(source.file(g), tmp / g.file)  # a bundle may not hold symlinks out of itself
    conv = openvino_convert.convert_bundle_openvino(source.path, tmp, source.manifest)
    replace(source.manifest, converted={"openvino": conv}).write(tmp)
    return load_bundle(tmp, warn_random=False)


def quantize_bundle(cfg: QuantizeConfig, progress: bool = False, enforce: bool = True) -> Manifest:
    """enforce=False writes the variant even when it misses its limits (the report says so): for comparisons."""
    from tqdm import tqdm

    from ..data import sample_images
    from ..predictor import SamPredictor
    source = load_bundle(cfg.source, warn_random=False)
    m = source.manifest
    _validate(cfg, m)
    method = cfg.method
    sam = None
    if method.format == "coreml":  # fail on a missing checkpoint before any work
        from ..export.rebuild import model_for_manifest
        sam = model_for_manifest(m, cfg.checkpoint)
    cal = None
    if method.calibrated:
        cal = (CalibrationSet.from_folder(cfg.calibration_folder, method.calibration_images)
               if cfg.calibration_folder else CalibrationSet.builtin(method.calibration_images))
    t_start = time.perf_counter()
    with tqdm(total=len(m.decoders) + 2, disable=not progress, desc=f"quantize {method.name}", unit="step") as bar, \
            staged_directory(cfg.out_dir) as work:
        feeds = _Feeds(cal, source, method)
        compressed = None
        if method.format == "onnx":
            manifest, ops = _quantize_onnx(method, source, work, feeds, bar)
        elif method.format == "openvino":
            manifest, ops = _quantize_openvino(method, source, work, feeds, bar)
        else:
            manifest, ops, compressed = _quantize_coreml(method, source, work, feeds, sam, bar)
        record = {**method.recipe(), "source_bundle": str(cfg.source), "calibration": cal.source if cal else None,
                  "seconds": round(time.perf_counter() - t_start, 2), "op_counts": ops}
        if method.format == "onnx":
            manifest = replace(manifest, parity={}, export={**m.export, "quantization": record})
        else:
            fmt = method.format
            conv = manifest.converted[fmt]
            manifest = replace(manifest, parity={}, converted={
                fmt: replace(conv, conversion={**conv.conversion, "quantization": record})})
        manifest.write(work)
        bar.set_postfix_str("fidelity")
        samples = sample_images(cfg.fidelity_images)
        if method.format == "coreml":
            from . import coreml_quantize
            points = tuple(g.num_points for g in manifest.converted["coreml"].decoders)
            reference = TorchSide(sam, "PyTorch fp32 (the model the bundle was exported from)", points)
            variant = TorchSide(coreml_quantize.as_stored(compressed),
                                f"simulated in PyTorch: the {method.name} weights as the CoreML packages store them, "
                                "fp32 compute (CoreML's fp16 compute is measured on a Mac with `samedge fidelity "
                                "--backend coreml`)", points)
        else:
            reference = PredictorSide(SamPredictor(source, "onnxruntime", "cpu", embedding_cache_size=1),
                                      "the fp32 source bundle on onnxruntime cpu")
            backend = backend_for_format(method.format)
            variant = PredictorSide(SamPredictor(load_bundle(work, warn_random=False), backend, "cpu",
                                                 embedding_cache_size=1), f"this variant on {backend} cpu")
        with tempfile.TemporaryDirectory() as tmp:
            baselines = {}
            if method.format == "openvino":  # how much of the speed-up is OpenVINO itself, how much quantization
                baselines["fp32_openvino"] = SamPredictor(_openvino_fp32(source, Path(tmp)), "openvino", "cpu",
                                                          embedding_cache_size=1)
            report = measure(reference, variant, samples, cfg.thresholds, baselines=baselines)
        bar.update(1)
        manifest = replace(manifest, parity={"fidelity_vs_fp32": report})
        manifest.write(work)
        if enforce and not report["passed"]:
            raise ParityError(f"{method.name} variant fails its fidelity limits: {'; '.join(report['failures'])}",
                              report)
    return manifest
