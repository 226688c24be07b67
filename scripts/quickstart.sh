#!/usr/bin/env bash
# Set up, export MobileSAM into a validated bundle, and segment a real photo with it.
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
echo "bundle: bundles/mobile_sam (manifest.json and fidelity/ hold the parity reports); overlays: out/"
