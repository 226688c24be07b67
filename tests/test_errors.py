"""Bad input gives a typed error that names what was given and what is allowed."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from samedge import BundleError, InputError, ManifestVersionError, SamPredictor, load_bundle


@pytest.fixture(scope="module")
def ready(tiny_bundle, samples):
    predictor = SamPredictor(tiny_bundle)
    predictor.set_image(samples[0].rgb)  # 375 x 500
    return predictor


@pytest.mark.parametrize("image, match", [
    (np.zeros((10, 10, 3), np.float32), "dtype uint8"),
    (np.zeros((10, 10), np.uint8), r"shape \(H, W, 3\)"),
    (np.zeros((10, 10, 4), np.uint8), "alpha"),
    (np.zeros((0, 10, 3), np.uint8), "at least 1x1"),
    ([[1, 2, 3]], "numpy array"),
])
def test_bad_images(ready, image, match):
    with pytest.raises(InputError, match=match):
        ready.set_image(image)


def test_bad_image_format(ready, samples):
    with pytest.raises(InputError, match="'RGB' or 'BGR'"):
        ready.set_image(samples[0].rgb, image_format="rgb")


@pytest.mark.parametrize("kwargs, match", [
    ({"point_coords": np.array([[np.nan, 3.0]]), "point_labels": np.array([1])}, "NaN"),
    ({"point_coords": np.array([[600.0, 10.0]]), "point_labels": np.array([1])}, r"outside the 500x375 image"),
    ({"point_coords": np.array([[-1.0, 10.0]]), "point_labels": np.array([1])}, "outside"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([2])}, r"got \[2\].*box="),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([1, 0])}, r"\(1,\) array"),
    ({"point_coords": np.array([10.0, 10.0]), "point_labels": np.array([1])}, r"\(N, 2\)"),
    ({"point_coords": np.array([[10.0, 10.0]])}, "together"),
    ({"box": np.array([300.0, 10.0, 100.0, 200.0])}, "x0 <= x1"),
    ({"box": np.array([10.0, 10.0, 100.0])}, r"shape \(4,\)"),
    ({"box": np.array([10.0, 10.0, 100.0, 900.0])}, "outside"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([1]),
      "mask_input": np.zeros((256, 256), np.float32)}, r"\(1, 256, 256\)"),
    ({"point_coords": np.array([[10.0, 10.0]]), "point_labels": np.array([1]),
      "mask_input": np.zeros((1, 64, 64), np.float32)}, r"\(1, 256, 256\)"),
    ({}, "at least one prompt"),
])
def test_bad_prompts(ready, kwargs, match):
    with pytest.raises(InputError, match=match):
        ready.predict(**kwargs)


def _copy(tiny_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    return dst


@pytest.mark.parametrize("field, value", [("threads", 0), ("threads", True), ("threads", "2"), ("threads", 1.5),
                                          ("streams", 0), ("streams", True)])
def test_bad_session_counts_are_named(field, value):
    from samedge.runtimes import SessionOptions
    with pytest.raises(InputError, match=f"{field} must be a positive integer or None, got {value!r}"):
        SessionOptions(**{field: value})


def test_missing_bundle_files(tiny_bundle, tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    b = _copy(tiny_bundle, tmp_path)
    (b / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match="missing decoder.onnx"):
        load_bundle(b)
    (b / "manifest.json").unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(b)


def test_truncated_and_corrupt_graphs(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    data = (b / "encoder.onnx").read_bytes()
    (b / "encoder.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated, corrupt"):
        load_bundle(b)
    (b / "encoder.onnx").write_bytes(b"\x00garbage" * (len(data) // 8) + b"\x00" * (len(data) % 8))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(b, verify_hashes=True)
    with pytest.raises(BundleError, match="encoder.onnx fails its sha256 check"):
        SamPredictor(b)  # hashes are checked by default
    with pytest.raises(BundleError, match="encoder.onnx is not a readable ONNX graph"):
        load_bundle(b, verify_hashes=False)  # without hashes the graph is still parsed before use


def test_manifest_versions_and_garbage(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ManifestVersionError, match="format_version 99.*reads versions \\[1, 2, 3, 4\\]"):
        load_bundle(b)
    (b / "manifest.json").write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(BundleError, match="not a samedge bundle"):
        load_bundle(b)
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(b)
    del manifest["encoder"]
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="malformed"):
        load_bundle(b)


def test_unsupported_static_point_count(tiny_bundle, tmp_path, samples):
    b = _copy(tiny_bundle, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["decoders"] = [d for d in manifest["decoders"] if d["num_points"] is not None]
    manifest["split"]["prompts"] = [d for d in manifest["split"]["prompts"] if d["num_points"] is not None]
    (b / "manifest.json").write_text(json.dumps(manifest))
    predictor = SamPredictor(b)
    predictor.set_image(samples[0].rgb)
    predictor.predict(np.array([[10.0, 10.0]]), np.array([1]))  # 1 click: prompt_p1
    with pytest.raises(BundleError, match=r"no onnx decoder for 3 clicks.*static onnx decoders take \[1, 2\] clicks"):
        predictor.predict(np.array([[10.0, 10.0], [20, 20], [30, 30]]), np.array([1, 1, 0]))
