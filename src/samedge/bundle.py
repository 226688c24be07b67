"""A bundle directory: graphs + manifest.json. Loading checks that the files are there and intact."""
from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from .artifacts import artifact_sha256
from .errors import BundleError
from .manifest import GraphInfo, Manifest, read_manifest

log = logging.getLogger(__name__)
_warned_random: set[str] = set()


class RandomWeightsWarning(UserWarning):
    """The bundle was exported from seeded random weights: its masks mean nothing."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest

    def file(self, graph: GraphInfo) -> Path:
        return self.path / graph.file

    def decoder_for(self, num_points: int | None, fmt: str = "onnx", static_only: bool = False,
                    why_static: str = "") -> GraphInfo:
        """The decoder graph to use for K clicks (a box counts as one): the exact static match first, else
        the dynamic graph unless the device needs static shapes (NPU, CoreML). Never pads up to a bigger
        static graph: extra padding tokens change the output."""
        _, decoders = self.manifest.graphs_for(fmt)
        graph = _pick(decoders, num_points, static_only)
        if graph is not None:
            return graph
        supported = sorted(g.num_points for g in decoders if g.num_points is not None)
        reason = f" ({why_static} needs static shapes)" if static_only and why_static else ""
        raise BundleError(f"no {fmt} decoder for {num_points} clicks (a box counts as one){reason}; this bundle's "
                          f"static {fmt} decoders take {supported} clicks. Re-export with --decoder-points "
                          f"including {num_points}" + ("" if static_only else ", or with the dynamic decoder") + ".")


    def prompt_graph_for(self, num_points: int | None, fmt: str = "onnx", static_only: bool = False,
                         mask: bool = False, batched: bool = False) -> GraphInfo | None:
        """The split decoder's prompt graph for K clicks (mask: one that takes a mask prior), chosen as
        decoder_for chooses; None where the bundle has no split decoder in this format or none that fits
        (the full decoder then serves the prompt). batched: a static graph of a fixed batch > 1 (the largest)
        for K clicks; otherwise only graphs that take one prompt (or a dynamic batch)."""
        split = self.manifest.split_for(fmt)
        if split is None:
            return None
        graphs = [g for g in split.prompts if g.takes_mask == mask]
        if batched:
            fixed = [g for g in graphs if g.num_points == num_points and (g.batch_size or 1) > 1]
            return max(fixed, key=lambda g: g.batch_size, default=None)
        return _pick(tuple(g for g in graphs if g.batch_size in (None, 1)), num_points, static_only)


def _pick(graphs: tuple[GraphInfo, ...], num_points: int | None, static_only: bool) -> GraphInfo | None:
    for g in graphs:
        if num_points is not None and g.num_points == num_points:
            return g
    if not static_only:
        for g in graphs:
            if g.num_points is None:
                return g
    return None


VERIFY_ENV = "SAMEDGE_VERIFY_HASHES"  # "0": skip sha256 on load (sizes and paths are still checked)
_verified: set[tuple] = set()  # (file, size, mtime_ns, sha256) already hashed in this process
_warned_isa: set[str] = set()
_onnx_checked: set[tuple] = set()  # ONNX graphs whose external-data locations were checked


def inside(bundle_dir: Path, name: str) -> Path:
    """bundle_dir / name, where name must stay inside bundle_dir after resolving symlinks; BundleError if not.
    (The manifest schema already refuses absolute paths and '..'; this catches symlinks that leave.)"""
    root = bundle_dir.resolve()
    target = (bundle_dir / name).resolve()
    if target != root and root not in target.parents:
        raise BundleError(f"bundle {bundle_dir} names {name!r}, which resolves to {target}, outside the bundle; "
                          "a bundle may only name files inside its own directory")
    return bundle_dir / name


def _check_tree(bundle_dir: Path, path: Path) -> list[Path]:
    """The files of an artifact (a file, or CoreML's .mlpackage directory), each checked to stay inside."""
    if not path.is_dir():
        return [path]
    files = []
    for f in sorted(path.rglob("*")):
        inside(bundle_dir, f.relative_to(bundle_dir).as_posix())
        if f.is_file():
            files.append(f)
    return files


def _check_onnx_external_data(bundle_dir: Path, graph: GraphInfo, f: Path) -> None:
    """Every external-data location an ONNX graph names must be the file its manifest entry names (and so inside).
    Without the onnx package ORT's own check (it refuses locations outside the model's folder) is what guards."""
    try:
        import onnx
        from onnx.external_data_helper import _get_all_tensors, uses_external_data
    except ImportError:
        return
    stat = f.stat()
    key = (str(f.resolve()), stat.st_size, stat.st_mtime_ns, graph.external_data)
    if key in _onnx_checked:  # parsing a GB graph once per process is enough
        return
    try:
        model = onnx.load(str(f), load_external_data=False)
    except Exception as exc:  # DecodeError and friends: not a protobuf at all
        raise BundleError(f"{f} is not a readable ONNX graph ({type(exc).__name__}: {exc}); re-export it") from exc
    locations = {e.value for t in _get_all_tensors(model) if uses_external_data(t)
                 for e in t.external_data if e.key == "location"}
    if not locations:
        _onnx_checked.add(key)
        return
    expected = (bundle_dir / graph.external_data).resolve() if graph.external_data else None
    for loc in sorted(locations):
        if Path(loc).is_absolute() or ":" in loc or "\\" in loc:
            raise BundleError(f"{f.name} reads external data from the absolute path {loc!r}; a bundle may only "
                              "name files inside its own directory")
        target = inside(bundle_dir, os.path.relpath(f.parent / loc, bundle_dir))
        if target.resolve() != expected:
            raise BundleError(f"{f.name} reads external data from {loc!r}, which its manifest entry does not name "
                              f"(external_data={graph.external_data!r}); the graph was swapped or tampered with")
    _onnx_checked.add(key)


def _check_artifact(bundle_dir: Path, graph: GraphInfo, name: str, expected_bytes: int, expected_sha: str | None,
                    verify: bool) -> None:
    path = inside(bundle_dir, name)
    if not path.exists():
        raise BundleError(f"bundle {bundle_dir} is missing {name} ({graph.format} {graph.role}); re-export it")
    files = _check_tree(bundle_dir, path)
    actual = sum(p.stat().st_size for p in files)
    if actual != expected_bytes:
        raise BundleError(f"{path} is {actual} bytes but the manifest says {expected_bytes}: "
                          "the file is truncated, corrupt or from another export")
    if not verify or expected_sha is None:
        return
    key = (str(path.resolve()), actual, max(p.stat().st_mtime_ns for p in files) if files else 0, expected_sha)
    if key in _verified:
        return
    if artifact_sha256(path) != expected_sha:
        raise BundleError(f"{path} fails its sha256 check against the manifest: the file is "
                          f"corrupt or was changed after export (set {VERIFY_ENV}=0 to skip hashing, not advised)")
    _verified.add(key)


def verify_by_default() -> bool:
    return os.environ.get(VERIFY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def load_bundle(path: str | Path, verify_hashes: bool | None = None, warn_random: bool = True) -> Bundle:
    """Read and check an (untrusted) bundle before any graph is opened: the manifest against its schema, every
    path it names inside the directory (symlinks included), sizes, and sha256 (verify_hashes; default on, off
    with ${SAMEDGE_VERIFY_HASHES}=0 for multi-GB graphs; a file is hashed once per process)."""
    path = Path(path)
    if path.is_file():
        raise BundleError(f"{path} is a file; a bundle is a directory holding manifest.json "
                          "(samedge export --out DIR makes one)")
    if not path.is_dir():
        raise BundleError(f"bundle directory {path} does not exist")
    verify = verify_by_default() if verify_hashes is None else verify_hashes
    manifest = read_manifest(path)
    for graph in manifest.graphs():
        _check_artifact(path, graph, graph.file, graph.bytes, graph.sha256, verify)
        if graph.external_data is not None:
            _check_artifact(path, graph, graph.external_data, graph.external_data_bytes, graph.external_data_sha256,
                            verify)
        if graph.format == "onnx":
            _check_onnx_external_data(path, graph, path / graph.file)
    key = str(path.resolve())
    if warn_random and manifest.weights.is_random and key not in _warned_random:
        _warned_random.add(key)
        msg = (f"bundle {path} was exported from RANDOM weights (seed {manifest.weights.seed}): "
               "its masks are meaningless; only its latency and its fidelity to the fp32 reference are real figures")
        log.warning(msg)
        warnings.warn(msg, RandomWeightsWarning, stacklevel=2)
    _warn_int8_isa(path, manifest)
    return Bundle(path, manifest)


class Int8IsaWarning(UserWarning):
    """An int8 variant with 8-bit weights, validated on a CPU with VNNI, is loaded on one without it."""


def quantization_record(manifest: Manifest) -> dict | None:
    """The `samedge quantize` recipe a bundle was made with (ONNX or converted format), or None."""
    for record in [manifest.export.get("quantization")] + [c.conversion.get("quantization")
                                                             for c in manifest.converted.values()]:
        if isinstance(record, dict):
            return record
    return None


def _warn_int8_isa(path: Path, manifest: Manifest) -> None:
    from .cpu import cpu_capabilities
    record = quantization_record(manifest)
    if record is None or not str(record.get("precision", "")).startswith("int8-") or "weights" in record["precision"]:
        return  # weight-only int8 dequantizes to f32: no int8 GEMM, nothing saturates
    here = cpu_capabilities()
    made_on = record.get("quantized_on") or {}
    # bundles from before the scheme was recorded used 8-bit weights, validated on VNNI machines; one quantized
    # on a CPU without VNNI had its fidelity measured where it saturates, so it needs no warning
    if record.get("int8_scheme", "full-range") != "full-range" or not here.int8_saturates \
            or made_on.get("int8_dot_product") is False:
        return
    key = str(path.resolve())
    if key in _warned_isa:
        return
    _warned_isa.add(key)
    msg = (f"bundle {path} holds int8 with full-range (8-bit) weights, quantized and validated on "
           f"{made_on.get('label', 'a CPU with VNNI (not recorded)')}; this "
           f"CPU ({here.label}) has no VNNI, where 8-bit int8 products saturate and fidelity drops. Re-check it here "
           f"with `samedge fidelity {path}`, or re-quantize with --int8-scheme reduce-range (safe on every CPU)")
    log.warning(msg)
    warnings.warn(msg, Int8IsaWarning, stacklevel=3)


FIDELITY_DIR = "fidelity"


def fidelity_path(bundle_dir: Path, backend: str, device: str, precision: str) -> Path:
    """Where `samedge fidelity` writes (and `samedge bench` reads) one backend x device x precision report."""
    name = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", part).strip("_") for part in (backend, device, precision))
    return Path(bundle_dir) / FIDELITY_DIR / f"{name}.json"
