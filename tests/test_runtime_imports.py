"""The runtime path (package, predictor, processing, segment everything, every backend module) never imports
torch."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_runtime_path_does_not_import_torch(tiny_bundle):
    code = textwrap.dedent(f"""
        import sys, warnings
        import numpy as np
        import samedge
        from samedge import SamPredictor
        import samedge.processing, samedge.runtimes, samedge.bundle, samedge.manifest
        warnings.simplefilter("ignore")
        p = SamPredictor({str(tiny_bundle)!r})
        p.set_image(np.zeros((40, 60, 3), np.uint8))
        masks, scores, low = p.predict(np.array([[10.0, 10.0]]), np.array([1]))
        assert masks.shape == (3, 40, 60)
        from samedge import SamAutomaticMaskGenerator  # segment everything is runtime path too
        records = SamAutomaticMaskGenerator(p, points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0,
                                            output_mode="coco_rle", min_mask_region_area=5).generate(
            np.zeros((40, 60, 3), np.uint8))
        assert records and all(set(r).issuperset(["segmentation", "bbox", "crop_box"]) for r in records)
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("LEAKED" if leaked else "CLEAN", leaked[:5])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "CLEAN" in result.stdout, result.stdout


def test_every_backend_and_device_listing_run_without_torch(multi_bundle):
    code = textwrap.dedent(f"""
        import sys, warnings
        import numpy as np
        warnings.simplefilter("ignore")
        from samedge import SamPredictor
        from samedge.runtimes import list_devices
        import samedge.runtimes.onnxruntime, samedge.runtimes.openvino, samedge.runtimes.coreml
        import samedge.runtimes.selection, samedge.embedding_cache
        assert any(s.available for s in list_devices())
        for backend, device in (("onnxruntime", "cpu"), ("openvino", "cpu"), ("auto", "auto")):
            p = SamPredictor.from_bundle({str(multi_bundle)!r}, backend, device)
            p.set_image_async(np.zeros((40, 60, 3), np.uint8)).result()
            masks, scores, low = p.predict(np.array([[10.0, 10.0]]), np.array([1]))
            assert masks.shape == (3, 40, 60)
            p.close()
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "coremltools"))
        print("LEAKED" if leaked else "CLEAN", leaked[:5])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "CLEAN" in result.stdout, result.stdout


def test_importing_samedge_loads_no_backend():
    code = "import sys, samedge; print(sorted(m for m in ('torch', 'onnxruntime', 'PIL') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
