"""manifest.json: what a bundle holds and how it was made. Pure Python (runtime-safe)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BundleError, ManifestVersionError

FORMAT_NAME = "samedge-bundle"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # a str is a symbolic (dynamic) dimension
    dtype: str


@dataclass(frozen=True)
class GraphInfo:
    role: str  # "encoder" | "decoder"
    file: str
    format: str  # "onnx"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    bytes: int
    sha256: str
    external_data: str | None = None
    # Decoder only: None = dynamic point count; K = static graph taking K+1 point rows
    # (K clicks plus the padding point, or K-1 clicks plus a box's two corners).
    num_points: int | None = None
    simplify: dict[str, Any] = field(default_factory=dict)

    @property
    def graph_point_rows(self) -> int | None:
        return None if self.num_points is None else self.num_points + 1


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # "random" | "checkpoint" | "download"
    seed: int | None = None
    checkpoint_file: str | None = None
    checkpoint_sha256: str | None = None

    @property
    def is_random(self) -> bool:
        return self.source == "random"


@dataclass(frozen=True)
class Manifest:
    model_type: str
    weights: WeightsInfo
    image_size: int
    pixel_mean: tuple[float, ...]
    pixel_std: tuple[float, ...]
    mask_threshold: float
    low_res_mask_size: int
    embedding_shape: tuple[int, ...]
    precision: str
    encoder: GraphInfo
    decoders: tuple[GraphInfo, ...]
    export: dict[str, Any] = field(default_factory=dict)  # tool versions, opset, timings
    parity: dict[str, Any] = field(default_factory=dict)  # fidelity measured at export
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    def write(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_FILE
        path.write_text(self.to_json() + "\n")
        return path

    def graphs(self) -> tuple[GraphInfo, ...]:
        return (self.encoder, *self.decoders)


def _tensor(d: dict) -> TensorSpec:
    return TensorSpec(d["name"], tuple(d["shape"]), d["dtype"])


def _graph(d: dict) -> GraphInfo:
    d = dict(d)
    d["inputs"] = tuple(_tensor(t) for t in d["inputs"])
    d["outputs"] = tuple(_tensor(t) for t in d["outputs"])
    return GraphInfo(**d)


def manifest_from_dict(d: dict, source: str = "manifest") -> Manifest:
    if d.get("format") != FORMAT_NAME:
        raise BundleError(f"{source} is not a samedge bundle manifest (format={d.get('format')!r}, "
                          f"expected {FORMAT_NAME!r})")
    version = d.get("format_version")
    if version != FORMAT_VERSION:
        raise ManifestVersionError(f"{source} has format_version {version!r}; this samedge (reads version "
                                   f"{FORMAT_VERSION}) cannot read it. Re-export the bundle or upgrade samedge.")
    try:
        d = dict(d)
        d["weights"] = WeightsInfo(**d["weights"])
        d["encoder"] = _graph(d["encoder"])
        d["decoders"] = tuple(_graph(g) for g in d["decoders"])
        for key in ("pixel_mean", "pixel_std", "embedding_shape"):
            d[key] = tuple(d[key])
        return Manifest(**d)
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{source} is malformed: {type(exc).__name__}: {exc}") from exc


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{directory} has no {MANIFEST_FILE}; is it a samedge bundle (samedge export --out DIR)?")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return manifest_from_dict(data, str(path))
