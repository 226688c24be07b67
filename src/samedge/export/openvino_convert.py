"""A bundle's ONNX graphs -> OpenVINO IR (openvino/*.xml + .bin), fp32 weights, shapes as exported."""
from __future__ import annotations

import logging
from pathlib import Path

from ..artifacts import artifact_bytes, artifact_sha256
from ..errors import BackendUnavailableError, ExportError
from ..manifest import ConvertedGraphs, GraphInfo, Manifest

log = logging.getLogger(__name__)
SUBDIR = "openvino"


def _ov():
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailableError("OpenVINO conversion needs openvino: pip install 'samedge[openvino]'") from exc
    return openvino


def convert_graph(bundle_dir: Path, out_root: Path, graph: GraphInfo) -> GraphInfo:
    """bundle_dir/graph.file -> out_root/openvino/<stem>.xml (+ .bin); file names relative to out_root."""
    ov = _ov()
    src = bundle_dir / graph.file
    xml = out_root / SUBDIR / (Path(graph.file).stem + ".xml")
    xml.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Core.read_model runs the same ONNX frontend as ov.convert_model, without the converter's
        # telemetry, which forks a process per event from a multi-GB exporter (seen stalling parity here)
        model = ov.Core().read_model(str(src))
        # save_model compresses weights to fp16 by default; a conversion must not change precision
        ov.save_model(model, str(xml), compress_to_fp16=False)
    except Exception as exc:
        raise ExportError(f"OpenVINO could not convert {graph.file}: {type(exc).__name__}: {exc}") from exc
    return graph_info(out_root, xml, graph, model)


def graph_info(out_root: Path, xml: Path, graph: GraphInfo, model=None) -> GraphInfo:
    """GraphInfo of an IR written for `graph` (the ONNX graph it came from); checks the contract's I/O names."""
    if model is None:
        model = _ov().Core().read_model(str(xml))
    names_in = tuple(p.get_any_name() for p in model.inputs)
    names_out = tuple(p.get_any_name() for p in model.outputs)
    if names_in != tuple(t.name for t in graph.inputs) or names_out != tuple(t.name for t in graph.outputs):
        raise ExportError(f"the OpenVINO IR of {graph.file} has I/O {names_in} -> {names_out}; the contract "
                          f"needs {[t.name for t in graph.inputs]} -> {[t.name for t in graph.outputs]}")
    binf = xml.with_suffix(".bin")
    rel = lambda p: p.relative_to(out_root).as_posix()  # noqa: E731
    return GraphInfo(role=graph.role, file=rel(xml), format="openvino", inputs=graph.inputs, outputs=graph.outputs,
                     bytes=artifact_bytes(xml), sha256=artifact_sha256(xml), external_data=rel(binf),
                     external_data_bytes=artifact_bytes(binf), num_points=graph.num_points)


def convert_bundle_openvino(bundle_dir: Path, out_root: Path, manifest: Manifest) -> ConvertedGraphs:
    ov = _ov()
    encoder = convert_graph(bundle_dir, out_root, manifest.encoder)
    decoders = tuple(convert_graph(bundle_dir, out_root, g) for g in manifest.decoders)
    split = None
    if manifest.split is not None:
        split = manifest.split.with_graphs(lambda g: convert_graph(bundle_dir, out_root, g))
    return ConvertedGraphs(encoder, decoders, {"tool": f"openvino {ov.__version__}", "source": "onnx",
                                               "weights": "fp32 (compress_to_fp16=False)"}, split)
