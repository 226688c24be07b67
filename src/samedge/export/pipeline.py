"""`samedge export`: model -> bundle directory (graphs + manifest), validated, written atomically."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import onnx

from ..artifacts import check_output_dir, staged_directory
from ..families import SAM, Family, get_family
from ..errors import ExportError, InputError, ParityError
from ..manifest import GraphInfo, Manifest, SplitDecoder, TensorSpec, WeightsInfo
from ..model_types import EMBEDDING_SHAPE, IMAGE_SIZE, LOW_RES_MASK_SIZE, MASK_THRESHOLD, get_spec
from ..weights import download_checkpoint, sha256_of
from .onnx_export import (POINTS_DIM, ExportedGraph, export_context, export_decoder, export_encoder,
                          export_prompt_decoder, export_staged_prompt_decoder, static_prompt_decoder)
from ..data import NUM_SAMPLE_IMAGES
from .parity import ParityThresholds, run_parity
from .side_by_side import default_jobs, run_side_by_side

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
    model_type: str
    out_dir: Path
    weights: str = "random"  # "random" | "checkpoint" | "download"
    checkpoint: Path | None = None
    seed: int = 0
    opset: int = 18
    decoder_points: tuple[int, ...] = ()  # static decoder variants beside the dynamic one
    dynamic_decoder: bool = True
    simplify: bool = True
    parity_images: int = 3
    thresholds: ParityThresholds = field(default_factory=ParityThresholds)
    overwrite: bool = False
    # The split decoder (a per-image context graph + per-prompt graphs for the same point counts as the
    # decoders): what predict() runs for prompts without a mask prior. Off: every prompt runs the full decoder.
    split_decoder: bool = True
    # Static batch sizes of the split decoder's prompt graph (no mask prior) for each decoder_points count:
    # what predict_batch / segment everything run in fixed-size calls on static-shape devices (NPU, TensorRT).
    decoder_batch_sizes: tuple[int, ...] = ()
    # Backend formats beside ONNX (always exported: every other format is converted from it or checked
    # against it): "openvino" (IR) and/or "coreml" (.mlpackage, static decoders = decoder_points).
    formats: tuple[str, ...] = ()
    # Graph exports run side by side, this many at a time (export/side_by_side.py); None: default_jobs(),
    # which is 1 (one after another in this process) since forked workers hung once.
    jobs: int | None = None


def _validate(cfg: ExportConfig) -> None:
    get_spec(cfg.model_type)
    if cfg.weights not in ("random", "checkpoint", "download"):
        raise InputError(f"weights must be random, checkpoint or download, got {cfg.weights!r}")
    if (cfg.weights == "checkpoint") != (cfg.checkpoint is not None):
        raise InputError("a checkpoint path goes with weights='checkpoint' (and only with it)")
    if any(k < 1 or k > 64 for k in cfg.decoder_points):
        raise InputError(f"decoder point counts must be in 1..64, got {list(cfg.decoder_points)}")
    if any(b < 2 or b > 1024 for b in cfg.decoder_batch_sizes):
        raise InputError(f"decoder batch sizes must be in 2..1024 (batch 1 is the plain static graph), got "
                         f"{list(cfg.decoder_batch_sizes)}")
    if cfg.decoder_batch_sizes and not (cfg.split_decoder and cfg.decoder_points):
        raise InputError("--decoder-batch-sizes makes static batches of the split decoder's static prompt graphs: "
                         "it needs --decoder-points and the split decoder")
    if cfg.jobs is not None and not 1 <= cfg.jobs <= 64:
        raise InputError(f"jobs must be 1..64 parallel graph exports, got {cfg.jobs}")
    if not cfg.dynamic_decoder and not cfg.decoder_points:
        raise InputError("without the dynamic decoder, give at least one static --decoder-points count")
    if not 1 <= cfg.parity_images <= NUM_SAMPLE_IMAGES:
        raise InputError(f"parity_images must be 1..{NUM_SAMPLE_IMAGES} (the built-in real photos), "
                         f"got {cfg.parity_images}")
    bad = [f for f in cfg.formats if f not in ("onnx", "openvino", "coreml")]
    if bad:
        raise InputError(f"unknown format(s) {bad}; allowed: onnx, openvino, coreml")
    if "coreml" in cfg.formats and not cfg.decoder_points:
        raise InputError("CoreML needs static decoders: give --decoder-points (e.g. 1,2,5) with --format coreml")
    check_output_dir(cfg.out_dir, cfg.overwrite, (Path(cfg.checkpoint),) if cfg.checkpoint else ())


def _load_model(cfg: ExportConfig):
    from ..models import build_sam, load_checkpoint, randomize_weights
    spec = get_spec(cfg.model_type)
    if cfg.weights == "random":
        return randomize_weights(build_sam(spec.name), cfg.seed), WeightsInfo("random", seed=cfg.seed)
    path = cfg.checkpoint if cfg.weights == "checkpoint" else download_checkpoint(spec.name)
    model = load_checkpoint(path, spec.name)
    return model, WeightsInfo(cfg.weights, checkpoint_file=Path(path).name, checkpoint_sha256=sha256_of(Path(path)))


def _io_specs(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    model = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in model.graph.initializer}

    def spec(v) -> TensorSpec:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        return TensorSpec(v.name, dims, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name)
    return (tuple(spec(v) for v in model.graph.input if v.name not in init),
            tuple(spec(v) for v in model.graph.output))


def _graph_info(role: str, exported: ExportedGraph, num_points: int | None = None,
                family: Family = SAM) -> GraphInfo:
    inputs, outputs = _io_specs(exported.path)
    expected_in = family.encoder_inputs if role == "encoder" else family.decoder_inputs
    expected_out = family.encoder_outputs if role == "encoder" else family.decoder_outputs
    if role in ("context", "prompt", "prompt_scores", "prompt_masks"):  # checked together by _split_errors
        expected_in, expected_out = tuple(t.name for t in inputs), tuple(t.name for t in outputs)
    if tuple(t.name for t in inputs) != expected_in or tuple(t.name for t in outputs) != expected_out:
        raise ExportError(f"{exported.path.name} has inputs {[t.name for t in inputs]} and outputs "
                          f"{[t.name for t in outputs]}; the contract needs {expected_in} -> {expected_out}")
    return GraphInfo(role=role, file=exported.path.name, format="onnx", inputs=inputs, outputs=outputs,
                     bytes=exported.path.stat().st_size, sha256=sha256_of(exported.path),
                     external_data=exported.external_data.name if exported.external_data else None,
                     external_data_bytes=exported.external_data.stat().st_size if exported.external_data else None,
                     num_points=num_points,
                     simplify={"tool": exported.simplifier, "nodes_before": exported.nodes_before,
                               "nodes_after": exported.nodes_after})


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    from .. import __version__
    versions = {"samedge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__}
    try:
        import onnxslim
        versions["onnxslim"] = onnxslim.__version__
    except ImportError:
        pass
    return versions


def export_bundle(cfg: ExportConfig, progress: bool = False) -> Manifest:
    """Export, validate against PyTorch, and move the finished bundle into place. On any failure
    nothing is left at cfg.out_dir (a failed parity run keeps its report in the raised ParityError)."""
    _validate(cfg)
    from tqdm import tqdm

    from ..data import sample_images
    extra = tuple(f for f in cfg.formats if f != "onnx")
    convert_label = "convert " + ",".join(extra)
    family = get_family(get_spec(cfg.model_type).family)
    with_split = cfg.split_decoder
    graph_steps = _graph_steps(cfg)
    steps = ["load model", *graph_steps, "parity"] + ([convert_label] if extra else [])
    timings: dict[str, float] = {}
    with tqdm(total=len(steps), disable=not progress, desc=f"export {cfg.model_type}", unit="step") as bar, \
            staged_directory(cfg.out_dir) as work:
        def step(name: str, fn):
            bar.set_postfix_str(name)
            t0 = time.perf_counter()
            result = fn()
            timings[name] = round(time.perf_counter() - t0, 2)
            bar.update(1)
            return result

        sam, weights = step("load model", lambda: _load_model(cfg))
        tasks = _graph_tasks(sam, work, cfg)
        assert list(tasks) == graph_steps
        jobs = cfg.jobs or default_jobs()
        bar.set_postfix_str(f"export {len(tasks)} graphs, {jobs} at a time")

        def finished(i: int, seconds: float) -> None:
            timings[graph_steps[i]] = round(seconds, 2)
            bar.update(1)
        t0 = time.perf_counter()
        exported = dict(zip(graph_steps, run_side_by_side(list(tasks.values()), jobs, finished)))
        timings["export graphs (wall)"] = round(time.perf_counter() - t0, 2)
        encoder = _graph_info("encoder", exported["export encoder"], family=family)
        decoders = [_graph_info("decoder", exported[_decoder_label(k)], k, family) for k in _decoder_variants(cfg)]
        split = _split_info(exported, cfg) if with_split else None
        manifest = Manifest(
            model_type=get_spec(cfg.model_type).name, weights=weights, image_size=IMAGE_SIZE,
            pixel_mean=family.pixel_mean, pixel_std=family.pixel_std, mask_threshold=MASK_THRESHOLD,
            low_res_mask_size=LOW_RES_MASK_SIZE, embedding_shape=EMBEDDING_SHAPE, precision="fp32",
            encoder=encoder, decoders=tuple(decoders), split=split, family=family.name,
            processing=family.processing,
            export={"exporter": "torch.onnx (dynamo)", "opset": cfg.opset, "versions": _versions(),
                    "dynamic_points_dim": POINTS_DIM,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        manifest.write(work)
        report = step("parity", lambda: run_parity(sam, work, sample_images(cfg.parity_images), cfg.thresholds,
                                                   on_step=bar.set_postfix_str))
        report["seconds"] = timings["parity"]
        manifest = replace(manifest, parity=report, export={**manifest.export, "seconds": timings})
        manifest.write(work)
        if not report["passed"]:
            raise ParityError(f"{cfg.model_type} export failed parity: {'; '.join(report['failures'])}", report)
        if extra:
            from .convert import ConvertConfig, add_formats
            manifest = step(convert_label, lambda: add_formats(
                work, ConvertConfig(extra, parity_images=cfg.parity_images, thresholds=cfg.thresholds,
                                    jobs=cfg.jobs), sam=sam,
                on_step=bar.set_postfix_str))
            manifest = replace(manifest, export={**manifest.export, "seconds": timings})
            manifest.write(work)
    return manifest


_SPLIT_STEPS = ("export prompt graphs", "export prompt graphs (mask prior)", "export staged prompt graphs",
                "export context graph")


def _graph_steps(cfg: ExportConfig) -> list[str]:
    """Every graph export, longest first (the split decoder's dynamic graphs take the longest to trace)."""
    split = [s for s in _SPLIT_STEPS if cfg.dynamic_decoder or s != "export staged prompt graphs"]
    return (split if cfg.split_decoder else []) + ["export encoder"] + [_decoder_label(k) for k in _decoder_variants(cfg)]


def _graph_tasks(sam, work: Path, cfg: ExportConfig) -> dict[str, Callable[[], object]]:
    """The graph exports by step, independent of each other (export/side_by_side.py runs them in parallel)."""
    tasks: dict[str, Callable[[], object]] = {
        "export prompt graphs": partial(_export_prompt_graphs, sam, work, cfg, "prompt", False),
        "export prompt graphs (mask prior)": partial(_export_prompt_graphs, sam, work, cfg, "prompt_mask", True),
        "export staged prompt graphs": partial(export_staged_prompt_decoder, sam, work / "prompt_scores.onnx",
                                               work / "prompt_masks.onnx", cfg.opset, cfg.simplify),
        "export context graph": partial(export_context, sam, work / "context.onnx", cfg.opset, cfg.simplify),
        "export encoder": partial(export_encoder, sam, work / "encoder.onnx", cfg.opset, cfg.simplify),
    }
    for k in _decoder_variants(cfg):
        name = "decoder.onnx" if k is None else f"decoder_p{k}.onnx"
        tasks[_decoder_label(k)] = partial(export_decoder, sam, work / name, k, cfg.opset, cfg.simplify)
    return {label: tasks[label] for label in _graph_steps(cfg)}


def _export_prompt_graphs(sam, work: Path, cfg: ExportConfig, stem: str, with_mask: bool
                          ) -> list[tuple[ExportedGraph, int | None]]:
    """stem.onnx (dynamic) and its static variants stem_pK.onnx (+ stem_pK_bB.onnx without a mask prior), for
    the decoders' point counts: the static ones are folded from the dynamic trace, not traced again."""
    dynamic = export_prompt_decoder(sam, work / f"{stem}.onnx", cfg.opset, cfg.simplify, with_mask)
    out = [(dynamic, None)] if cfg.dynamic_decoder else []
    out += [(static_prompt_decoder(dynamic.path, work / f"{stem}_p{k}.onnx", k), k)
            for k in sorted(set(cfg.decoder_points))]
    if not with_mask:  # fixed-size batches (segment everything's grid on an NPU)
        out += [(static_prompt_decoder(dynamic.path, work / f"{stem}_p{k}_b{b}.onnx", k, batch=b), k)
                for k in sorted(set(cfg.decoder_points)) for b in sorted(set(cfg.decoder_batch_sizes))]
    if not cfg.dynamic_decoder:  # traced dynamic only to derive the static ones
        dynamic.path.unlink()
    return out


def _split_info(exported: dict[str, object], cfg: ExportConfig) -> SplitDecoder:
    """context.onnx + prompt.onnx (dynamic) / prompt_pK.onnx (static) [+ the staged pair], as the manifest
    records them: prompt graphs without a mask prior first."""
    context = _graph_info("context", exported["export context graph"])
    prompts = tuple(_graph_info("prompt", graph, k) for step in ("export prompt graphs", "export prompt graphs (mask prior)")
                    for graph, k in exported[step])
    staged = (None, None)
    if cfg.dynamic_decoder:  # segment everything on CPU/GPU: scores first, masks for the prompts that pass
        scores, masks = exported["export staged prompt graphs"]
        staged = (_graph_info("prompt_scores", scores), _graph_info("prompt_masks", masks))
    return SplitDecoder(context, prompts, *staged)


def _decoder_label(k: int | None) -> str:
    return f"export decoder{'' if k is None else f' ({k} points)'}"


def _decoder_variants(cfg: ExportConfig) -> list[int | None]:
    return ([None] if cfg.dynamic_decoder else []) + sorted(set(cfg.decoder_points))
