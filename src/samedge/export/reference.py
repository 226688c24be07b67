"""The official SamPredictor's computation in PyTorch: the fp32 reference every export is held to.

Mirrors segment_anything.predictor.SamPredictor (+ ResizeLongestSide, Sam.preprocess,
Sam.postprocess_masks) op for op; torchvision's PIL resize is PIL's Image.resize(BILINEAR).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..models.sam import Sam


def reference_preprocess_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    scale = long_side * 1.0 / max(h, w)
    newh, neww = h * scale, w * scale
    return int(newh + 0.5), int(neww + 0.5)


class TorchReferencePredictor:
    def __init__(self, sam: Sam, image_size: int = 1024) -> None:
        self.sam = sam.eval()
        self.image_size = image_size

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        h, w = image.shape[:2]
        newh, neww = reference_preprocess_shape(h, w, self.image_size)
        resized = np.array(Image.fromarray(image).resize((neww, newh), Image.BILINEAR))
        x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].float().to(self.sam.pixel_mean.device)
        x = (x - self.sam.pixel_mean) / self.sam.pixel_std
        return F.pad(x, (0, self.image_size - neww, 0, self.image_size - newh))

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        self.original_size = image.shape[:2]
        self.input_size = reference_preprocess_shape(*self.original_size, self.image_size)
        self.features = self.sam.image_encoder(self.preprocess(image))

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        old_h, old_w = self.original_size
        new_h, new_w = self.input_size
        coords = np.array(coords, dtype=float, copy=True)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def postprocess_masks(self, low_res: torch.Tensor) -> torch.Tensor:
        masks = F.interpolate(low_res, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        masks = masks[..., : self.input_size[0], : self.input_size[1]]
        return F.interpolate(masks, self.original_size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None,
                multimask_output: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(full-res logits (C,H,W), iou (C,), low-res logits (C,256,256)) as float32 numpy."""
        dev = self.sam.pixel_mean.device  # CPU for parity; a CUDA GPU for the bench's GPU baseline row
        points = None
        if point_coords is not None:
            coords = torch.as_tensor(self.apply_coords(point_coords), dtype=torch.float, device=dev)[None]
            labels = torch.as_tensor(point_labels, dtype=torch.int, device=dev)[None]
            points = (coords, labels)
        boxes = None
        if box is not None:
            boxes = torch.as_tensor(self.apply_coords(np.asarray(box, float).reshape(-1, 2, 2)).reshape(-1, 4),
                                    dtype=torch.float, device=dev)
        masks = None if mask_input is None else torch.as_tensor(mask_input, dtype=torch.float, device=dev)[None]
        sparse, dense = self.sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
        low_res, iou = self.sam.mask_decoder(self.features, self.sam.prompt_encoder.get_dense_pe(), sparse, dense,
                                             multimask_output)
        full = self.postprocess_masks(low_res)
        return full[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()
