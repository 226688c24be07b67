"""Per-family export specs, declarative (in the spirit of optimum's per-model ONNX configs): which torch
graphs to trace, the contract's names (samedge.families), the per-image feature shapes the decoder takes,
and dummy inputs. Everything in export that differs by family reads it from here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..families import SAM, SAM2, SAM2_HIGH_RES_SHAPES, Family
from ..model_types import EMBEDDING_SHAPE, IMAGE_SIZE, LOW_RES_MASK_SIZE
from .graphs import DecoderGraph, EncoderGraph, Sam2DecoderGraph, Sam2EncoderGraph


@dataclass(frozen=True)
class ExportSpec:
    family: Family
    encoder_graph: Callable[[nn.Module], nn.Module]
    decoder_graph: Callable[[nn.Module], nn.Module]
    feature_shapes: tuple[tuple[int, ...], ...]  # the decoder's per-image inputs (family.feature_names), in order

    def dummy_image(self) -> torch.Tensor:
        return torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)

    def dummy_decoder_inputs(self, rows: int) -> tuple[torch.Tensor, ...]:
        """Inputs in family.decoder_inputs order: features, rows point rows (clicks + a padding row)."""
        return (*(torch.randn(*s) for s in self.feature_shapes),
                torch.randint(0, IMAGE_SIZE, (1, rows, 2)).float(),
                torch.tensor([[1.0] * (rows - 1) + [-1.0]]),
                torch.randn(1, 1, LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE),
                torch.tensor([1.0]))

    def static_input_shapes(self, rows: int) -> dict[str, tuple[int, ...]]:
        return {"point_coords": (1, rows, 2), "point_labels": (1, rows),
                "mask_input": (1, 1, LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE), "has_mask_input": (1,),
                **dict(zip(self.family.feature_names, self.feature_shapes))}


SPECS = {
    "sam": ExportSpec(SAM, EncoderGraph, DecoderGraph, (EMBEDDING_SHAPE,)),
    "sam2": ExportSpec(SAM2, Sam2EncoderGraph, Sam2DecoderGraph, (EMBEDDING_SHAPE, *SAM2_HIGH_RES_SHAPES)),
}


def spec_for(model: nn.Module) -> ExportSpec:
    """The spec of a built model (Sam or Sam2), from its ModelSpec's family."""
    return SPECS[model.spec.family]
