"""torch -> ONNX for the encoder and decoder graphs, plus optional simplification."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from ..contract import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT
from ..errors import ExportError
from ..model_types import EMBEDDING_SHAPE, IMAGE_SIZE, LOW_RES_MASK_SIZE
from ..models.sam import Sam
from .graphs import DecoderGraph, EncoderGraph

log = logging.getLogger(__name__)
# torch.onnx warns once per torchvision op it cannot register; torchvision is not used here.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

# Protobuf cannot hold a single file over 2 GiB; leave headroom for the graph itself.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
POINTS_DIM = "num_points"


@dataclass(frozen=True)
class ExportedGraph:
    path: Path
    external_data: Path | None
    nodes_before: int
    nodes_after: int
    simplifier: str | None


def _param_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.state_dict().values())


def _export(module: torch.nn.Module, args: tuple, path: Path, input_names, output_names, opset: int,
            dynamic_shapes=None) -> None:
    external = _param_bytes(module) > EXTERNAL_DATA_THRESHOLD
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, args, dynamo=True, opset_version=opset, input_names=list(input_names),
                                        output_names=list(output_names), dynamic_shapes=dynamic_shapes,
                                        optimize=True, verbose=False, external_data=external)
            program.save(str(path), external_data=external)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export of {path.name} failed: {type(exc).__name__}: {exc}") from exc


# onnxslim's shape inference serialises the whole model, which protobuf refuses above 2 GB.
SIMPLIFY_SKIPPED_EXTERNAL = "skipped: onnxslim cannot process graphs with external data (over 2 GB)"


def _simplify(path: Path, enabled: bool) -> tuple[int, int, str | None]:
    model = onnx.load(str(path), load_external_data=False)
    before = len(model.graph.node)
    if not enabled:
        return before, before, None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        log.warning("%s: %s; the dynamo exporter's own optimiser has run", path.name, SIMPLIFY_SKIPPED_EXTERNAL)
        return before, before, SIMPLIFY_SKIPPED_EXTERNAL
    import onnxslim
    slim = onnxslim.slim(model)
    onnx.save_model(slim, str(path))
    return before, len(slim.graph.node), f"onnxslim {onnxslim.__version__}"


def _external_data_file(path: Path) -> Path | None:
    candidate = path.with_name(path.name + ".data")
    return candidate if candidate.exists() else None


def export_encoder(sam: Sam, path: Path, opset: int = 18, simplify: bool = True) -> ExportedGraph:
    dummy = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    _export(EncoderGraph(sam).eval(), (dummy,), path, [ENCODER_INPUT], [ENCODER_OUTPUT], opset)
    before, after, tool = _simplify(path, simplify)
    return ExportedGraph(path, _external_data_file(path), before, after, tool)


def export_decoder(sam: Sam, path: Path, num_points: int | None, opset: int = 18,
                   simplify: bool = True) -> ExportedGraph:
    """num_points None: dynamic point rows; K: static graph with K + 1 rows (see GraphInfo)."""
    rows = 3 if num_points is None else num_points + 1
    args = (torch.randn(*EMBEDDING_SHAPE),
            torch.randint(0, IMAGE_SIZE, (1, rows, 2)).float(),
            torch.tensor([[1.0] * (rows - 1) + [-1.0]]),
            torch.randn(1, 1, LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE),
            torch.tensor([1.0]))
    dynamic = None
    if num_points is None:
        n = torch.export.Dim(POINTS_DIM, min=1, max=1024)
        dynamic = {"image_embeddings": None, "point_coords": {1: n}, "point_labels": {1: n},
                   "mask_input": None, "has_mask_input": None}
    _export(DecoderGraph(sam).eval(), args, path, DECODER_INPUTS, DECODER_OUTPUTS, opset, dynamic)
    before, after, tool = _simplify(path, simplify)
    return ExportedGraph(path, None, before, after, tool)
