#!/usr/bin/env bash
# Build DCVC-FM's C++ entropy coder (MLCodec_rans, MLCodec_CXX) out of tree, with pybind11 from
# PyPI instead of DCVC's CMake (which clones pybind11 from GitHub and copies into the submodule).
# Usage: bash tools/build_dcvc.sh     (after: git submodule update --init third_party/DCVC)
# Env: PYTHON (default .venv/bin/python), ENHANCER_DCVC_ROOT, ENHANCER_DCVC_BUILD (see dcvc.py).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
cpp=${ENHANCER_DCVC_ROOT:-$repo/third_party/DCVC}/DCVC-family/DCVC-FM/src/cpp
out=${ENHANCER_DCVC_BUILD:-$repo/build/dcvc}/src/models
if [ ! -d "$cpp" ]; then
    echo "no DCVC-FM sources at $cpp; run: git submodule update --init third_party/DCVC" >&2
    exit 1
fi
"$python" -c "import pybind11" 2>/dev/null || { echo "run: $python -m pip install pybind11" >&2; exit 1; }
includes=$("$python" -m pybind11 --includes)
suffix=$("$python" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
flags="-O3 -DNDEBUG -std=c++17 -shared -fPIC -pthread -fvisibility=hidden"
mkdir -p "$out"
# shellcheck disable=SC2086
c++ $flags $includes "$cpp/ops/ops.cpp" -o "$out/MLCodec_CXX$suffix"
# shellcheck disable=SC2086
c++ $flags $includes -I"$cpp/rans" -I"$cpp/py_rans" "$cpp/rans/rans.cpp" "$cpp/py_rans/py_rans.cpp" \
    -o "$out/MLCodec_rans$suffix"
echo "built $out/MLCodec_CXX$suffix and $out/MLCodec_rans$suffix"
