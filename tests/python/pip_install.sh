#!/usr/bin/env bash
# `pip install .` as a user does it, checked end to end: a fresh clone of this repository's HEAD,
# a fresh venv from Debian's /usr/bin/python3, `pip install .` (scikit-build-core building the
# CMake project; pip's own isolated build environment), then, from outside the clone, the package
# imported from the venv's site-packages, its version, and a load of a small synthetic checkpoint.
#
#   bash tests/python/pip_install.sh [BUILD_DIR]     (`make pip-check`; .ci/run runs it)
#
# BUILD_DIR has the CLI that synthesizes the checkpoint (default build). The build dependencies
# (scikit-build-core, pybind11, numpy) come from the wheelhouse `make venv` fills, without the
# network. CUDA is off here (UMLOAD_ENABLE_CUDA=OFF), to keep the build to the C++ the package
# needs: the CUDA sources are built and tested by `make test`. With ccache installed, the
# compiler runs through it, in the same folders every time, so a second run is mostly cache hits.
# This is not a ctest: on 2 cores the wheel's build takes minutes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
wheelhouse=${WHEELHOUSE:-$HOME/.cache/umload/wheels}
work=${UMLOAD_PIP_CHECK_DIR:-/tmp/umload-pip-check}
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

git clone -q "$repo" "$work/src"
/usr/bin/python3 -m venv "$work/venv"
settings=(--config-settings=cmake.define.UMLOAD_ENABLE_CUDA=OFF --config-settings=build-dir="$work/build")
if command -v ccache >/dev/null; then
  settings+=(--config-settings=cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR=$work
fi
"$work/venv/bin/pip" install -q --no-index --find-links "$wheelhouse" "${settings[@]}" "$work/src"
rm -rf "$work/build"

"$build/umload" synth --preset tiny --out "$work/gpt-oss-20b" >/dev/null
cd "$work"
"$work/venv/bin/python" - "$work/venv" "$repo" <<'PY'
import os
import sys

import numpy as np
import umload

venv, repo = sys.argv[1:]
where = os.path.realpath(umload.__file__)
assert where.startswith(os.path.realpath(venv) + os.sep), "umload imported from %s, not the venv" % where
with open(os.path.join(repo, "CMakeLists.txt")) as f:
    assert "project(umload VERSION %s " % umload.__version__ in f.read(), umload.__version__
sd = umload.load("gpt-oss-20b", device="cpu", framework="numpy")
info = umload.inspect("gpt-oss-20b")
c = info["config"]
down = sd["model.layers.0.mlp.experts.down_proj"]
assert down.dtype == np.uint16, down.dtype  # BF16 bit patterns
assert down.shape == (c["num_local_experts"], c["intermediate_size"], c["hidden_size"]), down.shape
assert not any(name.endswith(("_blocks", "_scales")) for name in sd), "experts were not decoded"
try:
    umload.load("gpt-oss-20b", world_size=3)
except umload.UsageError as e:
    assert e.exit_code == 2, e.exit_code
else:
    raise AssertionError("world_size=3 over 4 experts was not refused")
print("pip install . from a clone: umload %s from %s, %d tensors loaded" % (umload.__version__, where, len(sd)))
PY
