"""The export pipeline: manifest contents, parity enforcement, atomic output, CLI."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from samedge.cli import main
from samedge.errors import ParityError
from samedge.export import graphs
from samedge.export.parity import ParityThresholds
from samedge.export.pipeline import ExportConfig, export_bundle
from samedge.manifest import read_manifest


def test_manifest_describes_the_bundle(tiny_bundle):
    m = read_manifest(tiny_bundle)
    assert m.model_type == "test_tiny" and m.weights.source == "random" and m.weights.seed == 0
    assert m.precision == "fp32" and m.image_size == 1024 and m.embedding_shape == (1, 256, 64, 64)
    assert m.encoder.inputs[0].shape == (1, 3, 1024, 1024)
    assert [d.num_points for d in m.decoders] == [None, 1, 2]
    dyn = m.decoders[0]
    assert [t.name for t in dyn.inputs] == ["image_embeddings", "point_coords", "point_labels", "mask_input",
                                            "has_mask_input"]
    assert dyn.inputs[1].shape == (1, "num_points", 2)
    assert m.decoders[2].inputs[1].shape == (1, 3, 2)  # 2 clicks + the padding row
    assert [t.shape for t in dyn.outputs] == [(1, 4, 256, 256), (1, 4)]
    for g in m.graphs():
        data = (tiny_bundle / g.file).read_bytes()
        assert g.bytes == len(data) and g.sha256 == hashlib.sha256(data).hexdigest()
        assert g.simplify["nodes_before"] > 0 and g.simplify["nodes_after"] > 0
        assert g.simplify["tool"].startswith("onnxslim")
    assert m.parity["passed"] and m.parity["summary"]["min_mask_iou"] >= 0.99
    assert {"torch", "onnx", "onnxruntime", "samedge"} <= set(m.export["versions"])


def test_decoder_graph_has_no_in_graph_upsampling(tiny_bundle):
    model = onnx.load(str(tiny_bundle / "decoder.onnx"))
    assert not [n for n in model.graph.node if n.op_type == "Resize"]


def test_parity_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "strict"
    impossible = ParityThresholds(min_mask_iou=1.01)
    with pytest.raises(ParityError, match="failed parity: mask IoU") as info:
        export_bundle(ExportConfig("test_tiny", out, parity_images=1, thresholds=impossible, split_decoder=False))
    assert info.value.report["summary"]["min_mask_iou"] > 0.99  # the report travels with the error
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_parity_catches_a_semantically_broken_decoder(tmp_path, monkeypatch):
    """Swap foreground and background inside the graph: the exact class of bug parity exists for."""
    original = graphs.DecoderGraph.forward

    def swapped(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        one, zero = torch.ones_like(point_labels), torch.zeros_like(point_labels)
        labels = torch.where(point_labels == 1, zero, torch.where(point_labels == 0, one, point_labels))
        return original(self, image_embeddings, point_coords, labels, mask_input, has_mask_input)

    monkeypatch.setattr(graphs.DecoderGraph, "forward", swapped)
    with pytest.raises(ParityError) as info:
        export_bundle(ExportConfig("test_tiny", tmp_path / "broken", parity_images=1, split_decoder=False))
    assert info.value.report["summary"]["min_mask_iou"] < 0.9


def test_cli_export_then_run(tmp_path, capsys):
    out = tmp_path / "cli_bundle"
    assert main(["export", "--model", "test_tiny", "--weights", "random", "--seed", "5", "--out", str(out),
                 "--parity-images", "1", "--no-progress", "--decoder-points", "1", "--no-split-decoder"]) == 0
    printed = capsys.readouterr().out
    assert "parity vs PyTorch fp32: min mask IoU" in printed and "decoder_p1.onnx" in printed
    assert read_manifest(out).split is None and "prompt" not in printed  # --no-split-decoder
    assert read_manifest(out).weights.seed == 5
    # exporting over an existing bundle needs --overwrite
    assert main(["export", "--model", "test_tiny", "--weights", "random", "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err

    image = tmp_path / "photo.jpg"
    from samedge.data import sample_images
    Image.fromarray(sample_images(1)[0].rgb).save(image)
    overlay = tmp_path / "overlay.png"
    assert main(["run", str(image), "--bundle", str(out), "--point", "250,180", "--out", str(overlay)]) == 0
    assert "RANDOM weights" in capsys.readouterr().out
    mask = np.asarray(Image.open(tmp_path / "overlay_mask.png"))
    assert mask.shape == (375, 500) and set(np.unique(mask)) <= {0, 255}
    assert np.asarray(Image.open(overlay)).shape == (375, 500, 3)
    assert main(["run", "sample:arc2017", "--bundle", str(out), "--box", "10,10,200,300", "--point", "50,50",
                 "--out", str(tmp_path / "o2.png")]) == 0
    # bad CLI input: a clear message and exit code 2, no traceback
    assert main(["run", str(image), "--bundle", str(out), "--point", "900,10", "--out", str(overlay)]) == 2
    assert "outside the 500x375 image" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.png"), "--bundle", str(out), "--point", "1,1",
                 "--out", str(overlay)]) == 2


def test_export_refuses_unknown_model_and_bad_options(tmp_path, capsys):
    assert main(["export", "--model", "vit_z", "--weights", "random", "--out", str(tmp_path / "x")]) == 2
    assert "allowed: vit_b, vit_l, vit_h, mobile_sam" in capsys.readouterr().err
    assert main(["export", "--model", "vit_b", "--weights", "random", "--out", str(tmp_path / "x"),
                 "--decoder-points", "0"]) == 2
    assert main(["export", "--model", "vit_b", "--weights", "random", "--out", str(tmp_path / "x"),
                 "--parity-images", "7"]) == 2
    assert "parity_images must be 1..3" in capsys.readouterr().err
    assert main(["export", "--model", "vit_b", "--weights", "random", "--out", str(tmp_path / "x"),
                 "--jobs", "0"]) == 2
    assert "jobs must be 1..64" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--model", "vit_b", "--out", str(tmp_path / "x")])  # no weights source
    assert main(["export", "--model", "vit_b", "--checkpoint", str(tmp_path / "none.pth"),
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_checkpoint_export_records_its_sha(tmp_path):
    from samedge.models import build_sam, randomize_weights
    ckpt = tmp_path / "tiny.pth"
    torch.save(randomize_weights(build_sam("test_tiny"), 9).state_dict(), ckpt)
    m = export_bundle(ExportConfig("test_tiny", tmp_path / "b", weights="checkpoint", checkpoint=ckpt,
                                   parity_images=1, split_decoder=False))
    assert m.weights.source == "checkpoint" and not m.weights.is_random
    assert m.weights.checkpoint_sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["weights"]["checkpoint_file"] == "tiny.pth"


def test_full_size_mobile_sam_exports_and_passes_parity(tmp_path):
    """The real MobileSAM architecture (random weights) end to end, as `samedge export --format
    onnx,openvino,coreml` runs it: the real-photo prompt set through ORT CPU and OpenVINO CPU (f32) must
    match PyTorch, and the CoreML packages must have the contract's structure."""
    from coreml_structure import check_mlpackage

    from samedge.export.coreml_convert import DEFAULT_FP32_OPS
    out = tmp_path / "mobile_sam"
    m = export_bundle(ExportConfig("mobile_sam", out, decoder_points=(1, 2), formats=("openvino", "coreml"),
                                   split_decoder=False))  # the split decoder's conversion: multi_bundle
    assert m.parity["passed"] and m.parity["backend"] == "onnxruntime"
    assert m.parity["summary"]["min_mask_iou"] >= 0.99 and m.parity["summary"]["min_embedding_cosine"] >= 0.9999
    assert len({p["image"] for p in m.parity["prompts"]}) == 3  # all three real photos
    assert 20e6 < m.encoder.bytes < 40e6  # TinyViT-5M + neck in fp32
    ov = m.converted["openvino"].conversion["parity"]
    assert ov["passed"] and ov["precision"] == "f32"
    assert ov["summary"]["min_mask_iou"] >= 0.99 and ov["summary"]["min_embedding_cosine"] >= 0.9999
    report = json.loads((out / "fidelity" / "openvino-cpu-f32.json").read_text())
    # every decoder answered prompts, and predict_batch (one graph call per prompt without the split decoder)
    assert {p["decoder"] for p in report["prompts"]} == {"openvino/decoder.xml", "openvino/decoder_p1.xml",
                                                         "openvino/decoder_p2.xml", "per prompt"}
    assert {p["batch"] for p in report["prompts"] if "batch" in p} == {4}
    coreml = m.converted["coreml"]
    assert [g.num_points for g in coreml.decoders] == [1, 2]
    for graph in (coreml.encoder, *coreml.decoders):
        check_mlpackage(out / graph.file, graph, DEFAULT_FP32_OPS)
