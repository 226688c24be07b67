"""TinyViT-5M as used by MobileSAM (the "vit_t" image encoder), without timm."""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..model_types import IMAGE_SIZE, TinyViTConfig
from .common import neck


class Conv2dBN(nn.Sequential):
    """Conv without bias followed by BatchNorm: keys c.* and bn.*."""

    def __init__(self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(3, embed_dim // 2, 3, 2, 1), nn.GELU(),
                                 Conv2dBN(embed_dim // 2, embed_dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, chans: int, expand_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(chans * expand_ratio)
        self.conv1 = Conv2dBN(chans, hidden)
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = Conv2dBN(hidden, chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        # MobileSAM keeps the last stage at 64x64: no stride into the 320-channel stage.
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # tokens (B, L, C) -> NCHW
            h, w = self.resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = F.gelu(self.conv1(x))
        x = self.conv3(F.gelu(self.conv2(x)))
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, out_dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim) for _ in range(depth))
        self.downsample = PatchMerging(resolution, dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Window attention with a learned bias per (|dy|, |dx|) offset, as in LeViT/TinyViT."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, key_dim * num_heads * 3)
        self.proj = nn.Linear(key_dim * num_heads, dim)
        points = list(itertools.product(range(resolution[0]), range(resolution[1])))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs).view(len(points), len(points)),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.key_dim], dim=3)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = Attention(dim, dim // num_heads, num_heads, (window, window))
        self.mlp = Mlp(dim, dim * 4)
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, length, c = x.shape
        shortcut = x
        if h == self.window and w == self.window:
            x = self.attn(x)
        else:
            ws = self.window
            x = x.view(b, h, w, c)
            pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
            if pad_b or pad_r:
                x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            ph, pw = h + pad_b, w + pad_r
            nh, nw = ph // ws, pw // ws
            x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
            x = self.attn(x)
            x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            x = x[:, :h, :w].reshape(b, length, c)
        x = shortcut + x
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w))
        x = x.view(b, c, length).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
                 out_dim: int | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TinyViTBlock(dim, resolution, num_heads, window) for _ in range(depth))
        self.downsample = PatchMerging(resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    def __init__(self, cfg: TinyViTConfig, img_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        dims, depths = cfg.embed_dims, cfg.depths
        self.patch_embed = PatchEmbed(dims[0])
        base = img_size // 4
        n = len(depths)
        self.layers = nn.ModuleList()
        for i in range(n):
            # The last stage keeps the third stage's resolution (see PatchMerging).
            side = base // (2 ** (i - 1 if i == n - 1 else i))
            out_dim = dims[i + 1] if i < n - 1 else None
            if i == 0:
                self.layers.append(ConvLayer(dims[0], (side, side), depths[0], dims[1]))
            else:
                self.layers.append(BasicLayer(dims[i], (side, side), depths[i], cfg.num_heads[i],
                                              cfg.window_sizes[i], out_dim))
        self.out_side = base // (2 ** (n - 2))
        # Unused at inference; present so the official checkpoint loads strictly.
        self.norm_head = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], cfg.num_classes)
        self.neck = neck(dims[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, self.out_side, self.out_side, c).permute(0, 3, 1, 2)
        return self.neck(x)
