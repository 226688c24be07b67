"""`samedge quantize`: fp32 bundle -> a new quantized bundle (never in place), fidelity measured and enforced."""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..bundle import load_bundle
from ..errors import InputError, ParityError
from ..manifest import GraphInfo, Manifest
from ..artifacts import artifact_bytes, artifact_sha256, staged_directory
from .calibration import CalibrationSet, decoder_inputs, encoder_inputs
from .fidelity import QuantThresholds, measure

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


def _graph_info(src: GraphInfo, path: Path) -> GraphInfo:
    return replace(src, file=path.name, bytes=artifact_bytes(path), sha256=artifact_sha256(path),
                   external_data=None, external_data_bytes=None, simplify={})


def quantize_bundle(cfg: QuantizeConfig, progress: bool = False) -> Manifest:
    from tqdm import tqdm

    from ..data import NUM_SAMPLE_IMAGES, sample_images
    from ..predictor import SamPredictor
    from .ort_quantize import count_ops, quantize_graph
    source = load_bundle(cfg.source, warn_random=False)
    m = source.manifest
    if m.precision != "fp32":
        raise InputError(f"{cfg.source} is already {m.precision}; quantize an fp32 bundle")
    if cfg.out_dir.resolve() == Path(cfg.source).resolve():
        raise InputError("quantize writes a new bundle; --out must differ from the source")
    if cfg.out_dir.exists() and not cfg.overwrite:
        raise InputError(f"{cfg.out_dir} already exists; pass --overwrite to replace it")
    if not 1 <= cfg.fidelity_images <= NUM_SAMPLE_IMAGES:
        raise InputError(f"fidelity_images must be 1..{NUM_SAMPLE_IMAGES}, got {cfg.fidelity_images}")
    if m.encoder.external_data:
        raise InputError("graphs with external data (over 2 GB, ViT-H) are not supported by this quantizer yet")
    method = cfg.method
    cal = None
    if getattr(method, "calibration_images", None) is not None:  # static methods calibrate
        cal = (CalibrationSet.from_folder(cfg.calibration_folder, method.calibration_images)
               if cfg.calibration_folder else CalibrationSet.builtin(method.calibration_images))
    graphs = [m.encoder, *m.decoders]
    t_start = time.perf_counter()
    with tqdm(total=len(graphs) + 1, disable=not progress, desc=f"quantize {method.name}", unit="graph") as bar, \
            staged_directory(cfg.out_dir) as work:
        embeddings = None
        if cal is not None and "decoder" in method.graphs:
            fp32 = SamPredictor(source, embedding_cache_size=0)
            embeddings = []
            for image in cal.images:
                fp32.set_image(image)
                embeddings.append((fp32.get_image_embedding(), fp32.geometry))
        new_graphs: list[GraphInfo] = []
        ops: dict[str, dict] = {}
        for g in graphs:
            bar.set_postfix_str(g.file)
            dst = work / g.file
            if g.role in method.graphs:
                feeds = None
                if cal is not None:
                    feeds = ({m.encoder.inputs[0].name: x} for x in encoder_inputs(cal, m)) if g.role == "encoder" \
                        else decoder_inputs(embeddings, g.graph_point_rows, method.prompts_per_image)
                quantize_graph(method, source.file(g), dst, feeds)
                ops[g.file] = count_ops(dst)
            else:
                shutil.copy2(source.file(g), dst)
            new_graphs.append(_graph_info(g, dst))
            bar.update(1)
        seconds = round(time.perf_counter() - t_start, 2)
        manifest = replace(m, precision=method.precision, encoder=new_graphs[0], decoders=tuple(new_graphs[1:]),
                           converted={}, parity={},
                           export={**m.export, "quantization": {
                               **method.recipe(), "source_bundle": str(cfg.source),
                               "calibration": cal.source if cal else None, "seconds": seconds, "op_counts": ops}})
        manifest.write(work)
        bar.set_postfix_str("fidelity")
        reference = SamPredictor(source, embedding_cache_size=1)
        variant = SamPredictor(load_bundle(work, warn_random=False), embedding_cache_size=1)
        report = measure(reference, variant, sample_images(cfg.fidelity_images), cfg.thresholds)
        bar.update(1)
        manifest = replace(manifest, parity={"fidelity_vs_fp32": report})
        manifest.write(work)
        if not report["passed"]:
            raise ParityError(f"{method.name} variant fails its fidelity limits: {'; '.join(report['failures'])}",
                              report)
    return manifest
