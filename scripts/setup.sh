#!/usr/bin/env bash
# Create .venv and install samedge with export, OpenVINO, CoreML-conversion, quantization (NNCF), plotting and
# test dependencies. Idempotent.
# torch is installed first and pinned: an unpinned torch would pull gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[export,openvino,coreml,quantize,report,apps,dev]"
