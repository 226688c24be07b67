"""The SAM module (image encoder + prompt encoder + mask decoder) and its builder."""
from __future__ import annotations

import torch
from torch import nn

from ..model_types import PIXEL_MEAN, PIXEL_STD, ModelSpec, TinyViTConfig, get_spec
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViT


class Sam(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        if isinstance(spec.encoder, TinyViTConfig):
            self.image_encoder: nn.Module = TinyViT(spec.encoder)
        else:
            self.image_encoder = ImageEncoderViT(spec.encoder)
        self.prompt_encoder = PromptEncoder()
        self.mask_decoder = MaskDecoder()
        # Not persistent: the official checkpoints do not carry them.
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)


def build_sam(model_type: str) -> nn.Module:
    """Build an architecture (Sam, or Sam2 for the SAM 2.1 models) with PyTorch's default initialisation
    (use randomize_weights or load_checkpoint afterwards)."""
    spec = get_spec(model_type)
    if spec.family == "sam2":
        from .sam2 import Sam2
        return Sam2(spec).eval()
    return Sam(spec).eval()
