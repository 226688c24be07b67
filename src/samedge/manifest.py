"""manifest.json: what a bundle holds and how it was made. Pure Python (runtime-safe)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from .contract import (DECODER_OUTPUTS, MASK_STATE, MASKS_OUTPUTS, PROMPT_INPUTS, PROMPT_MASK_INPUTS,
                       SCORES_OUTPUTS)
from .errors import BundleError, InputError, ManifestVersionError
from .families import SAM2_HIGH_RES_SHAPES, Family, Processing, get_family

FORMAT_NAME = "samedge-bundle"
# 2 added converted formats (OpenVINO IR, CoreML) and the size of external data; 3 the sha256 of external data
# (OpenVINO's .bin, ONNX's .onnx.data). 1 and 2 are still read (their external data is size-checked only).
# 4 added the model family and its processing (SAM 2.1: high-res features, square resize); 1-3 are SAM 1 only.
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
FAMILY_VERSION = 4  # the first format_version that can hold a non-SAM-1 family
MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20  # parity reports make manifests ~100 KB; anything this big is not one
SCHEMA_FILE = Path(__file__).with_name("schema") / "bundle-manifest.schema.json"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # a str is a symbolic (dynamic) dimension
    dtype: str


@dataclass(frozen=True)
class GraphInfo:
    role: str  # "encoder" | "decoder" | "context" | "prompt" (the split decoder's two graphs)
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
    external_data_sha256: str | None = None

    @property
    def graph_point_rows(self) -> int | None:
        return None if self.num_points is None else self.num_points + 1

    @property
    def batch_size(self) -> int | None:
        """Prompts per call: the static first dim of point_coords (1 for the usual graphs), None where dynamic."""
        coords = next((t for t in self.inputs if t.name == "point_coords"), None)
        return coords.shape[0] if coords is not None and isinstance(coords.shape[0], int) else None

    @property
    def takes_mask(self) -> bool:
        """A decoder or split prompt graph that takes a mask prior (mask_input, has_mask_input)."""
        return any(t.name == "mask_input" for t in self.inputs)


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
class SplitDecoder:
    """The decoder split for prompts without a mask prior (export/split_decoder.py): a context graph run once
    per image (image_embeddings -> context tensors) and prompt graphs (dynamic and/or static point counts)
    that take point rows + those tensors and give the full decoder's outputs."""
    context: GraphInfo
    prompts: tuple[GraphInfo, ...]
    # The dynamic prompt graph in two stages (contract.SCORES_OUTPUTS / MASKS_OUTPUTS): segment everything
    # decodes masks only for prompts whose scores pass its filter. Both or neither.
    scores: GraphInfo | None = None
    masks: GraphInfo | None = None

    def graphs(self) -> tuple[GraphInfo, ...]:
        return (self.context, *self.prompts, *((self.scores, self.masks) if self.scores and self.masks else ()))

    def with_graphs(self, fn) -> "SplitDecoder":
        """The same split with fn applied to every graph entry (hashing, conversion)."""
        return SplitDecoder(fn(self.context), tuple(fn(g) for g in self.prompts),
                            None if self.scores is None else fn(self.scores),
                            None if self.masks is None else fn(self.masks))


@dataclass(frozen=True)
class ConvertedGraphs:
    """The same encoder and decoders in another backend's format (e.g. OpenVINO IR under openvino/)."""
    encoder: GraphInfo
    decoders: tuple[GraphInfo, ...]
    conversion: dict[str, Any] = field(default_factory=dict)  # tool versions, options, precision policy, timings
    split: SplitDecoder | None = None


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
    split: SplitDecoder | None = None  # ONNX split decoder (bundles from before 2026-12 have none)
    family: str = "sam"  # samedge.families: which contract and processing (format_version 4; older: "sam")
    processing: Processing = field(default_factory=Processing)
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """Strict JSON: a non-finite figure in a report (e.g. a spread of one image) is written as null."""
        return json.dumps(_finite(asdict(self)), indent=2, sort_keys=False, allow_nan=False)

    def write(self, directory: Path) -> Path:
        """Write atomically (temp file + rename): a reader never sees half a manifest. Always written as the
        current format_version; external data carried over from an older bundle gets its sha256 here."""
        from .artifacts import artifact_sha256

        def hashed(g: GraphInfo) -> GraphInfo:
            if g.external_data is None or g.external_data_sha256 is not None:
                return g
            return replace(g, external_data_sha256=artifact_sha256(Path(directory) / g.external_data))
        def hashed_split(sp: SplitDecoder | None) -> SplitDecoder | None:
            return None if sp is None else sp.with_graphs(hashed)
        current = replace(self, format_version=FORMAT_VERSION, encoder=hashed(self.encoder),
                          decoders=tuple(hashed(g) for g in self.decoders), split=hashed_split(self.split),
                          converted={f: replace(c, encoder=hashed(c.encoder), decoders=tuple(hashed(g) for g in c.decoders),
                                                split=hashed_split(c.split))
                                     for f, c in self.converted.items()})
        path = Path(directory) / MANIFEST_FILE
        tmp = path.with_name(f".{MANIFEST_FILE}.tmp")
        tmp.write_text(current.to_json() + "\n")
        tmp.replace(path)
        return path

    def graphs(self) -> tuple[GraphInfo, ...]:
        """Every graph file in the bundle, in every format."""
        out = [self.encoder, *self.decoders, *(self.split.graphs() if self.split else ())]
        for conv in self.converted.values():
            out += [conv.encoder, *conv.decoders, *(conv.split.graphs() if conv.split else ())]
        return tuple(out)

    def split_for(self, fmt: str) -> SplitDecoder | None:
        """The split decoder in one format, or None where the bundle has none in it."""
        if fmt == "onnx":
            return self.split
        conv = self.converted.get(fmt)
        return conv.split if conv else None

    @property
    def contract(self) -> Family:
        """The family's graph I/O names (samedge.families)."""
        return get_family(self.family)

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


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _tensor(d: dict) -> TensorSpec:
    return TensorSpec(d["name"], tuple(d["shape"]), d["dtype"])


def _graph(d: dict) -> GraphInfo:
    d = dict(d)
    d["inputs"] = tuple(_tensor(t) for t in d["inputs"])
    d["outputs"] = tuple(_tensor(t) for t in d["outputs"])
    return GraphInfo(**d)


@lru_cache(maxsize=1)
def _validator():
    import jsonschema
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def _schema_errors(d: dict) -> list[str]:
    """Every schema violation as 'field.path: message' (value shown short), most specific first."""
    out = []
    for err in sorted(_validator().iter_errors(d), key=lambda e: (-len(e.absolute_path), e.json_path)):
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        shown = repr(err.instance)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        out.append(f"{where} = {shown}: {err.message if len(err.message) <= 160 else err.message[:157] + '...'}")
    return out


def _static(dim: int | str) -> int | None:
    return dim if isinstance(dim, int) else None


def _named(specs: tuple[TensorSpec, ...], name: str) -> TensorSpec:
    return next(t for t in specs if t.name == name)


def _point_rows_errors(where: str, g: GraphInfo, coords: TensorSpec) -> list[str]:
    """point_coords must be (B, rows, 2), with num_points + 1 rows in a static graph; B static (>= 1) only in
    a static split prompt graph, where every prompt input has that batch."""
    rows = _static(coords.shape[1]) if len(coords.shape) == 3 else -1
    if rows == -1 or (g.num_points is not None and rows is not None and rows != g.num_points + 1):
        return [f"{where}: point_coords shape {list(coords.shape)} does not fit num_points {g.num_points}"]
    batch = _static(coords.shape[0])
    if batch is not None and (batch < 1 or (batch > 1 and (g.role != "prompt" or g.num_points is None))):
        return [f"{where}: point_coords batch {batch}: a static batch > 1 is for static split prompt graphs only"]
    prompt_inputs = [t for t in g.inputs if t.name in ("point_labels", "mask_input", "has_mask_input")]
    if any(t.shape[0] != coords.shape[0] for t in prompt_inputs):
        return [f"{where}: prompt inputs {[(t.name, list(t.shape)) for t in (coords, *prompt_inputs)]} "
                "must share point_coords' batch dim"]
    return []


def _consistency_errors(m: Manifest) -> list[str]:
    """What the schema cannot say: roles, contract names, shapes against image_size, unique files."""
    errors = []
    family = m.contract
    from .model_types import get_spec
    try:
        spec_family = get_spec(m.model_type).family
    except InputError:
        spec_family = None  # a model this samedge does not know: its family field decides
    if spec_family is not None and spec_family != m.family:
        errors.append(f"model_type {m.model_type} is family {spec_family!r}, the manifest says {m.family!r}")
    if m.embedding_shape[0] != 1:
        errors.append(f"embedding_shape {m.embedding_shape} must have batch 1")
    groups = [("onnx", m.encoder, m.decoders, m.split)] + [(fmt, c.encoder, c.decoders, c.split)
                                                          for fmt, c in m.converted.items()]
    files: list[str] = []
    for fmt, enc, decs, split in groups:
        if split is not None:
            errors += _split_errors(fmt, split, family.feature_names)
        for g in (enc, *decs, *(split.graphs() if split else ())):
            files += [g.file] + ([g.external_data] if g.external_data else [])
            where = f"{fmt} {g.role} {g.file}"
            if g.format != fmt:
                errors.append(f"{where}: format {g.format!r} listed under {fmt}")
            if (g.external_data is None) != (g.external_data_bytes is None):
                errors.append(f"{where}: external_data and external_data_bytes go together")
            if g.format == "openvino" and g.external_data != str(Path(g.file).with_suffix(".bin").as_posix()):
                # OpenVINO reads <name>.bin beside <name>.xml whatever the manifest says: it must be that file
                errors.append(f"{where}: the IR's weights must be listed as external_data "
                              f"{Path(g.file).with_suffix('.bin').as_posix()!r}, got {g.external_data!r}")
            if m.format_version >= 3 and g.external_data is not None and g.external_data_sha256 is None:
                errors.append(f"{where}: external_data needs external_data_sha256 (format_version 3)")
        if enc.role != "encoder" or any(g.role != "decoder" for g in decs):
            errors.append(f"{fmt}: the encoder entry must have role encoder and every decoder role decoder")
        enc_out = [t.name for t in enc.outputs]
        if [t.name for t in enc.inputs] != list(family.encoder_inputs) or enc_out != list(family.encoder_outputs):
            missing = [n for n in family.encoder_outputs if n not in enc_out]
            errors.append(f"{fmt} encoder: I/O {[t.name for t in enc.inputs]} -> {enc_out}, the contract is "
                          f"{list(family.encoder_inputs)} -> {list(family.encoder_outputs)} ({m.family} family)"
                          + (f" (missing {missing})" if missing else ""))
        else:
            shape = enc.inputs[0].shape
            if len(shape) != 4 or any(_static(d) not in (None, m.image_size) for d in shape[2:]):
                errors.append(f"{fmt} encoder input shape {list(shape)} does not take image_size {m.image_size}")
            out = enc.outputs[0].shape
            if len(out) != 4 or any(_static(a) not in (None, b) for a, b in zip(out, m.embedding_shape)):
                errors.append(f"{fmt} encoder output shape {list(out)} is not embedding_shape {list(m.embedding_shape)}")
            if m.family == "sam2":
                for t, want in zip(enc.outputs[1:], SAM2_HIGH_RES_SHAPES):
                    if len(t.shape) != 4 or any(_static(a) not in (None, b) for a, b in zip(t.shape, want)):
                        errors.append(f"{fmt} encoder output {t.name} shape {list(t.shape)} is not {list(want)}")
        for g in decs:
            names_in, names_out = tuple(t.name for t in g.inputs), tuple(t.name for t in g.outputs)
            if names_in != family.decoder_inputs or names_out != family.decoder_outputs:
                missing = [n for n in family.decoder_inputs if n not in names_in]
                errors.append(f"{fmt} decoder {g.file}: I/O {list(names_in)} -> {list(names_out)}, the contract is "
                              f"{list(family.decoder_inputs)} -> {list(family.decoder_outputs)} ({m.family} family)"
                              + (f" (missing input(s) {missing})" if missing else ""))
                continue
            errors += _point_rows_errors(f"{fmt} decoder {g.file}", g, _named(g.inputs, "point_coords"))
            mask = _named(g.inputs, "mask_input").shape
            if len(mask) != 4 or any(_static(d) not in (None, m.low_res_mask_size) for d in mask[2:]):
                errors.append(f"{fmt} decoder {g.file}: mask_input shape {list(mask)} is not low_res_mask_size "
                              f"{m.low_res_mask_size}")
    dupes = sorted({f for f in files if files.count(f) > 1})
    if dupes and set(dupes) - {m.encoder.file}:  # a converted format never reuses the ONNX files
        errors.append(f"files listed twice: {dupes}")
    return errors


def _split_errors(fmt: str, split: SplitDecoder, feature_names: tuple[str, ...]) -> list[str]:
    """The split decoder's contract: context graph: the family's per-image decoder inputs (image_embeddings,
    SAM 2.1's high-res features) -> context tensors; every prompt graph takes point rows and then exactly
    those tensors, and gives the decoder's outputs."""
    errors = []
    ctx = split.context
    context_names = [t.name for t in ctx.outputs]
    if ctx.role != "context" or [t.name for t in ctx.inputs] != list(feature_names):
        errors.append(f"{fmt} split context {ctx.file}: role {ctx.role!r}, inputs {[t.name for t in ctx.inputs]}; "
                      f"needs role 'context' and inputs {list(feature_names)}")
    if not split.prompts:
        errors.append(f"{fmt} split decoder has a context graph but no prompt graph")
    for g in split.prompts:
        names = [t.name for t in g.inputs]
        lead = list(PROMPT_MASK_INPUTS if g.takes_mask else PROMPT_INPUTS)
        rest = names[len(lead):]
        in_order = [n for n in context_names if n in rest] == rest and len(set(rest)) == len(rest)
        if g.role != "prompt" or names[:len(lead)] != lead or not in_order or \
                tuple(t.name for t in g.outputs) != DECODER_OUTPUTS:
            errors.append(f"{fmt} split prompt graph {g.file}: role {g.role!r}, I/O {names} -> "
                          f"{[t.name for t in g.outputs]}; needs role 'prompt', {lead} + context tensors of "
                          f"{ctx.file} in its order -> {list(DECODER_OUTPUTS)}")
            continue
        errors += _point_rows_errors(f"{fmt} split prompt graph {g.file}", g, g.inputs[0])
        shapes = {t.name: t.shape for t in ctx.outputs}
        if any(tuple(t.shape) != tuple(shapes[t.name]) for t in g.inputs[len(lead):]):
            errors.append(f"{fmt} split prompt graph {g.file}: context input shapes differ from the context graph's")
    return errors + _staged_errors(fmt, split)


def _staged_errors(fmt: str, split: SplitDecoder) -> list[str]:
    """The two-stage prompt graph: scores: point rows + context tensors -> iou_predictions + the mask state;
    masks: the mask state (same shapes) + context tensors -> low_res_masks. Both or neither."""
    if split.scores is None and split.masks is None:
        return []
    if split.scores is None or split.masks is None:
        return [f"{fmt} split decoder: the scores and masks graphs go together, got only "
                f"{(split.scores or split.masks).file}"]
    ctx = {t.name: tuple(t.shape) for t in split.context.outputs}
    errors = []
    for g, role, lead, outputs in ((split.scores, "prompt_scores", PROMPT_INPUTS, SCORES_OUTPUTS),
                                   (split.masks, "prompt_masks", MASK_STATE, MASKS_OUTPUTS)):
        names = [t.name for t in g.inputs]
        rest = names[len(lead):]
        in_order = [n for n in ctx if n in rest] == rest and len(set(rest)) == len(rest)
        if g.role != role or tuple(names[:len(lead)]) != lead or not in_order or \
                tuple(t.name for t in g.outputs) != outputs or \
                any(tuple(t.shape) != ctx[t.name] for t in g.inputs[len(lead):]):
            errors.append(f"{fmt} split {role} graph {g.file}: role {g.role!r}, I/O {names} -> "
                          f"{[t.name for t in g.outputs]}; needs role {role!r}, {list(lead)} + context tensors of "
                          f"{split.context.file} (their shapes, in its order) -> {list(outputs)}")
    if not errors:
        given = {t.name: tuple(t.shape)[1:] for t in split.scores.outputs}
        taken = {t.name: tuple(t.shape)[1:] for t in split.masks.inputs[:len(MASK_STATE)]}
        def differ(a: tuple, b: tuple) -> bool:  # symbolic dims (batch, state rows) match any
            return len(a) != len(b) or any(isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(a, b))
        if any(differ(given[n], taken[n]) for n in MASK_STATE):
            errors.append(f"{fmt} split decoder: the mask state {split.scores.file} gives {given} is not what "
                          f"{split.masks.file} takes {taken}")
    return errors


def _split(d: dict | None) -> SplitDecoder | None:
    if d is None:
        return None
    staged = [None if d.get(k) is None else _graph(d[k]) for k in ("scores", "masks")]
    return SplitDecoder(_graph(d["context"]), tuple(_graph(g) for g in d["prompts"]), *staged)


def manifest_from_dict(d: dict, source: str = "manifest") -> Manifest:
    """Validate against the schema (types, ranges, relative paths) and the contract, then build the Manifest.
    Any problem is a BundleError listing every violation."""
    if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise BundleError(f"{source} is not a samedge bundle manifest (format={found!r}, expected {FORMAT_NAME!r})")
    version = d.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise ManifestVersionError(f"{source} has format_version {version!r}; this samedge reads versions "
                                   f"{list(READABLE_VERSIONS)}. Re-export the bundle or upgrade samedge.")
    family = d.get("family", "sam")
    if version < FAMILY_VERSION and (family != "sam" or _is_sam2_model(d.get("model_type"))):
        raise ManifestVersionError(f"{source} says format_version {version}, but it holds a {family} "
                                   f"({d.get('model_type')!r}) bundle: versions before {FAMILY_VERSION} hold SAM 1 "
                                   f"models only. A SAM 2.1 bundle is format_version {FAMILY_VERSION}; re-export it.")
    errors = _schema_errors(d)
    if version < FAMILY_VERSION:
        errors += [f"{k}: a format_version {FAMILY_VERSION} field in a version-{version} manifest"
                   for k in ("family", "processing") if k in d]
    if version >= FAMILY_VERSION:
        errors += [f"{k}: required from format_version {FAMILY_VERSION} on" for k in ("family", "processing")
                   if k not in d]
    if errors:
        raise BundleError(f"{source} is malformed ({len(errors)} problem(s)): " + "; ".join(errors[:8]))
    d = dict(d)
    if "processing" in d:
        d["processing"] = Processing(**d["processing"])
    d["weights"] = WeightsInfo(**d["weights"])
    d["encoder"] = _graph(d["encoder"])
    d["decoders"] = tuple(_graph(g) for g in d["decoders"])
    d["split"] = _split(d.get("split"))
    d["converted"] = {fmt: ConvertedGraphs(_graph(c["encoder"]), tuple(_graph(g) for g in c["decoders"]),
                                           c.get("conversion", {}), _split(c.get("split")))
                      for fmt, c in d.get("converted", {}).items()}
    for key in ("pixel_mean", "pixel_std", "embedding_shape"):
        d[key] = tuple(d[key])
    m = Manifest(**d)
    errors = _consistency_errors(m)
    if errors:
        raise BundleError(f"{source} is inconsistent: " + "; ".join(errors[:8]))
    # the version it was written with stays readable on the object (format_version), the rest is current
    return m


def _is_sam2_model(model_type: object) -> bool:
    from .model_types import get_spec
    try:
        return isinstance(model_type, str) and get_spec(model_type).family == "sam2"
    except InputError:
        return False


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        what = f"{MANIFEST_FILE} is a symlink (not allowed in a bundle)" if path.is_symlink() else f"no {MANIFEST_FILE}"
        raise BundleError(f"{directory} has {what}; is it a samedge bundle (samedge export --out DIR)?")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is {path.stat().st_size} bytes, over the {MAX_MANIFEST_BYTES} a manifest may be")
    try:
        # strict JSON: NaN / Infinity are not numbers a manifest may hold (NaN pixel_std would reach the encoder)
        data = json.loads(path.read_text(), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return manifest_from_dict(data, str(path))
