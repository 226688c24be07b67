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


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """A hidden work directory beside out_dir that replaces out_dir when the block finishes, and is
    deleted if it raises: a failed export or quantization leaves nothing at out_dir."""
    out_dir = Path(out_dir)
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
