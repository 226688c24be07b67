from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

# segment-anything 1.0 (the upstream check) imports torchvision, which has no CPU build that loads beside this
# torch; a minimal test-only stand-in lives in tests/upstream_shim
sys.path.insert(0, str(Path(__file__).with_name("upstream_shim")))


@pytest.fixture(scope="session")
def samples():
    from samedge.data import sample_images
    return sample_images()


@pytest.fixture(scope="session")
def tiny_model():
    from samedge.models import build_sam, randomize_weights
    return randomize_weights(build_sam("test_tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """The real decoder with a tiny ViT encoder, exported once (dynamic decoder + static 1 and 2 clicks, and
    split prompt graphs of a static batch of 3 for both)."""
    from samedge.export.pipeline import ExportConfig, export_bundle
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(ExportConfig("test_tiny", out, seed=0, decoder_points=(1, 2), decoder_batch_sizes=(3,),
                               parity_images=1))
    return out


@pytest.fixture(scope="session")
def reference(tiny_model):
    from samedge.export.reference import TorchReferencePredictor
    return TorchReferencePredictor(tiny_model)


@pytest.fixture(scope="session")
def multi_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle with OpenVINO IR (parity-gated at f32) and CoreML packages added."""
    out = tmp_path_factory.mktemp("multi") / "tiny"
    from samedge.export.convert import ConvertConfig, add_formats
    shutil.copytree(tiny_bundle, out)
    add_formats(out, ConvertConfig(("openvino", "coreml"), parity_images=1))
    return out
