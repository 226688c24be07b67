"""SAM 2.1's video-only modules (memory attention, memory encoder), defined so that an official checkpoint
loads strictly and completely. samedge runs SAM 2.1 in image mode: none of these is in an exported graph, and
they have no forward (video tracking is not implemented). Keys match `memory_attention.*` / `memory_encoder.*`.
"""
from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d

D_MODEL = 256
MEM_DIM = 64


class _Attention(nn.Module):
    """Parameters of SAM 2's (RoPE) attention: q/k/v/out projections; k and v may read a narrower input."""

    def __init__(self, dim: int = D_MODEL, kv_in_dim: int = D_MODEL) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_in_dim, dim)
        self.v_proj = nn.Linear(kv_in_dim, dim)
        self.out_proj = nn.Linear(dim, dim)


class MemoryAttentionLayer(nn.Module):
    def __init__(self, dim: int = D_MODEL, feedforward: int = 2048) -> None:
        super().__init__()
        self.self_attn = _Attention(dim)
        self.cross_attn_image = _Attention(dim, kv_in_dim=MEM_DIM)
        self.linear1 = nn.Linear(dim, feedforward)
        self.linear2 = nn.Linear(feedforward, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)


class MemoryAttention(nn.Module):
    def __init__(self, num_layers: int = 4, dim: int = D_MODEL) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)


class MaskDownSampler(nn.Module):
    """conv 3x3/2 + LayerNorm2d + GELU, four times (1 -> 4 -> 16 -> 64 -> 256 channels), then a 1x1 conv."""

    def __init__(self, dim: int = D_MODEL) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 1
        for out in (4, 16, 64, 256):
            layers += [nn.Conv2d(ch, out, kernel_size=3, stride=2, padding=1), LayerNorm2d(out), nn.GELU()]
            ch = out
        layers.append(nn.Conv2d(ch, dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)


class CXBlock(nn.Module):
    """ConvNeXt block parameters: depthwise 7x7 conv, LayerNorm2d, pointwise MLP, layer scale."""

    def __init__(self, dim: int = D_MODEL) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))


class Fuser(nn.Module):
    def __init__(self, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock() for _ in range(num_layers))


class MemoryEncoder(nn.Module):
    def __init__(self, dim: int = D_MODEL, out_dim: int = MEM_DIM) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(dim)
        self.pix_feat_proj = nn.Conv2d(dim, dim, kernel_size=1)
        self.fuser = Fuser()
        self.out_proj = nn.Conv2d(dim, out_dim, kernel_size=1)
