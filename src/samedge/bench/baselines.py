"""Baselines timed in the same run as samedge: the fp32 ONNX Runtime export as the official tooling makes it
(decoder with in-graph upsampling to the image size) and PyTorch eager. Build time only: these need torch."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def export_official_decoder(sam, out: Path, image_hw: tuple[int, int], input_hw: tuple[int, int],
                            square: bool = False) -> Path:
    """The decoder as the official tooling exports it, upsampling every mask to the original image in the graph:
    segment-anything's scripts/export_onnx_model.py (SamOnnxModel: 1024, crop, image size) for SAM, and for
    SAM 2.1 the samexporter-style decoder (the high-res features in, masks bilinear straight to the image size).
    orig_im_size is fixed to the benchmark image here (the dynamo exporter needs static sizes); the work per
    call is the same."""
    import torch
    import torch.nn.functional as F

    from ..export.onnx_export import _named_arguments
    from ..export.specs import spec_for
    from ..model_types import IMAGE_SIZE
    spec = spec_for(sam)
    names = spec.family.decoder_inputs

    class OfficialDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = spec.decoder_graph(sam)

        def forward(self, *inputs):
            low_res, iou = self.decoder(*inputs)
            if square:
                return F.interpolate(low_res, image_hw, mode="bilinear", align_corners=False), iou, low_res
            size = IMAGE_SIZE
            masks = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
            masks = masks[..., : input_hw[0], : input_hw[1]]
            masks = F.interpolate(masks, image_hw, mode="bilinear", align_corners=False)
            return masks, iou, low_res

    args = spec.dummy_decoder_inputs(2)
    n = torch.export.Dim("num_points", min=1, max=64)
    dynamic = {k: ({1: n} if k in ("point_coords", "point_labels") else {}) for k in names}
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(_named_arguments(OfficialDecoder().eval(), names), args, str(out), dynamo=True,
                          opset_version=18, input_names=list(names),
                          output_names=["masks", "iou_predictions", "low_res_masks"], dynamic_shapes=dynamic,
                          external_data=False, verbose=False)
    return out


def official_decoder_feeds(features: dict[str, np.ndarray], coords: np.ndarray, labels: np.ndarray,
                           mask_input: np.ndarray | None = None) -> dict:
    """features: the encoder's outputs by name (image_embeddings [+ SAM 2.1's high-res maps]); mask_input
    (1, 256, 256) low-res logits or None, as the official ONNX model's has_mask_input says."""
    mask = np.zeros((1, 1, 256, 256), np.float32) if mask_input is None else \
        np.asarray(mask_input, np.float32).reshape(1, 1, 256, 256)
    return {**features, "point_coords": coords, "point_labels": labels,
            "mask_input": mask, "has_mask_input": np.full(1, 0.0 if mask_input is None else 1.0, np.float32)}


def open_plain(path: Path, backend: str, threads: int | None):
    """A session the way a user of the official export would open it: ORT's CPU provider, or OpenVINO's CPU
    plugin at f32 (the same precision as samedge's OpenVINO rows). Returns run(feeds) -> list of outputs."""
    if backend == "onnxruntime":
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(None, feeds), ort.__version__
    import openvino as ov
    config = {"INFERENCE_PRECISION_HINT": "f32", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    outputs = compiled.outputs
    return lambda feeds: [request.infer(feeds)[o] for o in outputs], ov.__version__
