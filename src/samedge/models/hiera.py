"""SAM 2.1's image encoder: the Hiera trunk (windowed + global attention, q-pooling between stages) and the
FPN neck. State-dict keys match the official checkpoints' `image_encoder.*` entries.

Shapes for a (1, 3, 1024, 1024) input: the trunk's four stages give (1, C, 256, 256), (1, 2C, 128, 128),
(1, 4C, 64, 64), (1, 8C, 32, 32); the neck projects each to 256 channels, adds the nearest-upsampled 32x32
level to the 64x64 one (top-down fusion on the two lowest-resolution levels only), and drops the 32x32 level:
the encoder returns [(1, 256, 256, 256), (1, 256, 128, 128), (1, 256, 64, 64)].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model_types import HieraConfig
from .common import MLP

NECK_DIM = 256
FPN_TOP_DOWN_LEVELS = (2, 3)  # the 64x64 and 32x32 levels; 256x256 and 128x128 take the lateral conv only
SCALP = 1  # the 32x32 level feeds the 64x64 one and is then dropped


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, window, window, C), zero-padding H and W up to multiples of window."""
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded_hw: tuple[int, int],
                       hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of window_partition: (B * nW, window, window, C) -> (B, H, W, C), padding removed."""
    hp, wp = padded_hw
    b = windows.shape[0] // (hp * wp // window // window)
    x = windows.reshape(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :hw[0], :hw[1], :] if (hp, wp) != tuple(hw) else x


def _pool(x: torch.Tensor, pool: nn.Module | None) -> torch.Tensor:
    """Max-pool a channels-last (B, H, W, C) tensor."""
    if pool is None:
        return x
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head attention over (B, H, W, C) tokens; with q_pool the queries (and so the output) are pooled."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = torch.unbind(self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1), 2)
        if self.q_pool is not None:
            q = _pool(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block; window > 0: attention within windows; q_stride: the stage's first block,
    which pools 2x2 and widens the channels (the shortcut through `proj`)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, window: int, q_stride: int | None) -> None:
        super().__init__()
        self.dim, self.dim_out, self.window = dim, dim_out, window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.q_stride = q_stride
        self.pool = nn.MaxPool2d(q_stride, q_stride) if q_stride else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_pool=self.pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, 4 * dim_out, dim_out, 2, act=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = _pool(self.proj(x), self.pool)
        window = self.window
        if window > 0:
            hw = x.shape[1:3]
            x, padded = window_partition(x, window)
        x = self.attn(x)
        if self.q_stride:  # the windows shrank with the queries
            window = self.window // self.q_stride
            hw = shortcut.shape[1:3]
            padded = tuple(s + (window - s % window) % window for s in hw) if window > 0 else hw
        if self.window > 0:
            x = window_unpartition(x, window, padded, hw)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # channels-last (B, H/4, W/4, C)


class Hiera(nn.Module):
    """(B, 3, 1024, 1024) -> the four stage outputs, NCHW, highest resolution first."""

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.pos_embed_bkg_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, cfg.window_spec[0], cfg.window_spec[0]))
        ends = [sum(cfg.stages[:i + 1]) - 1 for i in range(len(cfg.stages))]
        self.stage_ends = tuple(ends)
        pool_blocks = {e + 1 for e in ends[:-1]}  # the first block of stages 2..4 pools
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        blocks = []
        for i in range(sum(cfg.stages)):
            dim_out, window = dim, cfg.window_spec[stage]  # a stage's first block keeps the previous window
            if i in cfg.global_att_blocks:
                window = 0
            if i - 1 in ends:
                dim_out, heads, stage = dim * 2, heads * 2, stage + 1
            blocks.append(MultiScaleBlock(dim, dim_out, heads, window, 2 if i in pool_blocks else None))
            dim = dim_out
        self.blocks = nn.ModuleList(blocks)

    def _pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """The background embedding (bicubic to the token grid) plus the window embedding tiled over it."""
        pos = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        reps = [a // b for a, b in zip(pos.shape, self.pos_embed_window.shape)]
        return (pos + self.pos_embed_window.tile(reps)).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor, pos_embed: torch.Tensor | None = None) -> list[torch.Tensor]:
        """pos_embed: the precomputed _pos_embed of the token grid (export graphs pass it as a constant, since
        some converters, e.g. coremltools, have no bicubic resize)."""
        x = self.patch_embed(x)
        x = x + (self._pos_embed(tuple(x.shape[1:3])) if pos_embed is None else pos_embed)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


class FpnNeck(nn.Module):
    """1x1 lateral convs to 256 channels; top-down (nearest 2x) fusion on FPN_TOP_DOWN_LEVELS only."""

    def __init__(self, channel_list: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for ch in channel_list:  # deepest first, as in the official module
            lateral = nn.Sequential()
            lateral.add_module("conv", nn.Conv2d(ch, NECK_DIM, kernel_size=1))
            self.convs.append(lateral)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(self.convs) - 1
        out: list[torch.Tensor] = [xs[0]] * len(xs)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in FPN_TOP_DOWN_LEVELS and prev is not None:
                prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            out[i] = prev
        return out


class Sam2ImageEncoder(nn.Module):
    """Trunk + neck: (1, 3, 1024, 1024) -> [(1, 256, 256, 256), (1, 256, 128, 128), (1, 256, 64, 64)]."""

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        self.trunk = Hiera(cfg)
        self.neck = FpnNeck(cfg.channel_list)

    def forward(self, x: torch.Tensor, pos_embed: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.neck(self.trunk(x, pos_embed))[:-SCALP]
