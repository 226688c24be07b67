"""A bundle directory: graphs + manifest.json. Loading checks that the files are there and intact."""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from .artifacts import artifact_bytes, artifact_sha256
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
        for g in decoders:
            if num_points is not None and g.num_points == num_points:
                return g
        if not static_only:
            for g in decoders:
                if g.num_points is None:
                    return g
        supported = sorted(g.num_points for g in decoders if g.num_points is not None)
        reason = f" ({why_static} needs static shapes)" if static_only and why_static else ""
        raise BundleError(f"no {fmt} decoder for {num_points} clicks (a box counts as one){reason}; this bundle's "
                          f"static {fmt} decoders take {supported} clicks. Re-export with --decoder-points "
                          f"including {num_points}" + ("" if static_only else ", or with the dynamic decoder") + ".")


def load_bundle(path: str | Path, verify_hashes: bool = False, warn_random: bool = True) -> Bundle:
    """Read and check a bundle. Sizes are always checked; sha256 only with verify_hashes (slow for GBs)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle directory {path} does not exist")
    manifest = read_manifest(path)
    for graph in manifest.graphs():
        for name, expected in ((graph.file, graph.bytes), (graph.external_data, graph.external_data_bytes)):
            if name is None:
                continue
            f = path / name
            if not f.exists():
                raise BundleError(f"bundle {path} is missing {name} ({graph.format} {graph.role}); re-export it")
            actual = artifact_bytes(f)
            if expected is not None and actual != expected:
                raise BundleError(f"{f} is {actual} bytes but the manifest says {expected}: "
                                  "the file is truncated, corrupt or from another export")
        if verify_hashes and artifact_sha256(path / graph.file) != graph.sha256:
            raise BundleError(f"{path / graph.file} fails its sha256 check against the manifest")
    key = str(path.resolve())
    if warn_random and manifest.weights.is_random and key not in _warned_random:
        _warned_random.add(key)
        msg = (f"bundle {path} was exported from RANDOM weights (seed {manifest.weights.seed}): "
               "its masks are meaningless; only latency and fidelity figures are")
        log.warning(msg)
        warnings.warn(msg, RandomWeightsWarning, stacklevel=2)
    return Bundle(path, manifest)


FIDELITY_DIR = "fidelity"


def fidelity_path(bundle_dir: Path, backend: str, device: str, precision: str) -> Path:
    """Where `samedge fidelity` writes (and `samedge bench` reads) one backend x device x precision report."""
    name = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", part).strip("_") for part in (backend, device, precision))
    return Path(bundle_dir) / FIDELITY_DIR / f"{name}.json"
