#!/usr/bin/env bash
# Create or reuse .venv and install dldebug with pinned dependencies.
# torch==2.13.0 (CPU wheel) is installed first, so nothing can pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.dldebug-setup-$(cat pyproject.toml requirements/constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "[setup] .venv is up to date"
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "[setup] installing torch==2.13.0 (CPU)"
.venv/bin/pip install --quiet "torch==2.13.0"
echo "[setup] installing dldebug[all,dev] with pinned dependencies"
.venv/bin/pip install --quiet -c requirements/constraints.txt -e ".[all,dev]"
# tf2onnx is a test-only dependency (the compare tests convert Keras models with it). Its metadata pins an old
# protobuf and numpy, which would downgrade the pinned stack; with --no-deps it imports fine with TF 2.21 and
# onnx 1.23 (its runtime imports - flatbuffers, requests, onnx, protobuf, numpy - are installed above).
echo "[setup] installing tf2onnx (test-only, --no-deps)"
.venv/bin/pip install --quiet --no-deps "tf2onnx==$(sed -n 's/^tf2onnx==//p' requirements/constraints.txt)"
.venv/bin/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') and not torch.version.cuda else f'unexpected torch {v} (cuda={torch.version.cuda})')"
rm -f .venv/.dldebug-setup-*
touch "$stamp"
echo "[setup] done"
