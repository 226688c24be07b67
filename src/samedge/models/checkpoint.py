"""Official-format checkpoints: strict loading, model-type detection, seeded random weights."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..model_types import MODEL_SPECS, HieraConfig, TinyViTConfig, ViTConfig, get_spec
from .sam import build_sam

log = logging.getLogger(__name__)


def detect_model_type(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Which known architecture a state dict belongs to, from its encoder's keys and widths."""
    if "image_encoder.trunk.pos_embed" in state_dict:  # SAM 2.1: Hiera width and block count
        width = state_dict["image_encoder.trunk.pos_embed"].shape[1]
        depth = len({k.split(".")[3] for k in state_dict if k.startswith("image_encoder.trunk.blocks.")})
        for spec in MODEL_SPECS.values():
            enc = spec.encoder
            if isinstance(enc, HieraConfig) and enc.embed_dim == width and sum(enc.stages) == depth:
                return spec.name
        return None
    if "image_encoder.layers.0.blocks.0.conv1.c.weight" in state_dict:
        width = state_dict["image_encoder.neck.0.weight"].shape[1] if "image_encoder.neck.0.weight" in state_dict else None
        for spec in MODEL_SPECS.values():
            if isinstance(spec.encoder, TinyViTConfig) and spec.encoder.embed_dims[-1] == width:
                return spec.name
        return None
    pos = state_dict.get("image_encoder.pos_embed")
    if pos is None:
        return None
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for spec in MODEL_SPECS.values():
        enc = spec.encoder
        if isinstance(enc, ViTConfig) and enc.embed_dim == pos.shape[-1] and enc.depth == depth:
            return spec.name
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint: the file itself (SAM, MobileSAM) or its "model" entry
    (SAM 2.1, which may carry other entries beside it)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad pickle/zip
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}. "
                              "Expected an official SAM/MobileSAM .pth/.pt state dict or a SAM 2.1 .pt file.") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"checkpoint {path} is not a plain state dict of tensors (found {keys}); "
                              "expected the official format, e.g. sam_vit_b_01ec64.pth, or sam2.1_hiera_tiny.pt "
                              "({'model': state_dict})")
    return obj


def _family_name(model_type: str) -> str:
    return "SAM 2.1" if get_spec(model_type).family == "sam2" else "SAM 1 / MobileSAM"


def load_checkpoint(path: str | Path, model_type: str) -> torch.nn.Module:
    """Build `model_type` and load `path` into it strictly; a checkpoint of another model is named."""
    spec = get_spec(model_type)
    state_dict = read_state_dict(path)
    found = detect_model_type(state_dict)
    if found is not None and found != spec.name and get_spec(found).family != spec.family:
        raise CheckpointError(f"checkpoint {path} is a {_family_name(found)} checkpoint ({found}), but "
                              f"--model {spec.name} is a {_family_name(spec.name)} model; pass --model {found}, "
                              f"or the {spec.name} checkpoint {spec.official_file}")
    if found != spec.name:
        what = f"a {found} checkpoint" if found else "no known SAM-family checkpoint"
        raise CheckpointError(f"checkpoint {path} looks like {what}, but --model {spec.name} was requested; "
                              f"pass --model {found}" if found else
                              f"checkpoint {path} is {what} (no image_encoder.pos_embed or TinyViT keys); "
                              f"--model {spec.name} expects {spec.official_file}")
    model = build_sam(spec.name)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match the {spec.name} architecture: {exc}") from exc
    return model


def randomize_weights(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded random weights for architecture-only work; depends only on the seed and the shapes.

    PyTorch's default init leaves many tensors constant (zero positional embeddings, relative
    position tables and attention biases, unit norm scales, BatchNorm statistics). Constant tensors
    would hide export bugs (a mis-indexed table of zeros is still zeros), so every tensor is drawn
    here, at magnitudes large enough to matter in the forward pass.
    """
    from torch import nn
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape, bound):
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound

    with torch.no_grad():
        for module in model.modules():
            own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
            for name, t in own:
                if not t.is_floating_point() or name in ("pixel_mean", "pixel_std"):
                    continue
                shape = t.shape
                if isinstance(module, nn.Embedding) or name == "positional_encoding_gaussian_matrix":
                    value = torch.randn(shape, generator=gen)
                elif name == "running_var":
                    value = 0.5 + torch.rand(shape, generator=gen)
                elif name == "attention_biases":
                    value = torch.randn(shape, generator=gen)
                elif name == "weight" and t.ndim == 1:  # LayerNorm / BatchNorm scales
                    value = 1 + 0.1 * torch.randn(shape, generator=gen)
                elif t.ndim >= 2 and name == "weight":  # PyTorch's default scale: U(+-1/sqrt(fan_in))
                    value = uniform(shape, 1 / math.sqrt(math.prod(shape[1:])))
                elif name in ("pos_embed", "pos_embed_window", "rel_pos_h", "rel_pos_w"):
                    value = 0.1 * torch.randn(shape, generator=gen)
                else:  # biases, running means
                    value = 0.02 * torch.randn(shape, generator=gen)
                t.copy_(value)
    return model
