"""Official checkpoint download: sha256 verification, caching, a clear offline error."""
from __future__ import annotations

import hashlib
import io
import urllib.error

import pytest

from samedge import weights
from samedge.errors import DownloadError


@pytest.fixture
def fake_official(monkeypatch):
    payload = b"pretend checkpoint bytes" * 1000
    entry = weights.OfficialCheckpoint("vit_b", "fake_vit_b.pth", "https://example.invalid/fake_vit_b.pth",
                                       len(payload), hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(weights.OFFICIAL_CHECKPOINTS, "vit_b", entry)
    return payload


def test_download_verifies_and_caches(tmp_path, fake_official):
    calls = []

    def opener(url):
        calls.append(url)
        return io.BytesIO(fake_official)

    path = weights.download_checkpoint("vit_b", tmp_path, progress=False, opener=opener)
    assert path.read_bytes() == fake_official and calls == ["https://example.invalid/fake_vit_b.pth"]
    assert weights.download_checkpoint("vit_b", tmp_path, progress=False, opener=opener) == path
    assert len(calls) == 1  # served from the cache


def test_sha_mismatch_discards_the_file(tmp_path, fake_official):
    with pytest.raises(DownloadError, match="expected .* discarded"):
        weights.download_checkpoint("vit_b", tmp_path, progress=False, opener=lambda url: io.BytesIO(b"tampered"))
    assert list(tmp_path.iterdir()) == []


def test_offline_error_says_what_to_do(tmp_path, fake_official):
    def offline(url):
        raise urllib.error.URLError("Temporary failure in name resolution")
    with pytest.raises(DownloadError, match="offline.*--checkpoint PATH"):
        weights.download_checkpoint("vit_b", tmp_path, progress=False, opener=offline)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMEDGE_CACHE", str(tmp_path))
    assert weights.cache_dir() == tmp_path


def test_no_official_checkpoint_for_test_model():
    with pytest.raises(DownloadError, match="no official checkpoint"):
        weights.official_checkpoint("test_tiny")
