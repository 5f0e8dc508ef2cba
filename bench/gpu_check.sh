#!/usr/bin/env bash
# The GPU check: one run on a lent machine with an NVIDIA GPU (CUDA 13, CMake, ninja, Python with
# PyTorch; none of our Debian packages; no network), inside the device tool's 600 s command limit.
# Ask for the kind nvidia-h100-x1: the gVisor H200 (nvidia-h200, kernel 4.4.0) refuses
# compute-sanitizer and ncu. The script runs on either and its table says which it ran on.
#
#   bash bench/fetch_debs.sh                 # once, on a machine with network: fills .debs/
#   (device tool) run(command="bash bench/gpu_check.sh", carry=[".debs"], timeout_s=600,
#                     kind="nvidia-h100-x1")
#   (again, warm)  run(command="bash bench/gpu_check.sh --only memcheck,peers", ...)
#
#   bash bench/gpu_check.sh --dry-run        # no GPU needed: unpack, configure, build every target
#                                            # the real run builds, the non-GPU halves, checks
#   bash bench/gpu_check.sh --list           # the steps, their limits and what each does
#   bash bench/gpu_check.sh --only A,B       # those steps only (a rerun of what failed)
#   bash bench/gpu_check.sh --from STEP      # STEP and every step after it
#   bash bench/gpu_check.sh --plan [...]     # the steps the options select, without running them
#   bash bench/gpu_check.sh --source-stamp   # the source tree's stamp (a build of it is reused)
#
# Steps, correctness before timings: unpack .debs/ into a prefix; configure for this GPU's
# architecture only; build (-k 0: one failed file loses only what depends on it); the three gtest
# binaries with `gpu` tests, each run directly (one CUDA context per binary); GPU = CPU digests and
# checks for every strategy, layout and dtype (and convert's files); the Python module through
# PyTorch; compute-sanitizer memcheck over the CUDA decode and some backend tests; then the
# timings: kernel and limit benchmark, a 24-layer gpt-oss-20b-shaped checkpoint loaded from the
# page cache, the PyTorch reference of HF's algorithm, and the peers (umload.hf, transformers'
# MXFP4 load, the CLI). Every step runs in its own process under a time limit cut to what is left
# of the run's budget (GPU_CHECK_BUDGET_S, default 560 s); a failed, unbuilt or skipped step gets
# its row, with its reason, and the rest still run; a timing step starts only with half its limit
# left, so the correctness steps always finish.
#
# What comes back: $OUT ends with four files, as the device tool brings back only a few: the log
# (gpu_check.log), the table (gpu_table.txt), the step rows (steps.tsv) and one archive
# (gpu_check.tar.gz) of everything else (the plan, the gtest, python, bench, load, reference and
# peers results, each step's note and log). Scratch lives in the work folder. The table is printed
# last, as only the output's tail is shown inline. A step that writes into $OUT fails its row.
#
# A rerun reuses what matches: the prefix (same .debs), the build folder (same configuration: the
# stamp in it; same source tree: no build at all) and the synthesized checkpoint. The results of
# steps a rerun does not run stay in the table, marked "earlier".
#
# Environment: OUT (default /tmp/umload-gpu-check); UMLOAD_GPU_CHECK_CMAKE_ARGS adds configure
# arguments; UMLOAD_GPU_PYTHON names the interpreter with torch (default python3);
# UMLOAD_GPU_BUILD, UMLOAD_GPU_WORK, UMLOAD_DEPS_PREFIX, UMLOAD_GPU_DEBS move the build folder,
# the work folder, the prefix and the .debs; UMLOAD_GPU_MEMCHECK_FILTER replaces memcheck's gtest
# filter. transformers and the Hub run offline (HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1).
# Nothing here asks for managed memory except the digest step's forced integrated/coherent plans
# on a tiny checkpoint.
set -uo pipefail
SELF=$(readlink -f "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/.." || exit 2
ROOT=$PWD
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# name limit_s class dry what. class: setup (before any check), check (correctness), timing
# (after every check; skipped, with its row, when less than half its limit is left). dry: what
# --dry-run does with it: run (the same), half (its non-GPU half), skip (needs the GPU).
STEPS=(
  "deps 30 setup run unpack .debs/ into the prefix (reused when the .debs are the same)"
  "configure 60 setup run configure for this GPU's architecture, Python module included"
  "build 200 setup run build every target below (-k 0; nothing to do when the tree is the same)"
  "tile_test 15 check run the kernels' per-thread work on the host (CPU)"
  "fp8_tile_test 10 check run the block-FP8 kernel's per-thread work on the host (CPU)"
  "gpu_test_cuda 60 check skip umload_cuda_test: CUDA decode = CPU oracle, CUDA backend"
  "gpu_test_convert 40 check skip umload_cuda_convert_test: convert on the GPU = CPU files; coherent advice"
  "gpu_test_platform 20 check skip test_platform_live_gpu: the live GPU as the platform layer sees it"
  "gpu_test_fp8 20 check skip umload_fp8_cuda_test: block-FP8 CUDA decode = CPU oracle"
  "digests 60 check skip GPU = CPU digests and checks: 3 strategies x 2 layouts x 3 dtypes; convert files"
  "python 60 check half Python module: DLPack hand-over = CPU load; umload.hf logits (dry: CPU half)"
  "memcheck 60 check skip compute-sanitizer memcheck over the decode kernels and backend cases"
  "gpu_bench 40 timing skip device copy and pinned H2D limits, decode kernel bandwidth"
  "synth 90 timing skip synthesize the 24-layer gpt-oss-20b-shaped checkpoint (reused when complete)"
  "load 90 timing skip umload load --device cuda from the page cache (best of 2)"
  "reference 150 timing skip PyTorch reference of HF's algorithm on the same GPU"
  "peers 240 timing half umload.hf, transformers' MXFP4 load and the CLI on the GPU (dry: imports)"
)
# A cold build of the targets below for one architecture on the GPU machine's 16 cores, estimated
# from a measured -j2 build (docs/reliability.md): what the setup's build step takes on a first call.
COLD_BUILD_ESTIMATE_S=90
RUN_BUDGET_S=560
# The memcheck cases (26; about 22 run where pageable zero-copy is not offered): every decode
# kernel test but the large real-shaped one, both strategies of the backend test, the backend's
# fault case (its failure is injected on the host, after the copy) and two memory cases, and the
# backend suite's decode, copy, summary and fault-in-ahead cases of each CUDA strategy. The tests
# that make CUDA calls fail on purpose (listed at the top of tests/cuda/backend_test.cpp) are left
# out; their failing calls would not count anyway (--report-api-errors no).
MEMCHECK_FILTER='CudaDecode.*:Strategies/CudaBackend.*:CudaBackendFaults.*:CudaBackendMemory.HostManagedOutputIsReadableOnTheHost:CudaBackendMemory.SummaryScratchCountsInPeakDeviceBytes:Cuda/BackendSuite.DecodesEqualTheOracleInEveryLayoutAndDtype/*:Cuda/BackendSuite.CopyItemsArriveAsTheyAre/*:Cuda/BackendSuite.SummaryEqualsTheHostSummary/*:Cuda/BackendSuite.FaultingInAheadChangesNoResult/*-CudaDecode.RealShapesClusteredAndEdgeScales'
# The four files $OUT ends with.
OUT_FILES=(gpu_check.log gpu_table.txt steps.tsv gpu_check.tar.gz)

usage() {
  echo "usage: bash bench/gpu_check.sh [--dry-run] [--only STEP,... | --from STEP] [--plan] | --list" >&2
  exit 2
}
step_field() { local f; read -ra f <<< "$1"; echo "${f[$2]}"; }
step_what() { local f; read -ra f <<< "$1"; echo "${f[*]:4}"; }
step_names() { local s; for s in "${STEPS[@]}"; do step_field "$s" 0; done; }
step_line() { local s; for s in "${STEPS[@]}"; do [ "$(step_field "$s" 0)" = "$1" ] && { echo "$s"; return 0; }; done; return 1; }

ACTION=run
MODE=run
PLAN_ONLY=0
ONLY=""
FROM=""
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) MODE=dry-run ;;
    --list) ACTION=list ;;
    --plan) PLAN_ONLY=1 ;;
    --source-stamp) ACTION=source-stamp ;;
    --only) [ $# -ge 2 ] || usage; ONLY=$2; shift ;;
    --only=*) ONLY=${1#--only=} ;;
    --from) [ $# -ge 2 ] || usage; FROM=$2; shift ;;
    --from=*) FROM=${1#--from=} ;;
    # A step's own process: the mode is the run's (GPU_CHECK_MODE).
    --step) [ $# -ge 2 ] || usage; ACTION=step; MODE=${GPU_CHECK_MODE:-run}; STEP_NAME=$2; shift; break ;;
    -h | --help) usage ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
  shift
done
if [ -n "$ONLY" ] && [ -n "$FROM" ]; then echo "--only and --from do not go together" >&2; exit 2; fi

# The steps this call runs, in the order of STEPS.
SELECTED=()
select_steps() {
  local names want n seen=0
  mapfile -t names < <(step_names)
  if [ -n "$ONLY" ]; then
    IFS=, read -ra want <<< "$ONLY"
    [ ${#want[@]} -gt 0 ] || { echo "--only names no step" >&2; return 2; }
    for n in "${want[@]}"; do
      step_line "$n" > /dev/null || { echo "no step '$n' (bash bench/gpu_check.sh --list)" >&2; return 2; }
    done
    for n in "${names[@]}"; do
      [[ ",$ONLY," == *",$n,"* ]] && SELECTED+=("$n")
    done
  elif [ -n "$FROM" ]; then
    step_line "$FROM" > /dev/null || { echo "no step '$FROM' (bash bench/gpu_check.sh --list)" >&2; return 2; }
    for n in "${names[@]}"; do
      [ "$n" = "$FROM" ] && seen=1
      [ "$seen" = 1 ] && SELECTED+=("$n")
    done
  else
    SELECTED=("${names[@]}")
  fi
  return 0
}

# Settings every step process sees (the run exports them).
OUT_DIR=${OUT:-/tmp/umload-gpu-check}
PREFIX=${UMLOAD_DEPS_PREFIX:-/tmp/umload-deps}
BUILD=${UMLOAD_GPU_BUILD:-/tmp/umload-build-gpu}
WORK=${UMLOAD_GPU_WORK:-/tmp/umload-gpu-work}
DEBS=${UMLOAD_GPU_DEBS:-$ROOT/.debs}
PY=${UMLOAD_GPU_PYTHON:-python3}
RES=$WORK/results
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
ARCH=${ARCH:-90}
GVISOR=${GVISOR:-no}
JOBS=${JOBS:-$(nproc)}
if [ -z "${GENERATOR:-}" ]; then
  GENERATOR="Unix Makefiles"
  command -v ninja > /dev/null && GENERATOR=Ninja
fi

# ---------------------------------------------------------------------------------------------
# The steps. Each runs in its own process (`bash gpu_check.sh --step NAME`, under `timeout`), so
# it may exit, and its output goes to the log. Return 0: passed; 3: not run, the reason in its
# note (what it needs was not built, or the machine refuses the tool); anything else: failed.
# A step leaves a one-line summary for its row in $RES/notes/NAME, and its results as
# $RES/NAME.* (removed before it runs, so a rerun never shows a stale result).

note() { mkdir -p "$RES/notes" && echo "$*" > "$RES/notes/$STEP_NAME"; }
# need FILE...: each exists, else the step is "not built".
need() {
  local f
  for f in "$@"; do
    [ -e "$f" ] || { note "not built: ${f#"$BUILD"/}"; return 3; }
  done
}
bin_of() { find "$BUILD" -name "$1" -type f -perm -u+x -not -path '*/CMakeFiles/*' 2>/dev/null | head -1; }
# hash_of FILE...: one sha256 over the files' names and contents.
hash_of() { sha256sum -- "$@" 2> /dev/null | sha256sum | cut -c1-16; }

# unpack_deb DEB DIR: dpkg -x, or ar and tar where the machine has no dpkg.
unpack_deb() {
  if command -v dpkg > /dev/null; then
    dpkg -x "$1" "$2"
  else
    local t rc
    t=$(mktemp -d)
    (cd "$t" && ar x "$1" && tar -xf data.tar.* -C "$2")
    rc=$?
    rm -rf "$t"
    return $rc
  fi
}
step_deps() {
  shopt -s nullglob
  local debs=("$DEBS"/*.deb) f p missing=() stamp
  if [ ${#debs[@]} -eq 0 ]; then
    note "no .debs in $DEBS: run bench/fetch_debs.sh where there is network, carry .debs"
    return 1
  fi
  # Every package the configure needs (bench/fetch_debs.sh --list), each as a .deb.
  while read -r p; do
    compgen -G "$DEBS/${p}_*.deb" > /dev/null || missing+=("$p")
  done < <(bash "$ROOT/bench/fetch_debs.sh" --list)
  if [ ${#missing[@]} -gt 0 ]; then
    note "missing from .debs/: ${missing[*]} (run bench/fetch_debs.sh again)"
    return 1
  fi
  stamp=$(cd "$DEBS" && hash_of ./*.deb ./*.whl)
  if [ "$(cat "$PREFIX/.umload-debs" 2> /dev/null)" = "$stamp" ]; then
    note "${#debs[@]} packages (prefix reused)"
    return 0
  fi
  rm -rf "$PREFIX" && mkdir -p "$PREFIX" || return 1
  for f in "${debs[@]}"; do unpack_deb "$f" "$PREFIX" || { note "could not unpack $(basename "$f")"; return 1; }; done
  # The .pc files name /usr; point them at the prefix (the CMake package files are relocatable).
  find "$PREFIX/usr" -name '*.pc' -exec sed -i "s#/usr#$PREFIX/usr#g" {} + || return 1
  if [ -x "$PREFIX/usr/bin/pkgconf" ]; then
    # The carried pkgconf needs the carried libpkgconf3.
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$LIBDIR" "$PREFIX/usr/bin/pkgconf" > "$PREFIX/pkg-config"
    chmod +x "$PREFIX/pkg-config"
  fi
  ldconfig -p 2>/dev/null | grep -q 'libudev.so.1' || echo "warning: no libudev.so.1 here (libhwloc needs it)"
  # The carried pybind11 wheel (bench/fetch_debs.sh), for an interpreter without pybind11.
  local wheels=("$DEBS"/pybind11-*.whl)
  if [ ${#wheels[@]} -gt 0 ]; then
    "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "${wheels[0]}" "$PREFIX/pybind11-wheel" ||
      { note "could not unpack $(basename "${wheels[0]}")"; return 1; }
  fi
  echo "$stamp" > "$PREFIX/.umload-debs"
  note "${#debs[@]} packages${wheels:+ and $(basename "${wheels[0]}")}"
}

# python_headers PYEXE: where the module's Python.h comes from. Prints "own" when the interpreter's
# own sysconfig paths (include, platinclude, base prefix's include) hold it, the folder of carried
# headers of the same version (bench/fetch_debs.sh: libpythonX.Y-dev, unpacked by deps) when they
# do, and fails, saying where it looked, when neither does.
python_headers() {
  local own ver carried
  own=$("$1" -c 'import os, sys, sysconfig
p = sysconfig.get_paths()
v = sysconfig.get_python_version() + getattr(sys, "abiflags", "")
for d in (p.get("include"), p.get("platinclude"), os.path.join(sys.base_prefix, "include", "python" + v)):
    if d and os.path.exists(os.path.join(d, "Python.h")):
        print(d)
        break
else:
    print("none in " + ", ".join(sorted({d for d in (p.get("include"), p.get("platinclude")) if d})))' 2>&1)
  ver=$("$1" -c 'import sysconfig; print(sysconfig.get_python_version())' 2> /dev/null)
  if [ -n "$own" ] && [ "${own#none in }" = "$own" ]; then echo own; return 0; fi
  carried=$PREFIX/usr/include/python$ver
  if [ -n "$ver" ] && [ -e "$carried/Python.h" ]; then echo "$carried"; return 0; fi
  local have
  have=$(cd "$PREFIX/usr/include" 2> /dev/null && compgen -G 'python3.*' | tr '\n' ' ')
  echo "no Python.h for Python $ver: none in its own paths (${own#none in }), none carried for $ver (carried: ${have:-none})"
  return 1
}

# The configuration as a stamp: a build folder made with another one is made again.
config_stamp() {
  printf '%s\n' "$ARCH" "$GENERATOR" "${UMLOAD_GPU_CHECK_CMAKE_ARGS:-}" "$PREFIX" "$1" \
    "$(command -v "$PY")" "$(cmake --version | head -1)" "$("$NVCC" --version | tail -1)" | sha256sum | cut -c1-16
}
# The source tree as a stamp: what CMake and the compilers read (not the scripts or the docs).
source_stamp() {
  (cd "$ROOT" && find CMakeLists.txt CMakePresets.json kernels platform src tests bench -type f \
    -not -name '*.sh' -not -name '*.md' -not -path 'bench/*.py' -not -path 'bench/gpu/*.py' \
    -not -path '*/__pycache__/*' -print0 2> /dev/null | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

step_configure() {
  local pkg_config py_args=() pyexe pybind headers stamp src module
  pkg_config=$(command -v pkg-config || echo "$PREFIX/pkg-config")
  pyexe=$(command -v "$PY" || true)
  pybind=$([ -n "$pyexe" ] && "$pyexe" -m pybind11 --cmakedir 2>/dev/null || true)
  local pybind_from="its own"
  if [ -z "$pybind" ] && [ -f "$PREFIX/pybind11-wheel/pybind11/share/cmake/pybind11/pybind11Config.cmake" ]; then
    pybind=$PREFIX/pybind11-wheel/pybind11/share/cmake/pybind11
    pybind_from="carried ($pybind)"
  fi
  if [ -z "$pyexe" ]; then
    module="no Python module: no $PY here"
  elif [ -z "$pybind" ]; then
    module="no Python module: no pybind11 for $pyexe (its own or carried)"
  elif headers=$(python_headers "$pyexe"); then
    py_args=(-DUMLOAD_BUILD_PYTHON=ON -DPython3_EXECUTABLE="$pyexe" -Dpybind11_DIR="$pybind")
    [ "$headers" = own ] || py_args+=(-DUMLOAD_PYTHON_INCLUDE_DIR="$headers")
    module="Python module for $pyexe, headers: $([ "$headers" = own ] && echo its own || echo "carried, $headers"); pybind11: $pybind_from"
  else
    module="no Python module: $headers"
  fi
  if [ ${#py_args[@]} = 0 ]; then
    if [ "$MODE" = dry-run ]; then
      # The real run would lose the Python step: the rehearsal fails here, saying why.
      note "$module"
      return 1
    fi
    py_args=(-DUMLOAD_BUILD_PYTHON=OFF)
  fi
  echo "$module"
  stamp=$(config_stamp "${py_args[*]}")
  src=$(source_stamp)
  if [ -f "$BUILD/CMakeCache.txt" ] && [ "$(sed -n 1p "$BUILD/.umload-gpu-check" 2> /dev/null)" = "config $stamp" ]; then
    if [ "$(sed -n 2p "$BUILD/.umload-gpu-check")" = "source $src" ]; then
      note "sm_$ARCH; $module (build folder reused: same configuration and tree)"
      return 0
    fi
    echo "build folder $BUILD has this configuration: configuring it again in place"
  else
    rm -rf "$BUILD"
  fi
  # shellcheck disable=SC2086
  cmake -S "$ROOT" -B "$BUILD" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release -DUMLOAD_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -DCMAKE_PREFIX_PATH="$PREFIX/usr" -DPKG_CONFIG_EXECUTABLE="$pkg_config" "${py_args[@]}" \
    ${UMLOAD_GPU_CHECK_CMAKE_ARGS:-} || { note "cmake failed (the log has its message)"; return 1; }
  printf 'config %s\nsource %s\n' "$stamp" "$src" > "$BUILD/.umload-gpu-check"
  echo "$module" > "$BUILD/.umload-gpu-check-python"
  # What the configure itself concluded about the module (src/python/CMakeLists.txt).
  local said
  said=$(sed -n 's/^UMLOAD_PYTHON_MODULE:INTERNAL=//p' "$BUILD/CMakeCache.txt")
  if [ -n "$said" ]; then note "sm_$ARCH; module $said; pybind11: $pybind_from"; else note "sm_$ARCH; $module"; fi
  if [ "$MODE" = dry-run ] && [ "${py_args[0]}" = -DUMLOAD_BUILD_PYTHON=ON ] && [ "${said#built}" = "$said" ]; then
    return 1
  fi
  return 0
}

# The targets the run builds: every one this configure has.
WANTED_TARGETS=(umload umload_cuda_test umload_cuda_convert_test test_platform_live_gpu
  umload_cuda_tile_test umload_fp8_tile_test umload_fp8_cuda_test umload_gpu_bench umload_python)
step_build() {
  need "$BUILD/CMakeCache.txt" || return 3
  local have targets=() t keep=(-k 0) src
  src=$(source_stamp)
  if [ "$(sed -n 3p "$BUILD/.umload-gpu-check" 2> /dev/null)" = "built $src" ]; then
    note "reused: built from this tree already ($src)"
    return 0
  fi
  # Ninja's `help` lists only phony targets; `-t targets all` has every output, executables too.
  if [ "$GENERATOR" = Ninja ]; then
    have=$(ninja -C "$BUILD" -t targets all 2> /dev/null)
  else
    have=$(cmake --build "$BUILD" --target help 2> /dev/null)
  fi
  for t in "${WANTED_TARGETS[@]}"; do
    grep -qE "^(\.\.\. )?$t(:| |\$)" <<< "$have" && targets+=("$t")
  done
  [ ${#targets[@]} -gt 0 ] || { note "not built: the configure made no targets"; return 3; }
  [ "$GENERATOR" = Ninja ] || keep=(-k)
  cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" -- "${keep[@]}"
  local rc=$?
  if [ "$rc" = 0 ]; then
    sed -i '3,$d' "$BUILD/.umload-gpu-check" 2> /dev/null
    echo "built $src" >> "$BUILD/.umload-gpu-check"
    note "${#targets[@]} targets: ${targets[*]}"
  else
    note "failed with -k 0 (the log has the errors); of ${targets[*]} built: $(for t in "${targets[@]}"; do [ -n "$(bin_of "$t")" ] || compgen -G "$BUILD/python/umload/$t*.so" > /dev/null && echo -n "$t "; done)"
  fi
  return $rc
}

# gtest BINARY [ARGS...]: one process, results to $RES/NAME.json; the note counts skips.
gtest() {
  local b
  b=$(bin_of "$1")
  [ -n "$b" ] || { note "not built: $1"; return 3; }
  shift
  "${GTEST_WRAPPER[@]}" "$b" --gtest_brief=1 --gtest_output="json:$RES/$STEP_NAME.json" "$@"
  local rc=$?
  gtest_note "$rc"
}
# gtest_note RC: the note from the step's gtest JSON; 5 when every case skipped (on the GPU run
# that means no usable device, not a pass).
gtest_note() {
  local rc=$1 summary src
  summary=$("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
cases = [c for s in r.get("testsuites", []) for c in s.get("testsuite", [])]
skipped = sum(1 for c in cases if c.get("result") == "SKIPPED")
failed = [s.get("name", "?") + "." + c.get("name", "?") for s in r.get("testsuites", [])
          for c in s.get("testsuite", []) if c.get("failures")]
print(f"{len(cases)} cases, {len(failed)} failed, {skipped} skipped" + (f"; first: {failed[0]}" if failed else ""))
sys.exit(5 if cases and skipped == len(cases) else 0)
' "$RES/$STEP_NAME.json" 2> /dev/null)
  src=$?
  note "${summary:-no gtest report (rc=$rc)}"
  [ "$rc" = 0 ] || return "$rc"
  if [ "$src" = 5 ] && [ "$MODE" = run ]; then return 5; fi
  return 0
}
GTEST_WRAPPER=()
step_tile_test() { gtest umload_cuda_tile_test; }
step_fp8_tile_test() { gtest umload_fp8_tile_test; }
step_gpu_test_fp8() { gtest umload_fp8_cuda_test; }
step_gpu_test_cuda() { gtest umload_cuda_test; }
step_gpu_test_convert() { gtest umload_cuda_convert_test; }
step_gpu_test_platform() { gtest test_platform_live_gpu; }

# compute-sanitizer's memcheck: API errors not reported (the suite makes failing calls on purpose,
# cudaMalloc(1 << 62) and the like), memory errors fatal (exit 99), over a bounded set of cases.
step_memcheck() {
  local sanitizer rc
  sanitizer=$(command -v compute-sanitizer || echo "$(dirname "$NVCC")/compute-sanitizer")
  [ -x "$sanitizer" ] || { note "not run: no compute-sanitizer beside $NVCC"; return 3; }
  [ -n "$(bin_of umload_cuda_test)" ] || { note "not built: umload_cuda_test"; return 3; }
  GTEST_WRAPPER=("$sanitizer" --tool memcheck --report-api-errors no --error-exitcode 99 --print-limit 20)
  gtest umload_cuda_test --gtest_filter="${UMLOAD_GPU_MEMCHECK_FILTER:-$MEMCHECK_FILTER}"
  rc=$?
  if [ "$rc" = 99 ]; then
    note "memory errors found (the log has the first 20); $(cat "$RES/notes/memcheck" 2> /dev/null)"
  elif [ "$rc" != 0 ] && [ "$GVISOR" = yes ] && [ ! -s "$RES/memcheck.json" ]; then
    note "not run: compute-sanitizer refused on this gVisor kernel (rc=$rc); ask for nvidia-h100-x1"
    return 3
  fi
  return $rc
}

# Same digest and same checks on the GPU as on the CPU: a checkpoint with every scale byte, both
# layouts, every dtype, the three GPU strategies (discrete copy; zero-copy as integrated and
# coherent). The three GPU loads of one layout and dtype run side by side: each process pays for
# its own CUDA context, which is what costs here.
same_json() {
  "$PY" -c '
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(0 if a["digest"] == b["digest"] and a.get("checks") == b.get("checks") else 1)' "$1" "$2"
}
step_digests() {
  local u=$BUILD/umload d=$WORK/digest-ckpt r=$WORK/digest-runs failed=0 first="" layout dtype platform
  need "$u" || return 3
  rm -rf "$d" "$r" && mkdir -p "$r"
  "$u" synth --preset tiny --layers 3 --experts 8 --edge-scales --out "$d" > /dev/null || { note "synth of the tiny checkpoint failed"; return 1; }
  for layout in hf native; do
    for dtype in bf16 f32 keep; do
      "$u" load "$d" --device cpu --layout $layout --dtype $dtype --digest --check --json \
        > "$r/cpu-$layout-$dtype.json" || { note "CPU load failed: $layout $dtype"; return 1; }
      for platform in discrete integrated coherent; do
        "$u" load "$d" --device cuda --platform $platform --layout $layout --dtype $dtype --digest --check \
          --json > "$r/$platform-$layout-$dtype.json" 2> "$r/$platform-$layout-$dtype.err" &
      done
      wait
      for platform in discrete integrated coherent; do
        if same_json "$r/cpu-$layout-$dtype.json" "$r/$platform-$layout-$dtype.json"; then
          echo "same digest and checks: $layout $dtype $platform"
        else
          echo "DIFFERENT or failed: $layout $dtype $platform"
          cat "$r/$platform-$layout-$dtype.err"
          failed=$((failed + 1))
          [ -n "$first" ] || first="$layout $dtype $platform: $(grep -m1 . "$r/$platform-$layout-$dtype.err" | cut -c1-120)"
        fi
      done
    done
  done
  # convert: the same files byte for byte from the GPU as from the CPU.
  for layout in hf native; do
    "$u" convert "$d" --out "$r/conv-cpu-$layout" --device cpu --layout $layout --json > /dev/null || { note "CPU convert failed: $layout"; return 1; }
    if "$u" convert "$d" --out "$r/conv-gpu-$layout" --device cuda --layout $layout --json > /dev/null &&
      [ "$(cd "$r/conv-cpu-$layout" && sha256sum -- * | sort)" = "$(cd "$r/conv-gpu-$layout" && sha256sum -- * | sort)" ]; then
      echo "same converted files: $layout"
    else
      echo "DIFFERENT or failed convert: $layout"
      failed=$((failed + 1))
      [ -n "$first" ] || first="convert $layout"
    fi
  done
  rm -rf "$d" "$r"
  note "$((18 + 2 - failed)) of 20 equal${first:+; first: $first}"
  [ "$failed" = 0 ]
}

# The module: build/python/umload*.so, or a package build/python/umload/ with it inside.
module_built() { compgen -G "$BUILD/python/umload*.so" > /dev/null || compgen -G "$BUILD/python/umload/*.so" > /dev/null; }
# has_flag SCRIPT FLAG: the script's --help names the flag (h-gpupy's interface may not be there yet).
has_flag() { "$PY" "$1" --help 2> /dev/null | grep -q -- "$2"; }
step_python() {
  local script=$ROOT/bench/gpu/python_check.py args=()
  need "$BUILD/umload" || return 3
  if ! module_built; then
    # Why: the configure's own word, else what this script found before it.
    local why
    why=$(sed -n 's/^UMLOAD_PYTHON_MODULE:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2> /dev/null)
    note "not built: the Python module (${why:-$(cat "$BUILD/.umload-gpu-check-python" 2> /dev/null)})"
    return 3
  fi
  if [ "$MODE" = dry-run ]; then
    has_flag "$script" --cpu-only || { note "bench/gpu/python_check.py has no --cpu-only: its CPU half cannot run"; return 1; }
    args=(--cpu-only)
  fi
  PYTHONPATH=$BUILD/python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 "$PY" "$script" \
    --umload "$BUILD/umload" --work "$WORK/python" --json "$RES/python.json" "${args[@]}"
  local rc=$?
  "$PY" -c '
import json, sys
c = json.load(open(sys.argv[1])).get("checks", {})
bad = [k for k, v in c.items() if not v.get("ok")]
first = f"; first failed: {bad[0]}: " + str(c[bad[0]].get("value", "")) if bad else ""
print(f"{len(c) - len(bad)} of {len(c)} checks passed{first}")
' "$RES/python.json" > "$WORK/python.note" 2> /dev/null && note "$(cat "$WORK/python.note")"
  return $rc
}

step_gpu_bench() {
  need "$BUILD/umload_gpu_bench" || return 3
  "$BUILD/umload_gpu_bench" | tee "$RES/gpu_bench.txt"
}

# The checkpoint goes to /dev/shm when it has room: tmpfs pages are page cache that the disk never
# has to absorb (a writer's fdatasync on a slow VM disk could take minutes for 13.8 GB). It stays
# for a rerun; .umload-complete marks one that synth finished.
ckpt_dir() {
  local free
  free=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
  if [ -e /dev/shm/umload-ckpt-20b ] || [ "${free:-0}" -gt 20000000000 ] 2>/dev/null; then
    echo /dev/shm/umload-ckpt-20b
  else
    echo "$WORK/ckpt-20b"
  fi
}
step_synth() {
  need "$BUILD/umload" || return 3
  local c bytes
  c=$(ckpt_dir)
  if [ ! -e "$c/.umload-complete" ]; then
    rm -rf "$c"
    "$BUILD/umload" synth --preset gpt-oss-20b --out "$c" || return 1
    touch "$c/.umload-complete"
  fi
  cat "$c"/*.safetensors > /dev/null
  bytes=$(cat "$c"/*.safetensors | wc -c)
  echo "{\"bytes\": $bytes, \"dir\": \"$c\"}" > "$RES/synth.json"
  note "$((bytes / 1000000)) MB in $c"
}
need_ckpt() { [ -e "$(ckpt_dir)/.umload-complete" ] || { note "not run: no checkpoint (synth first)"; return 3; }; }

step_load() {
  local c i
  c=$(ckpt_dir)
  need "$BUILD/umload" || return 3
  need_ckpt || return 3
  # Buffered reads that keep the cache, so both runs read from memory; the faster one counts
  # (timing.total_seconds where the build reports it: from backend creation, allocations included).
  for i in 1 2; do
    "$BUILD/umload" load "$c" --device cuda --io buffered --keep-cache --json > "$WORK/load-$i.json" ||
      { note "load run $i failed"; return 1; }
  done
  "$PY" -c '
import json, shutil, sys
runs = [json.load(open(p)) for p in sys.argv[1:3]]
def total(r):
    return (r.get("timing") or {}).get("total_seconds", r["seconds"])
best = min(range(2), key=lambda i: total(runs[i]))
print("load runs:", [total(r) for r in runs], "s", "(timing.total_seconds)" if runs[0].get("timing") else "(seconds: no timing in this build)")
shutil.copy(sys.argv[1 + best], sys.argv[3])' "$WORK/load-1.json" "$WORK/load-2.json" "$RES/load.json" || return 1
  head -40 "$RES/load.json"
}

step_reference() {
  local c script=$ROOT/bench/gpu/reference_gpu.py args=()
  c=$(ckpt_dir)
  need_ckpt || return 3
  has_flag "$script" --runs && args=(--runs 2)
  PYTHONUNBUFFERED=1 "$PY" "$script" "$c" --json "$RES/reference.json" "${args[@]}"
}

step_peers() {
  local c script=$ROOT/bench/gpu/peers.py
  [ -f "$script" ] || { note "bench/gpu/peers.py is not in this tree"; return 1; }
  c=$(ckpt_dir)
  if [ "$MODE" = dry-run ]; then
    has_flag "$script" --check-imports || { note "bench/gpu/peers.py has no --check-imports"; return 1; }
    PYTHONPATH=$BUILD/python${PYTHONPATH:+:$PYTHONPATH} "$PY" "$script" "$c" --umload "$BUILD/umload" \
      --json "$RES/peers.json" --check-imports || return 1
    note "what the peers need imports"
    return 0
  fi
  need "$BUILD/umload" || return 3
  need_ckpt || return 3
  PYTHONPATH=$BUILD/python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 "$PY" "$script" "$c" \
    --umload "$BUILD/umload" --json "$RES/peers.json" --runs 2 --budget "$((${STEP_LIMIT:-240} - 10))" \
    --bench "$RES/gpu_bench.txt"
}

# ---------------------------------------------------------------------------------------------
if [ "$ACTION" = list ]; then
  total=0
  for s in "${STEPS[@]}"; do
    printf '%-18s %4ss  %-6s %-5s %s\n' "$(step_field "$s" 0)" "$(step_field "$s" 1)" "$(step_field "$s" 2)" \
      "$(step_field "$s" 3)" "$(step_what "$s")"
    case $(step_field "$s" 0) in build) ;; *) [ "$(step_field "$s" 2)" = timing ] || total=$((total + $(step_field "$s" 1))) ;; esac
  done
  echo "budget: setup and check limits without the build ${total} s + cold build (one arch, 16 cores, estimated) ${COLD_BUILD_ESTIMATE_S} s = $((total + COLD_BUILD_ESTIMATE_S)) s of ${RUN_BUDGET_S} s; the timings get what is left"
  exit 0
fi

if [ "$ACTION" = source-stamp ]; then
  source_stamp
  exit 0
fi
if [ "$ACTION" = step ]; then
  declare -F "step_$STEP_NAME" > /dev/null || { echo "no step $STEP_NAME in $SELF" >&2; exit 2; }
  [ "${2:-}" = --defined ] && exit 0
  "step_$STEP_NAME"
  exit $?
fi

select_steps || exit 2
if [ "$PLAN_ONLY" = 1 ]; then
  for n in "${SELECTED[@]}"; do
    s=$(step_line "$n")
    d=$(step_field "$s" 3)
    if [ "$MODE" = dry-run ] && [ "$d" = skip ]; then echo "$n (not in a dry run: needs the GPU)"
    elif [ "$MODE" = dry-run ] && [ "$d" = half ]; then echo "$n (its non-GPU half)"
    else echo "$n"; fi
  done
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# The run (or the dry run).
START=$(date +%s)
# The real run's budget fits the device tool's 600 s; a dry run builds on whatever CPU it has
# (CI's 2 cores), so its limits stretch by GPU_CHECK_LIMIT_SCALE (default 10 there).
if [ "$MODE" = dry-run ]; then
  SCALE=${GPU_CHECK_LIMIT_SCALE:-10}
  DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-3600}))
else
  SCALE=${GPU_CHECK_LIMIT_SCALE:-1}
  DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-$RUN_BUDGET_S}))
fi
TABLE_RESERVE=15
mkdir -p "$OUT_DIR" "$RES/notes" "$RES/logs" "$WORK/scratch"
for f in "${OUT_FILES[@]}"; do rm -f "$OUT_DIR/$f"; done
# What an earlier run (of another version) left in $OUT moves aside: from here on, anything but
# the four files is a step's doing.
if [ -n "$(ls -A "$OUT_DIR")" ]; then
  mkdir -p "$WORK/out-before"
  echo "moved what was in $OUT_DIR to $WORK/out-before: $(ls -A "$OUT_DIR" | tr '\n' ' ')"
  mv "$OUT_DIR"/* "$OUT_DIR"/.[!.]* "$WORK/out-before/" 2> /dev/null
fi
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
TEE_PID=$!

# The rows of an earlier call for the steps this one does not run stay, marked "earlier".
if [ -f "$RES/steps.tsv" ]; then
  awk -F'\t' -v sel=",$(IFS=,; echo "${SELECTED[*]}")," 'BEGIN {OFS = "\t"}
    index(sel, "," $1 ",") == 0 && $1 != "checks" { if ($2 !~ /^earlier: /) $2 = "earlier: " $2; print }' \
    "$RES/steps.tsv" > "$WORK/scratch/steps.tsv"
  mv "$WORK/scratch/steps.tsv" "$RES/steps.tsv"
fi
step_names > "$RES/plan.txt"

ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=${ARCH:-90}
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
CARD=${CARD:-no GPU seen}
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
KERNEL=$(uname -r)
GVISOR=no
case $KERNEL in 4.4.0*) GVISOR=yes ;; esac
# The header line of the table: the card, the machine and the tools the build and the steps use.
version_of() { "$@" 2> /dev/null | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -1; }
HEADER="$CARD, driver ${DRIVER:-none}, sm_$ARCH; kernel $KERNEL ($([ "$GVISOR" = yes ] && echo "gVisor: the nvidia-h200 kind" || echo "not gVisor")), $JOBS cores; cmake $(version_of cmake --version) ($(command -v cmake)), gcc $(version_of "${CXX:-g++}" -dumpfullversion), nvcc $("$NVCC" --version 2> /dev/null | grep -oE 'V[0-9][0-9.]*' | tail -1), Python $(version_of "$PY" --version) ($(command -v "$PY" || echo "no $PY"))"
GPU_CHECK_MODE=$MODE
export ROOT OUT_DIR PREFIX BUILD WORK RES DEBS PY LIBDIR ARCH CARD GENERATOR JOBS GPU_CHECK_MODE NVCC GVISOR
echo "umload GPU check ($MODE) of $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'): $HEADER"
echo "steps: ${SELECTED[*]}"

GPU_ONLY=$(for s in "${STEPS[@]}"; do [ "$(step_field "$s" 3)" = skip ] && step_field "$s" 0; done | tr '\n' ' ')
table() { HEADER=$HEADER MODE=$MODE SELECTED="${SELECTED[*]}" GPU_ONLY=$GPU_ONLY "$PY" "$ROOT/bench/gpu/table.py" "$RES"; }
# publish: the step rows, the table and the archive into $OUT (after every step, so a run cut
# short still leaves them).
publish() {
  cp "$RES/steps.tsv" "$OUT_DIR/steps.tsv" 2> /dev/null
  # Without a working table.py the rows themselves are the table.
  table > "$WORK/scratch/table.txt" 2>&1 ||
    { echo "(bench/gpu/table.py failed; the step rows:)"; cat "$RES/steps.tsv"; } >> "$WORK/scratch/table.txt" 2>&1
  cp "$WORK/scratch/table.txt" "$OUT_DIR/gpu_table.txt"
  tar -czf "$WORK/scratch/archive.tar.gz" -C "$RES" . 2> /dev/null && mv "$WORK/scratch/archive.tar.gz" "$OUT_DIR/gpu_check.tar.gz"
}
# strays: anything in $OUT but the four files (moved into the archive's stray/); prints their names.
strays() {
  local f name found=()
  for f in "$OUT_DIR"/* "$OUT_DIR"/.[!.]*; do
    [ -e "$f" ] || continue
    name=$(basename "$f")
    [[ " ${OUT_FILES[*]} " == *" $name "* ]] && continue
    found+=("$name")
    mkdir -p "$RES/stray" && mv "$f" "$RES/stray/"
  done
  echo "${found[*]}"
}

FAILED=0
# run_step NAME LIMIT CLASS: one row in steps.tsv (name, status, seconds, note).
run_step() {
  local name=$1 limit=$2 class=$3 t0 rc status left extra
  rm -rf "$RES/notes/$name" "$RES/logs/$name.log" "$RES/$name".*
  left=$((DEADLINE - $(date +%s) - TABLE_RESERVE))
  t0=$(date +%s)
  if [ "$left" -lt 5 ] || { [ "$class" = timing ] && [ "$left" -lt $((limit / 2)) ]; }; then
    status="skipped: out of time (${left}s left of the budget, limit ${limit}s)"
    rc=124
  else
    [ "$limit" -gt "$left" ] && limit=$left
    echo
    echo "=== $name (limit ${limit}s, at $(($(date +%s) - START))s)"
    STEP_NAME=$name STEP_LIMIT=$limit timeout --kill-after=10 "$limit" bash "$SELF" --step "$name" 2>&1 | tee "$RES/logs/$name.log"
    rc=${PIPESTATUS[0]}
    case $rc in
      0) status=ok ;;
      3) status="not run" ;;
      5) status="FAILED: every case skipped" ;;
      124 | 137) status="FAILED: timed out after ${limit}s" ;;
      *) status="FAILED rc=$rc" ;;
    esac
  fi
  extra=$(strays)
  if [ -n "$extra" ]; then
    status="FAILED: wrote into \$OUT: $extra"
    rc=1
  fi
  [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
  local n=""
  [ -f "$RES/notes/$name" ] && n=$(head -1 "$RES/notes/$name")
  # A failure without a note of its own keeps its last line of output as the reason.
  if [ -z "$n" ] && [ "$rc" != 0 ] && [ -s "$RES/logs/$name.log" ]; then
    n=$(grep -v '^[[:space:]]*$' "$RES/logs/$name.log" | tail -1 | cut -c1-160)
  fi
  n=${n//$'\t'/ }
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - t0))" "$n" >> "$RES/steps.tsv"
  echo "=== $name: $status in $(($(date +%s) - t0))s${n:+ ($n)}"
  publish
  return "$rc"
}

# A dry run's own checks: the script parses, every step is defined by this file (the step's own
# process finds its function), the Python the run uses compiles.
check_steps() {
  local n bad=0
  bash -n "$SELF" || bad=1
  for n in $(step_names); do
    bash "$SELF" --step "$n" --defined || bad=1
  done
  "$PY" -m py_compile "$ROOT"/bench/gpu/*.py || bad=1
  find "$ROOT/bench/gpu" -name __pycache__ -prune -exec rm -rf {} +
  [ "$bad" = 0 ] && echo "$(step_names | wc -l) steps defined; bench/gpu/*.py compile" > "$RES/notes/checks"
  return $bad
}

for name in "${SELECTED[@]}"; do
  s=$(step_line "$name")
  if [ "$MODE" = dry-run ] && [ "$(step_field "$s" 3)" = skip ]; then continue; fi
  run_step "$name" "$(($(step_field "$s" 1) * SCALE))" "$(step_field "$s" 2)"
done

if [ "$MODE" = dry-run ]; then
  t0=$(date +%s)
  if check_steps; then status=ok; else status="FAILED"; FAILED=$((FAILED + 1)); fi
  extra=$(strays)
  [ -z "$extra" ] || { status="FAILED: wrote into \$OUT: $extra"; FAILED=$((FAILED + 1)); }
  printf '%s\t%s\t%s\t%s\n' checks "$status" "$(($(date +%s) - t0))" "$(cat "$RES/notes/checks" 2>/dev/null)" >> "$RES/steps.tsv"
  echo
  echo "would run on the GPU:"
  declare -A NEEDS=([gpu_test_cuda]=umload_cuda_test [gpu_test_convert]=umload_cuda_convert_test
    [gpu_test_platform]=test_platform_live_gpu [gpu_test_fp8]=umload_fp8_cuda_test [memcheck]=umload_cuda_test [gpu_bench]=umload_gpu_bench
    [digests]=umload [synth]=umload [load]=umload [reference]=umload [python]=umload [peers]=umload)
  for name in "${SELECTED[@]}"; do
    s=$(step_line "$name")
    [ "$(step_field "$s" 3)" = run ] && continue
    if [ "$name" = python ] && ! module_built; then w="the Python module NOT BUILT"
    elif [ -n "$(bin_of "${NEEDS[$name]}")" ]; then w="${NEEDS[$name]} built"
    else w="${NEEDS[$name]} NOT BUILT"; fi
    printf '  %-18s %4ss  %s  [%s]\n' "$name" "$(step_field "$s" 1)" "$(step_what "$s")" "$w"
    case $w in *NOT\ BUILT) FAILED=$((FAILED + 1)) ;; esac
  done
fi

rm -rf "$WORK/scratch" "$WORK/python" "$WORK"/load-*.json "$WORK"/*.note
mkdir -p "$WORK/scratch"
echo
echo "total $(($(date +%s) - START)) s; $FAILED failed or not run; in $OUT_DIR: ${OUT_FILES[*]}"
publish
extra=$(strays)
[ -z "$extra" ] || { echo "FAILED: \$OUT held more than the four files: $extra (now in the archive's stray/)"; FAILED=$((FAILED + 1)); publish; }
cat "$OUT_DIR/gpu_table.txt"
# Let tee write the last lines before the script ends.
exec 1>&- 2>&-
wait "$TEE_PID" 2> /dev/null
[ "$FAILED" = 0 ]
