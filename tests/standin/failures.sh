#!/usr/bin/env bash
# The dry run fails where the GPU run would lose something, in the stand-in (tests/standin/run.sh,
# root): .debs/ lacking a package the configure needs, and Python headers that are missing and
# cannot be supplied (the stand-in's python3 is a venv without them, and the .debs here lack the
# carried libpython3.11-dev). And an interpreter without pybind11 is served by the carried
# pybind11 wheel, and the configure itself (src/python/CMakeLists.txt) warns, saying why, where
# there are no headers. Each case runs only the steps it needs and checks the reason its row gives. The
# full dry run (tests/standin/run.sh) is the case where the carried headers do supply them: its
# configure fails unless the module is configured. A step writing into $OUT more than the four
# files is tests/standin/gpu_check_script_test.sh's case (ctest, no root needed).
#   bash tests/standin/failures.sh      # after bash bench/fetch_debs.sh; needs root
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
REPO=$PWD
DEBS=${UMLOAD_STANDIN_DEBS:-$REPO/.debs}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0
check() {  # check WHAT COMMAND...
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; passes=$((passes + 1)); else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
# standin CASE DEBS_DIR COMMAND: the stand-in's exit status; its $OUT is kept in $tmp/CASE.
standin() {
  UMLOAD_STANDIN_DEBS=$2 UMLOAD_STANDIN_OUT=$tmp/$1 UMLOAD_STANDIN_COMMAND=$3 \
    bash tests/standin/run.sh > "$tmp/$1.log" 2>&1
}
row() { grep -E "^$2	" "$tmp/$1/steps.tsv" 2> /dev/null; }

[ -n "$(ls "$DEBS"/*.deb 2> /dev/null)" ] || { echo "no .debs in $DEBS: run bash bench/fetch_debs.sh"; exit 1; }

# 1. A package missing from .debs/: the deps step fails and names it.
mkdir -p "$tmp/debs-no-cli11"
cp "$DEBS"/*.deb "$tmp/debs-no-cli11/"
rm "$tmp/debs-no-cli11"/libcli11-dev_*.deb
standin no-cli11 "$tmp/debs-no-cli11" "bash bench/gpu_check.sh --dry-run --only deps"
check "a dry run with libcli11-dev missing from .debs/ fails" test $? != 0
check "its deps row fails and names the package" bash -c 'grep -qE "^deps	FAILED.*	missing from .debs/: libcli11-dev" "$1"' _ "$tmp/no-cli11/steps.tsv"
check "the table names it too" grep -q "libcli11-dev" "$tmp/no-cli11/gpu_table.txt"

# 2. No Python headers anywhere: the venv has none and the .debs carry none.
mkdir -p "$tmp/debs-no-python"
cp "$DEBS"/*.deb "$tmp/debs-no-python/"
rm -f "$tmp/debs-no-python"/libpython3.*-dev_*.deb "$tmp/debs-no-python"/python3.*-dev_*.deb
standin no-python "$tmp/debs-no-python" "bash bench/gpu_check.sh --dry-run --only deps,configure"
check "a dry run without Python headers fails" test $? != 0
check "its deps row passes (the headers are not required packages)" bash -c 'grep -qE "^deps	ok	" "$1"' _ "$tmp/no-python/steps.tsv"
check "its configure row fails and says no Python.h for the venv's Python" \
  bash -c 'grep -qE "^configure	FAILED.*no Python.h for Python 3\.[0-9]+" "$1"' _ "$tmp/no-python/steps.tsv"

# 3. An interpreter without pybind11 (a bare venv of the root's python3): the carried wheel serves.
standin no-pybind11 "$DEBS" "/usr/bin/python3 -m venv --without-pip /tmp/bare && UMLOAD_GPU_PYTHON=/tmp/bare/bin/python3 bash bench/gpu_check.sh --dry-run --only deps,configure"
check "a configure for a venv without pybind11 passes" test $? = 0
check "with the carried pybind11 and headers" \
  bash -c 'grep -qE "^configure	ok	.*module built for /tmp/bare/bin/python3 .*headers from .*pybind11: carried" "$1"' _ "$tmp/no-pybind11/steps.tsv"

# 4. The configure itself, for an interpreter without headers and none given: a warning that says
# what is missing and how to supply it, and UMLOAD_PYTHON_MODULE saying why (not a quiet skip).
standin cmake-no-headers "$DEBS" "bash bench/gpu_check.sh --dry-run --only deps > /dev/null; \
  cmake -S . -B /tmp/b -G Ninja -DUMLOAD_ENABLE_CUDA=OFF -DUMLOAD_BUILD_TESTS=OFF -DUMLOAD_BUILD_BENCH=OFF \
    -DCMAKE_PREFIX_PATH=/tmp/umload-deps/usr -DPKG_CONFIG_EXECUTABLE=/tmp/umload-deps/pkg-config \
    -DPython3_EXECUTABLE=/opt/venv/bin/python3 > /out/cmake.txt 2>&1; \
  grep '^UMLOAD_PYTHON_MODULE' /tmp/b/CMakeCache.txt >> /out/cmake.txt"
check "the configure without Python.h warns that the module is NOT built" \
  bash -c 'tr -d "\n" < "$1" | tr -s " " | grep -q "the Python module is NOT built: no Python.h for /opt/venv/bin/python3 (Python 3.11"' _ "$tmp/cmake-no-headers/cmake.txt"
check "naming where it looked and what to install" \
  bash -c 'tr -d "\n" < "$1" | tr -s " " | grep -q "looked in /usr/include/python3.11.*Install python3.11-dev, or pass -DUMLOAD_PYTHON_INCLUDE_DIR="' _ "$tmp/cmake-no-headers/cmake.txt"
check "and the cache says why" grep -q "^UMLOAD_PYTHON_MODULE:INTERNAL=not built: no Python.h for" "$tmp/cmake-no-headers/cmake.txt"

echo "$passes checks passed, $failures failed"
if [ "$failures" != 0 ]; then
  for c in no-cli11 no-python no-pybind11 cmake-no-headers; do echo "--- $c"; tail -30 "$tmp/$c.log"; done
fi
[ "$failures" = 0 ]
