"""Add backend formats (OpenVINO IR, CoreML) to a bundle, validated, and fidelity reports per backend.

Conversion writes into the bundle: a staged subdirectory is moved into place and the manifest is
rewritten atomically only after the new graphs pass parity (where this machine can run them).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..bundle import fidelity_path, load_bundle
from ..data import NUM_SAMPLE_IMAGES, sample_images
from ..errors import InputError, ParityError
from ..manifest import Manifest
from ..runtimes import SessionOptions
from .coreml_convert import CoreMLConfig
from .parity import ParityThresholds, run_parity

log = logging.getLogger(__name__)
CONVERTIBLE = ("openvino", "coreml")


@dataclass(frozen=True)
class ConvertConfig:
    formats: tuple[str, ...]
    coreml: CoreMLConfig | None = None  # default: the bundle's static decoder counts
    checkpoint: Path | None = None  # to rebuild the PyTorch model of a checkpoint bundle
    parity_images: int = 3
    thresholds: ParityThresholds = field(default_factory=ParityThresholds)
    overwrite: bool = False
    jobs: int | None = None  # CoreML graphs converted side by side where `coreml` does not set its own

    def __post_init__(self) -> None:
        if self.jobs is not None and not 1 <= self.jobs <= 64:
            raise InputError(f"jobs must be 1..64 parallel conversions, got {self.jobs}")
        bad = [f for f in self.formats if f not in CONVERTIBLE]
        if bad or not self.formats:
            raise InputError(f"formats to convert to must be among {CONVERTIBLE}, got {list(self.formats)}")
        if not 1 <= self.parity_images <= NUM_SAMPLE_IMAGES:
            raise InputError(f"parity_images must be 1..{NUM_SAMPLE_IMAGES}, got {self.parity_images}")


def write_fidelity(bundle_dir: Path, report: dict, out: Path | None = None) -> Path:
    path = out or fidelity_path(bundle_dir, report["backend"], report["device"], report["precision"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def static_points(manifest: Manifest) -> tuple[int, ...]:
    """The bundle's static decoder click counts: CoreML's default (it takes static decoders only)."""
    return tuple(g.num_points for g in manifest.decoders if g.num_points is not None)


def _convert_one(fmt: str, sam_loader, bundle_dir: Path, out_root: Path, manifest: Manifest, cfg: ConvertConfig):
    if fmt == "openvino":
        from .openvino_convert import convert_bundle_openvino
        return convert_bundle_openvino(bundle_dir, out_root, manifest)
    from .coreml_convert import convert_bundle_coreml
    coreml = cfg.coreml or CoreMLConfig(static_points(manifest))
    if coreml.jobs is None and cfg.jobs is not None:
        coreml = replace(coreml, jobs=cfg.jobs)
    return convert_bundle_coreml(sam_loader(), out_root, coreml)


# Where this machine can run a converted format, parity gates the conversion (f32, CPU).
GATING_PARITY = {"openvino": ("cpu", "f32")}


def add_formats(bundle_dir: Path, cfg: ConvertConfig, sam=None, on_step=lambda s: None) -> Manifest:
    """Convert the bundle's model to cfg.formats inside bundle_dir. sam: the PyTorch model if the caller
    has it (the export pipeline); otherwise it is rebuilt from the manifest. On failure the bundle is left
    as it was (old graphs and manifest restored). Returns the new manifest."""
    from .rebuild import model_for_manifest
    bundle_dir = Path(bundle_dir)
    manifest = load_bundle(bundle_dir, warn_random=False).manifest  # checked like any untrusted bundle
    for fmt in cfg.formats:
        if fmt in manifest.converted and not cfg.overwrite:
            raise InputError(f"{bundle_dir} already has {fmt} graphs; pass --overwrite to convert again")
        if fmt not in manifest.converted and (bundle_dir / fmt).exists():
            raise InputError(f"{bundle_dir / fmt} exists but the manifest lists no {fmt} graphs: it is not samedge's "
                             "to replace; move it away and convert again")
    if "coreml" in cfg.formats and cfg.coreml is None and not static_points(manifest):
        raise InputError("CoreML needs static decoders and this bundle has none to copy the point counts from; "
                         "pass --decoder-points (e.g. 1,2,5)")
    model: list = [sam]

    def sam_loader():
        if model[0] is None:
            model[0] = model_for_manifest(manifest, cfg.checkpoint)
        return model[0]

    for fmt in cfg.formats:
        on_step(f"convert {fmt}")
        t0 = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f".{fmt}.partial-", dir=bundle_dir))
        previous, target = manifest, bundle_dir / fmt
        try:
            converted = _convert_one(fmt, sam_loader, bundle_dir, staging, manifest, cfg)
            conversion = {**converted.conversion, "seconds": round(time.perf_counter() - t0, 2)}
            if target.exists():
                target.rename(staging / "previous")
            (staging / fmt).rename(target)
            manifest = replace(manifest, converted={**manifest.converted,
                                                    fmt: replace(converted, conversion=conversion)})
            manifest.write(bundle_dir)
            if fmt in GATING_PARITY:
                device, precision = GATING_PARITY[fmt]
                on_step(f"parity {fmt} {device} {precision}")
                report = run_parity(sam_loader(), bundle_dir, sample_images(cfg.parity_images), cfg.thresholds,
                                    on_step=on_step, backend=fmt, device=device,
                                    options=SessionOptions(precision=precision))
                write_fidelity(bundle_dir, report)
                conversion["parity"] = {"device": device, "precision": report["precision"],
                                        "passed": report["passed"], "summary": report["summary"]}
                manifest = replace(manifest, converted={**manifest.converted,
                                                        fmt: replace(converted, conversion=conversion)})
                manifest.write(bundle_dir)
                if not report["passed"]:
                    raise ParityError(f"{fmt} conversion failed parity: {'; '.join(report['failures'])}", report)
        except BaseException:
            # put the bundle back as it was: old graphs (if any), old manifest
            shutil.rmtree(target, ignore_errors=True)
            if (staging / "previous").exists():
                (staging / "previous").rename(target)
            previous.write(bundle_dir)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    load_bundle(bundle_dir, warn_random=False)  # the result must load
    return manifest


def measure_fidelity(bundle_dir: Path, backend: str, device: str, precision: str | None = None,
                     checkpoint: Path | None = None, parity_images: int = 3,
                     thresholds: ParityThresholds | None = None, sam=None, on_step=lambda s: None) -> dict:
    """The export parity report for one backend x device x precision (against PyTorch fp32)."""
    from .rebuild import model_for_manifest
    manifest = load_bundle(bundle_dir, warn_random=False).manifest
    sam = sam if sam is not None else model_for_manifest(manifest, checkpoint)
    return run_parity(sam, Path(bundle_dir), sample_images(parity_images), thresholds or ParityThresholds(),
                      on_step=on_step, backend=backend, device=device, options=SessionOptions(precision=precision))
