"""ViT-L and ViT-H: strict load of a saved state dict, export (ViT-H with external data), parity.

Minutes and several GB each, so marked slow: run with `bash scripts/test.sh -m slow`.
"""
from __future__ import annotations

import pytest
import torch

from samedge.bundle import load_bundle
from samedge.export.pipeline import ExportConfig, export_bundle
from samedge.models import build_sam, randomize_weights


@pytest.mark.slow
@pytest.mark.parametrize("model_type, external", [("vit_l", False), ("vit_h", True)])
def test_large_model_exports_from_a_saved_checkpoint(model_type, external, tmp_path):
    ckpt = tmp_path / f"{model_type}.pth"
    torch.save(randomize_weights(build_sam(model_type), seed=0).state_dict(), ckpt)
    out = tmp_path / model_type
    m = export_bundle(ExportConfig(model_type, out, weights="checkpoint", checkpoint=ckpt, parity_images=1))
    assert m.parity["passed"], m.parity["failures"]
    assert (m.encoder.external_data is not None) == external
    if external:
        assert (out / m.encoder.external_data).stat().st_size > 2_000_000_000
        assert m.encoder.simplify["tool"].startswith("skipped")  # recorded, not hidden
    else:
        assert m.encoder.simplify["tool"].startswith("onnxslim")
    load_bundle(out)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["base_plus", "large"])
def test_sam2_large_sizes_export_from_a_saved_official_format_checkpoint(size, tmp_path):
    """SAM 2.1 base+ and large: {"model": state_dict} saved like the official .pt, loaded strictly, exported with
    OpenVINO IR, parity on one photo (encoder outputs, every prompt kind) on both backends."""
    name = f"sam2.1_hiera_{size}"
    ckpt = tmp_path / f"{name}.pt"
    torch.save({"model": randomize_weights(build_sam(name), seed=0).state_dict()}, ckpt)
    out = tmp_path / name
    m = export_bundle(ExportConfig(name, out, weights="checkpoint", checkpoint=ckpt, parity_images=1,
                                   formats=("openvino",)))
    assert m.parity["passed"], m.parity["failures"]
    assert m.converted["openvino"].conversion["parity"]["passed"]
    load_bundle(out)
