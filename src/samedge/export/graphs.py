"""The two exported graphs: image encoder, and prompt encoder + mask decoder (the decoder contract)."""
from __future__ import annotations

import torch
from torch import nn

from ..models.sam import Sam


class EncoderGraph(nn.Module):
    """Normalised, padded (1, 3, 1024, 1024) image -> (1, 256, 64, 64) embedding."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


def embed_prompt_rows(pe_layer, point_embeddings, not_a_point: torch.Tensor, image_size: float,
                      point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """Prompt rows (B, N, 2) in the resized frame + labels (B, N) -> sparse embeddings (B, N, 256), as the
    official prompt encoder builds them (label -1: not-a-point, 0/1: points, 2/3: box corners)."""
    coords = (point_coords + 0.5) / image_size
    emb = pe_layer.encode(coords)
    labels = point_labels.unsqueeze(-1)
    emb = emb * (labels != -1).to(emb.dtype) + not_a_point * (labels == -1).to(emb.dtype)
    for i, weight in enumerate(point_embeddings):
        emb = emb + weight * (labels == i).to(emb.dtype)
    return emb


class DecoderGraph(nn.Module):
    """Prompt rows (points, box corners, padding) + optional mask -> all four low-res masks and scores.

    All four outputs come back so one graph serves single- and multimask mode (the slice is numpy's).
    Upsampling to the image size is left out on purpose: it is dynamic-shape work that breaks
    TensorRT/CoreML/NPUs, and numpy does it exactly (samedge.processing.postprocess_masks).
    Label arithmetic uses comparisons on the float labels (no .item(), no Python ints from shapes) so
    that the dynamo exporter keeps the point count dynamic.
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        pe = sam.prompt_encoder
        self.pe_layer = pe.pe_layer
        self.image_size = float(pe.input_image_size[0])
        self.not_a_point = pe.not_a_point_embed.weight
        self.point_embeddings = nn.ParameterList(e.weight for e in pe.point_embeddings)
        self.mask_downscaling = pe.mask_downscaling
        self.no_mask_embed = pe.no_mask_embed.weight
        self.mask_decoder = sam.mask_decoder
        # Constant for a given model: computed once here instead of in every decoder call.
        self.register_buffer("dense_pe", pe.get_dense_pe().detach().clone())

    def embed_prompts(self, point_coords: torch.Tensor, point_labels: torch.Tensor, mask_input: torch.Tensor,
                      has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse (B, N, 256) and dense (1, 256, 64, 64) prompt embeddings, as the official prompt encoder."""
        emb = embed_prompt_rows(self.pe_layer, self.point_embeddings, self.not_a_point, self.image_size,
                                point_coords, point_labels)
        has_mask = has_mask_input.reshape(1, 1, 1, 1)
        dense = has_mask * self.mask_downscaling(mask_input) + (1 - has_mask) * self.no_mask_embed.reshape(1, -1, 1, 1)
        return emb, dense

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, dense = self.embed_prompts(point_coords, point_labels, mask_input, has_mask_input)
        return self.mask_decoder.predict_masks(image_embeddings, self.dense_pe, emb, dense)


class Sam2EncoderGraph(nn.Module):
    """SAM 2.1: normalised (1, 3, 1024, 1024) -> image_embeddings (1, 256, 64, 64) (no_mem_embed added),
    high_res_feats_0 (1, 32, 256, 256), high_res_feats_1 (1, 64, 128, 128): what SAM2ImagePredictor.set_image
    keeps per image."""

    def __init__(self, sam2, image_size: int = 1024) -> None:
        super().__init__()
        self.sam2 = sam2
        # The trunk's position embedding depends only on the weights: one constant for the fixed input size,
        # computed here in PyTorch (the bicubic resize is not in the graph; coremltools has none).
        with torch.no_grad():
            tokens = self.sam2.image_encoder.trunk.patch_embed.proj(torch.zeros(1, 3, image_size, image_size))
            pos = self.sam2.image_encoder.trunk._pos_embed(tuple(tokens.shape[2:]))
        self.register_buffer("pos_embed", pos.detach().clone())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.sam2.image_features(image, self.pos_embed)


class Sam2DecoderGraph(DecoderGraph):
    """SAM 2.1's prompt encoder + mask decoder: the SAM contract plus the two high-res feature inputs.
    Outputs all four low-res masks and the sigmoid IoU predictions; numpy picks the returned ones
    (processing.select_masks, SAM 2's dynamic single-mask rule included) and upsamples them."""

    def forward(self, image_embeddings: torch.Tensor, high_res_feats_0: torch.Tensor, high_res_feats_1: torch.Tensor,
                point_coords: torch.Tensor, point_labels: torch.Tensor, mask_input: torch.Tensor,
                has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, dense = self.embed_prompts(point_coords, point_labels, mask_input, has_mask_input)
        masks, iou, _ = self.mask_decoder.predict_masks(image_embeddings, self.dense_pe, emb, dense,
                                                        (high_res_feats_0, high_res_feats_1))
        return masks, iou
