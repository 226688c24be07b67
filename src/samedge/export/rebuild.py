"""The PyTorch model a bundle was exported from, rebuilt from its manifest (for conversion and parity)."""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, InputError
from ..manifest import Manifest
from ..weights import checkpoint_cache_dir, official_checkpoint, sha256_of


def model_for_manifest(manifest: Manifest, checkpoint: Path | None = None):
    """Random weights come back from the recorded seed. Checkpoint weights need the same file again (its
    sha256 is checked against the manifest); a downloaded one is looked up in the download cache."""
    from ..models import build_sam, load_checkpoint, randomize_weights
    w = manifest.weights
    if w.is_random:
        if checkpoint is not None:
            raise InputError("this bundle was exported from random weights; do not pass a checkpoint")
        return randomize_weights(build_sam(manifest.model_type), w.seed).eval()
    if checkpoint is None and w.source == "download":
        candidate = checkpoint_cache_dir() / official_checkpoint(manifest.model_type).file
        checkpoint = candidate if candidate.is_file() else None
    if checkpoint is None:
        raise InputError(f"this bundle was exported from checkpoint {w.checkpoint_file} (sha256 "
                         f"{w.checkpoint_sha256[:12]}...); pass it with --checkpoint to rebuild the reference")
    actual = sha256_of(Path(checkpoint))
    if actual != w.checkpoint_sha256:
        raise CheckpointError(f"{checkpoint} has sha256 {actual[:12]}... but the bundle was exported from "
                              f"{w.checkpoint_file} with sha256 {w.checkpoint_sha256[:12]}...")
    return load_checkpoint(Path(checkpoint), manifest.model_type).eval()
