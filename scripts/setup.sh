#!/usr/bin/env bash
# Create .venv and install samedge with export, OpenVINO, CoreML-conversion, quantization (NNCF), plotting,
# segment-everything (pycocotools) and test dependencies. Idempotent.
# torch is installed first and pinned: an unpinned torch would pull gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# constraints.txt pins every package to the version the suite was run with (a fresh machine gets those, not
# whatever was released since); pyproject.toml keeps ranges for library users.
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt)
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[export,openvino,coreml,quantize,report,everything,apps,dev]"
# The upstream check (tests/test_upstream.py): Meta's segment-anything 1.0 itself, without its torchvision
# dependency (no CPU build of it loads beside this torch; the tests bring a minimal shim).
"${PIP[@]}" --no-deps "segment-anything==1.0"
# The SAM 2.1 upstream check (tests/test_sam2.py): Meta's sam2 1.1.0 itself, --no-deps (it asks for torchvision)
# and without build isolation (an isolated build would fetch an unpinned torch); CPU only, no CUDA extension.
"${PIP[@]}" "hydra-core" "iopath"
SAM2_BUILD_CUDA=0 "${PIP[@]}" --no-deps --no-build-isolation "sam2==1.1.0"
