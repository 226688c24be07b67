#!/usr/bin/env bash
# Set up, export MobileSAM into a validated bundle, segment real photos with it, and run the gaze demo.
# Offline by default: RANDOM weights (the masks are meaningless; the parity figures are real).
# With a real checkpoint:  CHECKPOINT=/path/to/mobile_sam.pt bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SAMEDGE=.venv/bin/samedge
if [ -n "${CHECKPOINT:-}" ]; then
  WEIGHTS=(--checkpoint "$CHECKPOINT")
else
  echo "NOTE: no CHECKPOINT given: exporting with seeded RANDOM weights. Masks will be meaningless;"
  echo "      the parity report (fidelity of the exported graphs to PyTorch) is real."
  WEIGHTS=(--weights random --seed 0)
fi
$SAMEDGE devices
$SAMEDGE export --model mobile_sam "${WEIGHTS[@]}" --out bundles/mobile_sam --decoder-points 1,2,5 \
  --format onnx,openvino,coreml --overwrite
$SAMEDGE run sample:voc --bundle bundles/mobile_sam --point 250,180 --out out/voc_point.png
$SAMEDGE run sample:arc2017 --bundle bundles/mobile_sam --box 250,120,450,330 --out out/arc_box.png --backend openvino
# The AR gaze demo, scored: real photos under synthetic head motion, gaze with real EyeLink fixation timing
$SAMEDGE demo gaze --bundle bundles/mobile_sam --ground-truth --out out/gaze --backend openvino --max-frames 150 \
  --reference-frames 8 > /dev/null
.venv/bin/python -c "import json; s = json.load(open('out/gaze/summary.json')); g = s['ground_truth']; \
print(f\"gaze demo: {s['output_fps']:.1f} fps, gaze-to-mask p50/p95 {s['gaze_to_mask_ms_p50']:.0f}/\"
      f\"{s['gaze_to_mask_ms_p95']:.0f} ms, onsets on target {g['fixation_onsets_on_target']:.2f}, \"
      f\"shown vs fp32 IoU {g['reference']['shown_vs_reference_iou_mean']:.3f} ({s['weights']} weights)\")"
echo "bundle: bundles/mobile_sam (manifest.json and fidelity/ hold the parity reports); overlays: out/;"
echo "gaze demo: out/gaze/overlay.mp4, summary.json (on cockatoo.mp4: samedge demo gaze --bundle bundles/mobile_sam --out out/cockatoo)"
