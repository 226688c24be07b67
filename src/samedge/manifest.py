"""manifest.json: what a bundle holds and how it was made. Pure Python (runtime-safe)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BundleError, ManifestVersionError

FORMAT_NAME = "samedge-bundle"
# 2 added converted formats (OpenVINO IR, CoreML) and the size of external data; 1 is still read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # a str is a symbolic (dynamic) dimension
    dtype: str


@dataclass(frozen=True)
class GraphInfo:
    role: str  # "encoder" | "decoder"
    file: str  # relative to the bundle; a directory for CoreML's .mlpackage
    format: str  # "onnx" | "openvino" | "coreml"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    bytes: int
    sha256: str
    external_data: str | None = None
    # Decoder only: None = dynamic point count; K = static graph taking K+1 point rows
    # (K clicks plus the padding point, or K-1 clicks plus a box's two corners).
    num_points: int | None = None
    simplify: dict[str, Any] = field(default_factory=dict)
    external_data_bytes: int | None = None

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
class ConvertedGraphs:
    """The same encoder and decoders in another backend's format (e.g. OpenVINO IR under openvino/)."""
    encoder: GraphInfo
    decoders: tuple[GraphInfo, ...]
    conversion: dict[str, Any] = field(default_factory=dict)  # tool versions, options, precision policy, timings


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
    converted: dict[str, ConvertedGraphs] = field(default_factory=dict)  # format name -> graphs
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    def write(self, directory: Path) -> Path:
        """Write atomically (temp file + rename): a reader never sees half a manifest."""
        path = Path(directory) / MANIFEST_FILE
        tmp = path.with_name(f".{MANIFEST_FILE}.tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)
        return path

    def graphs(self) -> tuple[GraphInfo, ...]:
        """Every graph file in the bundle, in every format."""
        out = [self.encoder, *self.decoders]
        for conv in self.converted.values():
            out += [conv.encoder, *conv.decoders]
        return tuple(out)

    @property
    def formats(self) -> tuple[str, ...]:
        return ("onnx", *self.converted)

    def graphs_for(self, fmt: str) -> tuple[GraphInfo, tuple[GraphInfo, ...]]:
        """(encoder, decoders) in one format; BundleError naming the command that adds a missing one."""
        if fmt == "onnx":
            return self.encoder, self.decoders
        if fmt not in self.converted:
            raise BundleError(f"this bundle has no {fmt} graphs (it has: {', '.join(self.formats)}); add them with "
                              f"`samedge convert BUNDLE --format {fmt}` or export with --format {fmt}")
        conv = self.converted[fmt]
        return conv.encoder, conv.decoders


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
    if version not in READABLE_VERSIONS:
        raise ManifestVersionError(f"{source} has format_version {version!r}; this samedge reads versions "
                                   f"{list(READABLE_VERSIONS)}. Re-export the bundle or upgrade samedge.")
    try:
        d = dict(d)
        d["weights"] = WeightsInfo(**d["weights"])
        d["encoder"] = _graph(d["encoder"])
        d["decoders"] = tuple(_graph(g) for g in d["decoders"])
        d["converted"] = {fmt: ConvertedGraphs(_graph(c["encoder"]), tuple(_graph(g) for g in c["decoders"]),
                                               c.get("conversion", {}))
                          for fmt, c in d.get("converted", {}).items()}
        d["format_version"] = FORMAT_VERSION  # a v1 manifest is a v2 manifest with nothing converted
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
