"""The SAM 2.1 module in image mode, with every entry of the official checkpoint's `"model"` state dict."""
from __future__ import annotations

import torch
from torch import nn

from ..model_types import HieraConfig, ModelSpec
from .common import MLP
from .hiera import Sam2ImageEncoder
from .prompt_encoder import PromptEncoder
from .sam2_decoder import Sam2MaskDecoder
from .sam2_video import MEM_DIM, MemoryAttention, MemoryEncoder

HIDDEN_DIM = 256
NUM_MASKMEM = 7


class Sam2(nn.Module):
    """image_encoder + sam_prompt_encoder + sam_mask_decoder (what image mode runs), no_mem_embed (added to the
    64x64 features in image mode), and the video-only parameters, kept so a checkpoint loads strictly."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if not isinstance(spec.encoder, HieraConfig):
            raise TypeError(f"{spec.name} is not a SAM 2.1 model")
        self.spec = spec
        self.image_encoder = Sam2ImageEncoder(spec.encoder)
        self.sam_prompt_encoder = PromptEncoder()
        self.sam_mask_decoder = Sam2MaskDecoder()
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, HIDDEN_DIM))
        # video only
        self.memory_attention = MemoryAttention()
        self.memory_encoder = MemoryEncoder()
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(NUM_MASKMEM, 1, 1, MEM_DIM))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, HIDDEN_DIM))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, HIDDEN_DIM))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, MEM_DIM))
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.obj_ptr_proj = MLP(HIDDEN_DIM, HIDDEN_DIM, HIDDEN_DIM, 3)
        self.obj_ptr_tpos_proj = nn.Linear(HIDDEN_DIM, MEM_DIM)

    # The names the shared export code uses for SAM's modules.
    @property
    def prompt_encoder(self) -> PromptEncoder:
        return self.sam_prompt_encoder

    @property
    def mask_decoder(self) -> Sam2MaskDecoder:
        return self.sam_mask_decoder

    def image_features(self, image: torch.Tensor, pos_embed: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised (1, 3, 1024, 1024) -> image embedding (1, 256, 64, 64) with no_mem_embed added, and the
        high-res features after conv_s0 / conv_s1: (1, 32, 256, 256), (1, 64, 128, 128). pos_embed: the trunk's
        precomputed position embedding (see Hiera.forward)."""
        s0, s1, embedding = self.image_encoder(image, pos_embed)
        embedding = embedding + self.no_mem_embed.reshape(1, -1, 1, 1)
        return embedding, self.sam_mask_decoder.conv_s0(s0), self.sam_mask_decoder.conv_s1(s1)
