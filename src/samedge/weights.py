"""Official checkpoints: where they live, their sha256, and a verified, cached download."""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import DownloadError
from .model_types import get_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfficialCheckpoint:
    model_type: str
    file: str
    url: str
    bytes: int
    sha256: str


# From the official READMEs; sizes and hashes are the values pinned by several independent projects.
OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    "vit_b": OfficialCheckpoint("vit_b", "sam_vit_b_01ec64.pth",
                                "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
                                375042383, "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    "vit_l": OfficialCheckpoint("vit_l", "sam_vit_l_0b3195.pth",
                                "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
                                1249524607, "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    "vit_h": OfficialCheckpoint("vit_h", "sam_vit_h_4b8939.pth",
                                "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
                                2564550879, "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    "mobile_sam": OfficialCheckpoint("mobile_sam", "mobile_sam.pt",
                                     "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
                                     40728226, "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"),
    # SAM 2.1 (sam2's checkpoints/download_ckpts.sh): dicts whose "model" entry is the state dict
    "sam2.1_hiera_tiny": OfficialCheckpoint("sam2.1_hiera_tiny", "sam2.1_hiera_tiny.pt",
                              "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt",
                              156008466, "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
    "sam2.1_hiera_small": OfficialCheckpoint("sam2.1_hiera_small", "sam2.1_hiera_small.pt",
                              "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_small.pt",
                              184416285, "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
    "sam2.1_hiera_base_plus": OfficialCheckpoint("sam2.1_hiera_base_plus", "sam2.1_hiera_base_plus.pt",
                              "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_base_plus.pt",
                              323606802, "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
    "sam2.1_hiera_large": OfficialCheckpoint("sam2.1_hiera_large", "sam2.1_hiera_large.pt",
                              "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt",
                              898083611, "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
}


def cache_dir() -> Path:
    """$SAMEDGE_CACHE, else the platform's user cache dir (e.g. ~/.cache/samedge)."""
    env = os.environ.get("SAMEDGE_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("samedge"))


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def official_checkpoint(model_type: str) -> OfficialCheckpoint:
    spec = get_spec(model_type)
    if spec.name not in OFFICIAL_CHECKPOINTS:
        raise DownloadError(f"{spec.name} has no official checkpoint; use --weights random")
    return OFFICIAL_CHECKPOINTS[spec.name]


def checkpoint_cache_dir() -> Path:
    """Where --download keeps checkpoints, and where convert / fidelity / bench look for them again."""
    return cache_dir() / "checkpoints"


def download_checkpoint(model_type: str, dest_dir: Path | None = None, progress: bool = True,
                        opener: Callable[[str], object] = urllib.request.urlopen) -> Path:
    """Fetch the official checkpoint (once), verify its sha256, and return its cached path."""
    ckpt = official_checkpoint(model_type)
    dest_dir = Path(dest_dir) if dest_dir else checkpoint_cache_dir()
    dest = dest_dir / ckpt.file
    if dest.is_file():
        if sha256_of(dest) == ckpt.sha256:
            return dest
        log.warning("cached %s fails its sha256 check; downloading it again", dest)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=ckpt.file, suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        try:
            response = opener(ckpt.url)
        except (urllib.error.URLError, OSError) as exc:
            raise DownloadError(f"cannot download {ckpt.url} ({exc}). Are you offline? Download it by hand "
                                f"and pass --checkpoint PATH (sha256 {ckpt.sha256}).") from exc
        digest = hashlib.sha256()
        from tqdm import tqdm
        with os.fdopen(fd, "wb") as out, tqdm(total=ckpt.bytes, unit="B", unit_scale=True, desc=ckpt.file,
                                               disable=not progress) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
        if digest.hexdigest() != ckpt.sha256:
            raise DownloadError(f"{ckpt.url} downloaded with sha256 {digest.hexdigest()}, "
                                f"expected {ckpt.sha256}; the file was discarded")
        tmp.replace(dest)
        return dest
    finally:
        if tmp.exists():
            tmp.unlink()
