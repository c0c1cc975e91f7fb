#!/usr/bin/env bash
# Build DCVC's C++ rANS entropy coders out of tree, with pybind11 from PyPI instead of DCVC's own
# build files (DCVC-FM's CMake clones pybind11 from GitHub and writes into the submodule).
#   DCVC-FM (DCVC-family/DCVC-FM/src/cpp)  -> build/dcvc/src/models/MLCodec_{rans,CXX}*.so
#   DCVC-RT (DCVC-family/DCVC-RT/src/cpp)  -> build/dcvc/rt/MLCodec_extensions_cpp*.so
#     (the dcvc-rt adapter, and the dcvc-uf adapter on CPU: DCVC-UF's own Python binding
#      returns no decoded symbols, its streams are written by its CUDA proxy only)
# DCVC-RT's and DCVC-UF's optional CUDA inference kernels are not built here (their PyTorch
# paths run on CPU and GPU alike).
# Usage: bash tools/build_dcvc.sh     (after: git submodule update --init third_party/DCVC)
# Env: PYTHON (default .venv/bin/python), ENHANCER_DCVC_ROOT, ENHANCER_DCVC_BUILD (see dcvc.py).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
root=${ENHANCER_DCVC_ROOT:-$repo/third_party/DCVC}
build=${ENHANCER_DCVC_BUILD:-$repo/build/dcvc}
fm_cpp=$root/DCVC-family/DCVC-FM/src/cpp
rt_cpp=$root/DCVC-family/DCVC-RT/src/cpp
if [ ! -d "$fm_cpp" ] || [ ! -d "$rt_cpp" ]; then
    echo "no DCVC sources at $root; run: git submodule update --init third_party/DCVC" >&2
    exit 1
fi
"$python" -c "import pybind11" 2>/dev/null || { echo "run: $python -m pip install pybind11" >&2; exit 1; }
includes=$("$python" -m pybind11 --includes)
suffix=$("$python" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
flags="-O3 -DNDEBUG -std=c++17 -shared -fPIC -pthread -fvisibility=hidden"
mkdir -p "$build/src/models" "$build/rt"
# shellcheck disable=SC2086
c++ $flags $includes "$fm_cpp/ops/ops.cpp" -o "$build/src/models/MLCodec_CXX$suffix" &
# shellcheck disable=SC2086
c++ $flags $includes -I"$fm_cpp/rans" -I"$fm_cpp/py_rans" "$fm_cpp/rans/rans.cpp" \
    "$fm_cpp/py_rans/py_rans.cpp" -o "$build/src/models/MLCodec_rans$suffix" &
wait
# DCVC-FM's and DCVC-RT's bindings both define a class "RansEncoder"; pybind11 registers classes
# process-wide per ABI id, so the second import would fail ("already registered"). DCVC-RT's
# module gets an ABI id of its own, so both load into one process.
# shellcheck disable=SC2086
c++ $flags $includes -DPYBIND11_BUILD_ABI='"_enhancer_dcvc_rt"' -I"$rt_cpp/py_rans" \
    "$rt_cpp"/py_rans/*.cpp -o "$build/rt/MLCodec_extensions_cpp$suffix"
echo "built $build/src/models/MLCodec_CXX$suffix, $build/src/models/MLCodec_rans$suffix and" \
     "$build/rt/MLCodec_extensions_cpp$suffix"
