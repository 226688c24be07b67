
# What sam2 1.1.0's SAM2Transforms imports (sam2/utils/transforms.py), for tensor images: ToTensor, then
# Resize((s, s)) and Normalize, which it torch.jit.scripts. torchvision's tensor Resize is bilinear with
# antialias=True (the default since torchvision 0.17) through torch's interpolate.
import numpy as _np
import torch as _torch
from torch import nn as _nn


class ToTensor:
    """uint8 HxWxC array or PIL image -> float32 CxHxW in [0, 1]."""

    def __call__(self, pic):
        arr = _np.asarray(pic)
        t = _torch.from_numpy(_np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
        return t.float().div(255) if t.dtype == _torch.uint8 else t.float()


class Resize(_nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, img: _torch.Tensor) -> _torch.Tensor:
        return _torch.nn.functional.interpolate(img.unsqueeze(0), size=self.size, mode="bilinear",
                                                align_corners=False, antialias=True).squeeze(0)


class Normalize(_nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def forward(self, img: _torch.Tensor) -> _torch.Tensor:
        mean = _torch.tensor(self.mean, dtype=img.dtype).view(-1, 1, 1)
        std = _torch.tensor(self.std, dtype=img.dtype).view(-1, 1, 1)
        return (img - mean) / std
