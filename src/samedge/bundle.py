"""A bundle directory: graphs + manifest.json. Loading checks that the files are there and intact."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

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

    def decoder_for(self, num_points: int | None) -> GraphInfo:
        """The decoder graph to use for K clicks (a box counts as one); exact static match first."""
        for g in self.manifest.decoders:
            if num_points is not None and g.num_points == num_points:
                return g
        for g in self.manifest.decoders:
            if g.num_points is None:
                return g
        supported = sorted(g.num_points for g in self.manifest.decoders if g.num_points is not None)
        raise BundleError(f"this bundle has only static decoders for {supported} points (a box counts as one); "
                          f"the prompt needs {num_points}. Re-export with --decoder-points including "
                          f"{num_points}, or with the dynamic decoder.")


def load_bundle(path: str | Path, verify_hashes: bool = False, warn_random: bool = True) -> Bundle:
    """Read and check a bundle. Sizes are always checked; sha256 only with verify_hashes (slow for GBs)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle directory {path} does not exist")
    manifest = read_manifest(path)
    for graph in manifest.graphs():
        for name in filter(None, (graph.file, graph.external_data)):
            f = path / name
            if not f.is_file():
                raise BundleError(f"bundle {path} is missing {name} ({graph.role}); re-export it")
        actual = (path / graph.file).stat().st_size
        if actual != graph.bytes:
            raise BundleError(f"{path / graph.file} is {actual} bytes but the manifest says {graph.bytes}: "
                              "the file is truncated, corrupt or from another export")
        if verify_hashes:
            from .weights import sha256_of
            if sha256_of(path / graph.file) != graph.sha256:
                raise BundleError(f"{path / graph.file} fails its sha256 check against the manifest")
    key = str(path.resolve())
    if warn_random and manifest.weights.is_random and key not in _warned_random:
        _warned_random.add(key)
        msg = (f"bundle {path} was exported from RANDOM weights (seed {manifest.weights.seed}): "
               "its masks are meaningless; only latency and fidelity figures are")
        log.warning(msg)
        warnings.warn(msg, RandomWeightsWarning, stacklevel=2)
    return Bundle(path, manifest)
