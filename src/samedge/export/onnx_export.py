"""torch -> ONNX for the encoder and decoder graphs, plus optional simplification."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from ..contract import MASK_STATE, MASKS_OUTPUTS, PROMPT_INPUTS, PROMPT_MASK_INPUTS, PROMPT_OUTPUTS, SCORES_OUTPUTS
from ..errors import ExportError
from ..model_types import IMAGE_SIZE, LOW_RES_MASK_SIZE
from ..models.sam import Sam
from .gelu import rebracket_gelu

log = logging.getLogger(__name__)
# torch.onnx warns once per torchvision op it cannot register; torchvision is not used here.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

# Protobuf cannot hold a single file over 2 GiB; leave headroom for the graph itself.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
POINTS_DIM = "num_points"
BATCH_DIM = "num_prompts"


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
    _fusable_gelu(path)


def _fusable_gelu(path: Path) -> None:
    """Rebracket every exact GELU so ONNX Runtime fuses it (export/gelu.py: MobileSAM's encoder 1070 -> 740 ms
    on ORT, 2-core Xeon AVX-512). Only node inputs change, so a graph with external data keeps its data file."""
    model = onnx.load(str(path), load_external_data=False)
    if rebracket_gelu(model):
        onnx.save_model(model, str(path))


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
    """The family's encoder graph (export/specs.py): image -> image_embeddings [+ SAM 2's high-res features]."""
    from .specs import spec_for
    spec = spec_for(sam)
    _export(spec.encoder_graph(sam).eval(), (spec.dummy_image(),), path, spec.family.encoder_inputs,
            spec.family.encoder_outputs, opset)
    before, after, tool = _simplify(path, simplify)
    return ExportedGraph(path, _external_data_file(path), before, after, tool)


def export_decoder(sam: Sam, path: Path, num_points: int | None, opset: int = 18,
                   simplify: bool = True) -> ExportedGraph:
    """num_points None: dynamic point rows; K: static graph with K + 1 rows (see GraphInfo)."""
    from .specs import spec_for
    spec = spec_for(sam)
    rows = 3 if num_points is None else num_points + 1
    args = spec.dummy_decoder_inputs(rows)
    names = spec.family.decoder_inputs
    dynamic = None
    if num_points is None:
        n = torch.export.Dim(POINTS_DIM, min=1, max=1024)
        dynamic = {name: ({1: n} if name in ("point_coords", "point_labels") else None) for name in names}
    _export(_named_arguments(spec.decoder_graph(sam).eval(), names), args, path, names,
            spec.family.decoder_outputs, opset, dynamic)
    before, after, tool = _simplify(path, simplify)
    return ExportedGraph(path, None, before, after, tool)


def _named_arguments(module: torch.nn.Module, names: tuple[str, ...]) -> torch.nn.Module:
    """A wrapper whose forward takes `names` as explicit arguments: torch.export matches dynamic_shapes
    to a signature and cannot describe a *args tuple."""
    wrapper = torch.nn.Module()
    wrapper.inner = module
    namespace: dict = {}
    exec(f"def forward(self, {', '.join(names)}):\n    return self.inner({', '.join(names)})", namespace)
    wrapper.forward = namespace["forward"].__get__(wrapper)
    return wrapper


def export_context(sam: Sam, path: Path, opset: int = 18, simplify: bool = True) -> ExportedGraph:
    """The split decoder's per-image graph: image_embeddings -> context_00 .. (see split_decoder)."""
    from .specs import spec_for
    from .split_decoder import ContextGraph
    graph = ContextGraph(sam).eval()
    spec = spec_for(sam)
    _export(graph, tuple(torch.randn(*s) for s in spec.feature_shapes), path, list(spec.family.feature_names),
            graph.output_names, opset)
    before, after, tool = _simplify(path, simplify)
    return ExportedGraph(path, None, before, after, tool)


def static_prompt_decoder(dynamic: Path, path: Path, num_points: int, batch: int = 1) -> ExportedGraph:
    """A static prompt graph (`batch` prompts of num_points + 1 rows) from the dynamic one: the input dims
    fixed and the shape arithmetic folded by onnxslim. The same operators as the dynamic graph, in a few
    seconds instead of a second trace."""
    import onnxslim

    from ..bench.flops import fix_input_shapes
    rows = num_points + 1
    model = fix_input_shapes(onnx.load(str(dynamic)), {
        "point_coords": (batch, rows, 2), "point_labels": (batch, rows),
        "mask_input": (batch, 1, LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE), "has_mask_input": (batch,)})
    before = len(model.graph.node)
    slim = onnxslim.slim(model)
    onnx.save_model(slim, str(path))
    return ExportedGraph(path, None, before, len(slim.graph.node), f"onnxslim {onnxslim.__version__} (static)")


def export_prompt_decoder(sam: Sam, path: Path, opset: int = 18, simplify: bool = True,
                          with_mask: bool = False) -> ExportedGraph:
    """The split decoder's dynamic per-prompt graph: dynamic point rows and a dynamic batch of prompts (its
    static variants come from static_prompt_decoder). with_mask: the variant that also takes mask_input /
    has_mask_input (a mask prior)."""
    from .specs import spec_for
    from .split_decoder import ContextGraph, PromptGraph
    graph = PromptGraph(sam, with_mask).eval()
    rows, batch = 3, 2
    context_graph = ContextGraph(sam).eval()
    with torch.no_grad():
        features = (torch.randn(*s) for s in spec_for(sam).feature_shapes)
        context = dict(zip(context_graph.output_names, context_graph(*features)))
    lead = PROMPT_MASK_INPUTS if with_mask else PROMPT_INPUTS
    mask = (torch.randn(batch, 1, LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE), torch.ones(batch)) if with_mask else ()
    args = (torch.randint(0, IMAGE_SIZE, (batch, rows, 2)).float(),
            torch.tensor([[1.0] * (rows - 1) + [-1.0]] * batch), *mask, *(context[n] for n in graph.context_names))
    n = torch.export.Dim(POINTS_DIM, min=1, max=1024)
    b = torch.export.Dim(BATCH_DIM, min=1, max=4096)
    dynamic = {"point_coords": {0: b, 1: n}, "point_labels": {0: b, 1: n},
               **({"mask_input": {0: b}, "has_mask_input": {0: b}} if with_mask else {}),
               **{name: None for name in graph.context_names}}
    names = lead + graph.context_names
    _export(_named_arguments(graph, names), args, path, names, PROMPT_OUTPUTS, opset, dynamic)
    before, after, tool = _simplify(path, simplify)
    return ExportedGraph(path, None, before, after, tool)


def export_staged_prompt_decoder(sam: Sam, scores_path: Path, masks_path: Path, opset: int = 18,
                                 simplify: bool = True) -> tuple[ExportedGraph, ExportedGraph]:
    """The dynamic prompt graph in two stages (split_decoder.ScoresGraph, MasksGraph): point rows (B, N, 2) +
    context -> iou_predictions (B, 4) + the mask state; the mask state of any K prompts + context ->
    low_res_masks (K, 4, 256, 256). Both with a dynamic batch."""
    from .specs import spec_for
    from .split_decoder import ContextGraph, MasksGraph, ScoresGraph
    scores, masks = ScoresGraph(sam).eval(), MasksGraph(sam).eval()
    context_graph = ContextGraph(sam).eval()
    rows, batch = 3, 2
    with torch.no_grad():
        features = (torch.randn(*s) for s in spec_for(sam).feature_shapes)
        context = dict(zip(context_graph.output_names, context_graph(*features)))
        coords = torch.randint(0, IMAGE_SIZE, (batch, rows, 2)).float()
        labels = torch.tensor([[1.0] * (rows - 1) + [-1.0]] * batch)
        state = scores(coords, labels, *(context[n] for n in scores.context_names))[1:]
    n = torch.export.Dim(POINTS_DIM, min=1, max=1024)
    b = torch.export.Dim(BATCH_DIM, min=1, max=4096)
    names = PROMPT_INPUTS + scores.context_names
    _export(_named_arguments(scores, names), (coords, labels, *(context[c] for c in scores.context_names)),
            scores_path, names, SCORES_OUTPUTS, opset,
            {"point_coords": {0: b, 1: n}, "point_labels": {0: b, 1: n}, **{c: None for c in scores.context_names}})
    r = torch.export.Dim("state_rows", min=1, max=1 << 16)  # grows with the point rows (8 heads x tokens)
    names = MASK_STATE + masks.context_names
    _export(_named_arguments(masks, names), (*state, *(context[c] for c in masks.context_names)), masks_path,
            names, MASKS_OUTPUTS, opset, {**{s: {0: b} for s in MASK_STATE[:2]}, **{s: {0: b, 1: r} for s in MASK_STATE[2:]},
                                          **{c: None for c in masks.context_names}})
    out = []
    for path in (scores_path, masks_path):
        before, after, tool = _simplify(path, simplify)
        out.append(ExportedGraph(path, None, before, after, tool))
    return out[0], out[1]
