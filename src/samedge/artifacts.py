"""Size and sha256 of a bundle artifact: a single file, or a directory (CoreML's .mlpackage)."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def artifact_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in _files(Path(path)))


def artifact_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """A file's sha256; for a directory, one digest over each file's relative name and contents."""
    path = Path(path)
    digest = hashlib.sha256()
    for f in _files(path):
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def is_bundle_dir(path: Path) -> bool:
    """A directory whose manifest.json says it is a samedge bundle (what --overwrite may replace)."""
    import json
    manifest = Path(path) / "manifest.json"
    if not Path(path).is_dir() or Path(path).is_symlink() or not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("format") == "samedge-bundle"
    except (OSError, ValueError, AttributeError):
        return False


def check_output_dir(out_dir: Path, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse, before any work, an --out that is not ours to write: a file, a directory that is not a samedge
    bundle (--overwrite replaces only bundles), or a directory holding or inside one of the inputs."""
    from .errors import InputError
    out_dir = Path(out_dir)
    resolved = out_dir.resolve()
    for src in inputs:
        src = Path(src).resolve()
        if resolved == src or resolved in src.parents or src in resolved.parents:
            raise InputError(f"--out {out_dir} is, holds or lies inside the input {src}; write a new bundle "
                             "beside it (e.g. --out BUNDLE-int8)")
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise InputError(f"--out {out_dir} exists and is not a directory; a bundle is a directory: choose a new path")
    if not out_dir.exists():
        return
    if not overwrite:
        raise InputError(f"{out_dir} already exists; pass --overwrite to replace it")
    if not is_bundle_dir(out_dir):
        raise InputError(f"--overwrite replaces only a samedge bundle, and {out_dir} is not one (no samedge "
                         "manifest.json); nothing was touched. Choose a new --out or remove it yourself")


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """A hidden work directory beside out_dir that replaces out_dir when the block finishes, and is
    deleted if it raises: a failed export or quantization leaves nothing at out_dir. An existing out_dir
    is replaced only if it is a samedge bundle (checked again here, as it may have changed meanwhile)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not is_bundle_dir(out_dir):
        from .errors import InputError
        raise InputError(f"{out_dir} exists and is not a samedge bundle; it will not be replaced")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield work
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
