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

    def encoder_forward(self, x: torch.Tensor):
        """The encoder graph's computation on a preprocessed image (what the bench times)."""
        return self.sam.image_encoder(x)

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


class TorchReferenceSam2Predictor:
    """sam2.SAM2ImagePredictor's computation (SAM2Transforms, _prep_prompts, _predict, the decoder's dynamic
    single-mask rule), op for op on the same torch modules: the fp32 reference of SAM 2.1 exports."""

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, sam2, image_size: int = 1024, stability_delta: float = 0.05,
                 stability_thresh: float = 0.98) -> None:
        self.sam = sam2.eval()
        self.image_size = image_size
        self.delta, self.thresh = stability_delta, stability_thresh

    def _device(self) -> torch.device:
        return self.sam.no_mem_embed.device

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)
        x = F.interpolate(x[None], (self.image_size, self.image_size), mode="bilinear", align_corners=False,
                          antialias=True)
        mean = torch.tensor(self.MEAN).view(1, -1, 1, 1)
        std = torch.tensor(self.STD).view(1, -1, 1, 1)
        return ((x - mean) / std).to(self._device())

    def encoder_forward(self, x: torch.Tensor):
        return self.sam.image_features(x)

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        self.original_size = image.shape[:2]
        embedding, s0, s1 = self.sam.image_features(self.preprocess(image))
        self.features, self.high_res_feats = embedding, (s0, s1)

    def transform_coords(self, coords) -> torch.Tensor:
        h, w = self.original_size
        c = torch.as_tensor(np.asarray(coords), dtype=torch.float, device=self._device()).clone()
        c[..., 0] = c[..., 0] / w
        c[..., 1] = c[..., 1] / h
        return c * self.image_size

    def _single_mask(self, masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = masks[:, 0:1].flatten(-2)
        area_i = torch.sum(flat > self.delta, dim=-1).float()
        area_u = torch.sum(flat > -self.delta, dim=-1).float()
        stable = torch.where(area_u > 0, area_i / area_u, 1.0) >= self.thresh
        best = torch.argmax(iou[:, 1:], dim=-1)
        rows = torch.arange(iou.shape[0])
        best_masks, best_iou = masks[:, 1:][rows, best].unsqueeze(1), iou[:, 1:][rows, best].unsqueeze(1)
        return (torch.where(stable[..., None, None].expand_as(masks[:, 0:1]), masks[:, 0:1], best_masks),
                torch.where(stable.expand_as(iou[:, 0:1]), iou[:, 0:1], best_iou))

    @torch.no_grad()
    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None,
                multimask_output: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(full-res logits (C,H,W), iou (C,), low-res logits (C,256,256), clamped to +-32) as float32 numpy."""
        dev = self._device()
        points = None
        if point_coords is not None:
            points = (self.transform_coords(point_coords)[None],
                      torch.as_tensor(point_labels, dtype=torch.int, device=dev)[None])
        if box is not None:  # SAM 2 feeds a box as two labelled points, before the clicks
            corners = self.transform_coords(np.asarray(box, float).reshape(-1, 2, 2))
            labels = torch.tensor([[2, 3]], dtype=torch.int, device=dev)
            points = (corners, labels) if points is None else (torch.cat([corners, points[0]], 1),
                                                               torch.cat([labels, points[1]], 1))
        masks = None if mask_input is None else torch.as_tensor(mask_input, dtype=torch.float, device=dev)[None]
        pe = self.sam.sam_prompt_encoder
        sparse, dense = pe(points=points, boxes=None, masks=masks)
        all_masks, all_iou, _ = self.sam.sam_mask_decoder.predict_masks(self.features, pe.get_dense_pe(), sparse,
                                                                        dense, self.high_res_feats)
        if multimask_output:
            low_res, iou = all_masks[:, 1:], all_iou[:, 1:]
        else:
            low_res, iou = self._single_mask(all_masks, all_iou)
        full = F.interpolate(low_res, self.original_size, mode="bilinear", align_corners=False)
        low_res = torch.clamp(low_res, -32.0, 32.0)
        return full[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()


def reference_for(model) -> "TorchReferencePredictor | TorchReferenceSam2Predictor":
    """The official predictor's computation for a built model's family."""
    return TorchReferenceSam2Predictor(model) if model.spec.family == "sam2" else TorchReferencePredictor(model)
