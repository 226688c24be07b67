"""State dicts of our definitions vs the official checkpoint layout."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from samedge.errors import CheckpointError
from samedge.models import build_sam, detect_model_type, load_checkpoint, randomize_weights
from samedge.weights import OFFICIAL_CHECKPOINTS

OFFICIAL = ["vit_b", "vit_l", "vit_h", "mobile_sam"]

# Facts of the official checkpoints (from the official code's shapes): a few keys a wrong layout gets wrong.
KNOWN_SHAPES = {
    "vit_b": {"image_encoder.pos_embed": (1, 64, 64, 768), "image_encoder.blocks.0.attn.rel_pos_h": (27, 64),
              "image_encoder.blocks.2.attn.rel_pos_h": (127, 64), "image_encoder.neck.0.weight": (256, 768, 1, 1)},
    "vit_l": {"image_encoder.blocks.5.attn.rel_pos_w": (127, 64), "image_encoder.blocks.23.mlp.lin1.weight": (4096, 1024)},
    "vit_h": {"image_encoder.blocks.31.attn.qkv.weight": (3840, 1280), "image_encoder.blocks.7.attn.rel_pos_h": (127, 80)},
    "mobile_sam": {"image_encoder.patch_embed.seq.0.c.weight": (32, 3, 3, 3),
                   "image_encoder.layers.1.blocks.0.attn.attention_biases": (4, 49),
                   "image_encoder.layers.2.blocks.0.attn.attention_biases": (5, 196),
                   "image_encoder.layers.2.downsample.conv2.c.weight": (320, 1, 3, 3),
                   "image_encoder.head.weight": (1000, 320)},
}
COMMON_SHAPES = {"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
                 "prompt_encoder.mask_downscaling.0.weight": (4, 1, 2, 2),
                 "mask_decoder.mask_tokens.weight": (4, 256),
                 "mask_decoder.output_upscaling.0.weight": (256, 64, 2, 2),
                 "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight": (128, 256),
                 "mask_decoder.iou_prediction_head.layers.2.weight": (4, 256)}


@pytest.mark.parametrize("model_type", OFFICIAL)
def test_strict_round_trip_through_a_checkpoint_file(model_type, tmp_path):
    model = randomize_weights(build_sam(model_type), seed=1)
    state = model.state_dict()
    path = tmp_path / OFFICIAL_CHECKPOINTS[model_type].file
    torch.save(state, path)
    loaded = load_checkpoint(path, model_type).state_dict()
    assert loaded.keys() == state.keys()
    for key in ("prompt_encoder.point_embeddings.1.weight", "mask_decoder.iou_token.weight",
                next(k for k in state if k.startswith("image_encoder."))):
        assert torch.equal(loaded[key], state[key])
    assert detect_model_type(state) == model_type
    del model, state, loaded


@pytest.mark.parametrize("model_type", OFFICIAL)
def test_known_official_shapes(model_type):
    state = build_sam(model_type).state_dict()
    for key, shape in {**KNOWN_SHAPES[model_type], **COMMON_SHAPES}.items():
        assert tuple(state[key].shape) == shape, key
    # pixel_mean/std are non-persistent in the official Sam: a checkpoint never has them.
    assert "pixel_mean" not in state and "image_encoder.layers.1.blocks.0.attn.attention_bias_idxs" not in state


@pytest.mark.parametrize("model_type", OFFICIAL)
def test_parameter_bytes_match_official_file_size(model_type):
    """The official file = our tensors' bytes + ~300-400 bytes of zip/pickle framing per entry.
    A missing or extra layer, or a wrong width, moves this far outside the band."""
    state = build_sam(model_type).state_dict()
    tensor_bytes = sum(t.numel() * t.element_size() for t in state.values())
    per_entry = (OFFICIAL_CHECKPOINTS[model_type].bytes - tensor_bytes) / len(state)
    assert 250 < per_entry < 450, per_entry


def test_wrong_model_type_is_named(tmp_path):
    path = tmp_path / "mobile_sam.pt"
    torch.save(build_sam("mobile_sam").state_dict(), path)
    with pytest.raises(CheckpointError, match="looks like a mobile_sam checkpoint.*--model vit_b"):
        load_checkpoint(path, "vit_b")


def test_vit_b_checkpoint_is_not_accepted_as_vit_l(tmp_path):
    path = tmp_path / "b.pth"
    torch.save(build_sam("vit_b").state_dict(), path)
    with pytest.raises(CheckpointError, match="vit_b"):
        load_checkpoint(path, "vit_l")


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(bad, "vit_b")
    wrapped = tmp_path / "wrapped.pth"  # a training checkpoint that is neither layout
    torch.save({"optimizer": {"lr": 0.1}, "epoch": 3}, wrapped)
    with pytest.raises(CheckpointError, match="not a plain state dict"):
        load_checkpoint(wrapped, "vit_b")
    foreign_model = tmp_path / "foreign_model.pt"  # SAM 2.1's {"model": state_dict} layout, foreign keys
    torch.save({"model": {"x": torch.zeros(1)}, "epoch": 3}, foreign_model)
    with pytest.raises(CheckpointError, match="no known SAM-family checkpoint"):
        load_checkpoint(foreign_model, "vit_b")
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(CheckpointError, match="no known SAM-family checkpoint"):
        load_checkpoint(other, "vit_b")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth", "vit_b")


def test_randomize_weights_is_seeded_and_leaves_no_constant_tensor():
    a = randomize_weights(build_sam("test_tiny"), seed=3).state_dict()
    b = randomize_weights(build_sam("test_tiny"), seed=3).state_dict()
    c = randomize_weights(build_sam("test_tiny"), seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["image_encoder.pos_embed"], c["image_encoder.pos_embed"])
    constant = [k for k, v in a.items() if v.is_floating_point() and v.numel() > 1 and torch.all(v == v.flatten()[0])]
    assert constant == []


def test_official_table_matches_shared_list():
    shared = Path(__file__).resolve().parents[2] / "shared" / "official_checkpoints.json"
    if not shared.is_file():
        pytest.skip("shared/official_checkpoints.json is not beside this checkout")
    data = json.loads(shared.read_text())
    names = {"vit_b": "vit_b", "vit_l": "vit_l", "vit_h": "vit_h", "vit_t": "mobile_sam",
             **{f"sam2.1_hiera_{s}": f"sam2.1_hiera_{s}" for s in ("tiny", "small", "base_plus", "large")}}
    assert set(names) == {k for k in data if not k.startswith("_")}  # every official file is downloadable
    for key, ours in names.items():
        c = OFFICIAL_CHECKPOINTS[ours]
        assert (c.file, c.url, c.bytes, c.sha256) == (data[key]["file"], data[key]["url"], data[key]["bytes"],
                                                      data[key]["sha256"])
