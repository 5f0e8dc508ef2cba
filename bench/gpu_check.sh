#!/usr/bin/env bash
# The GPU check: one run on a lent machine with an NVIDIA GPU (CUDA 13, CMake, ninja, Python with
# PyTorch; none of our Debian packages; no network), inside the device tool's 600 s command limit.
#
#   bash bench/fetch_debs.sh                 # once, on a machine with network: fills .debs/
#   (device tool) run(command="bash bench/gpu_check.sh", carry=[".debs"], timeout_s=600)
#
#   bash bench/gpu_check.sh --dry-run        # no GPU needed: unpack, configure, build every target
#                                            # the real run builds, check every step, list the rest
#   bash bench/gpu_check.sh --list           # the steps, their limits and what each does
#
# Steps, correctness before timings: unpack .debs/ into a prefix; configure for this GPU's
# architecture only; build (-k 0: one failed file loses only what depends on it); the three gtest
# binaries with `gpu` tests, each run directly (one CUDA context per binary); GPU = CPU digests and
# checks for every strategy, layout and dtype (and convert's files); the Python module through
# PyTorch (DLPack hand-over without a copy; transformers' logits where umload.hf exists);
# compute-sanitizer memcheck over the CUDA decode and backend tests; then the timings: kernel and
# limit benchmark, a 24-layer gpt-oss-20b-shaped checkpoint loaded from the page cache, and the
# PyTorch reference of HF's algorithm on the same GPU. Every step runs in its own process under a
# time limit cut to what is left of the run's budget (GPU_CHECK_BUDGET_S, default 560 s); a failed,
# unbuilt or skipped step gets its row and the rest still run. The log, the step rows and the table
# are written to $OUT (the device tool brings that folder back) as the run goes; the table is
# printed last.
#
# Environment: OUT (default /tmp/umload-gpu-check); UMLOAD_GPU_CHECK_CMAKE_ARGS adds configure
# arguments; UMLOAD_GPU_PYTHON names the interpreter with torch (default python3).
# Nothing here asks for managed memory except the digest step's forced integrated/coherent plans
# on a tiny checkpoint.
set -uo pipefail
SELF=$(readlink -f "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/.."
ROOT=$PWD

# name limit_s phase what. Phase `build` runs in the dry run too; `gpu` needs the GPU.
STEPS=(
  "deps 60 build unpack .debs/ into the prefix"
  "configure 120 build configure for this GPU's architecture (Python module where pybind11 is)"
  "build 330 build build every target below (-k 0)"
  "tile_test 30 build the kernels' per-thread work on the host (CPU)"
  "gpu_test_cuda 90 gpu umload_cuda_test: CUDA decode = CPU oracle, CUDA backend"
  "gpu_test_convert 60 gpu umload_cuda_convert_test: convert on the GPU = CPU files; a coherent plan's advice and prefetch on the GPU"
  "gpu_test_platform 45 gpu test_platform_live_gpu: the live GPU as the platform layer sees it"
  "digests 150 gpu GPU = CPU digests and checks: 3 strategies x 2 layouts x 3 dtypes; convert files"
  "python 120 gpu Python module: torch CUDA tensors through DLPack = CPU load; umload.hf logits"
  "memcheck 90 gpu compute-sanitizer memcheck over the CUDA decode and backend tests"
  "gpu_bench 60 gpu device copy and pinned H2D limits, decode kernel bandwidth"
  "synth 120 gpu synthesize the 24-layer gpt-oss-20b-shaped checkpoint"
  "load 120 gpu umload load --device cuda from the page cache (best of 2)"
  "reference 150 gpu PyTorch reference of HF's algorithm on the same GPU"
)

MODE=run
case "${1:-}" in
  "") ;;
  --dry-run) MODE=dry-run ;;
  --list) MODE=list ;;
  --step) MODE=step ;;
  *) echo "usage: bash bench/gpu_check.sh [--dry-run | --list]" >&2; exit 2 ;;
esac

# Settings every step process sees (the run exports them).
OUT_DIR=${OUT_DIR:-${OUT:-/tmp/umload-gpu-check}}
PREFIX=${UMLOAD_DEPS_PREFIX:-/tmp/umload-deps}
BUILD=${UMLOAD_GPU_BUILD:-/tmp/umload-build-gpu}
WORK=${UMLOAD_GPU_WORK:-/tmp/umload-gpu-work}
PY=${UMLOAD_GPU_PYTHON:-python3}
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu

# ---------------------------------------------------------------------------------------------
# The steps. Each runs in its own process (`bash gpu_check.sh --step NAME`, under `timeout`), so
# it may exit, and its stdout and stderr go to the log. Return 0: passed; 3: what it needs was not
# built (the reason is in $OUT_DIR/notes/NAME); anything else: failed. A step may leave a one-line
# summary for its row in $OUT_DIR/notes/NAME.

note() { mkdir -p "$OUT_DIR/notes" && echo "$*" > "$OUT_DIR/notes/$STEP_NAME"; }
# need FILE...: each exists, else the step is "not built".
need() {
  local f
  for f in "$@"; do
    [ -e "$f" ] || { note "not built: ${f#"$BUILD"/}"; return 3; }
  done
}
bin_of() { find "$BUILD" -name "$1" -type f -perm -u+x -not -path '*/CMakeFiles/*' 2>/dev/null | head -1; }

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
  local debs=("$ROOT"/.debs/*.deb) f
  if [ ${#debs[@]} -eq 0 ]; then
    note "no .debs/: run bench/fetch_debs.sh where there is network, carry .debs"
    return 1
  fi
  rm -rf "$PREFIX" && mkdir -p "$PREFIX" || return 1
  for f in "${debs[@]}"; do unpack_deb "$f" "$PREFIX" || return 1; done
  # The .pc files name /usr; point them at the prefix (the CMake package files are relocatable).
  find "$PREFIX/usr" -name '*.pc' -exec sed -i "s#/usr#$PREFIX/usr#g" {} + || return 1
  if [ -x "$PREFIX/usr/bin/pkgconf" ]; then
    # The carried pkgconf needs the carried libpkgconf3.
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$LIBDIR" "$PREFIX/usr/bin/pkgconf" > "$PREFIX/pkg-config"
    chmod +x "$PREFIX/pkg-config"
  fi
  ldconfig -p 2>/dev/null | grep -q 'libudev.so.1' || echo "warning: no libudev.so.1 here (libhwloc needs it)"
  note "${#debs[@]} packages"
}

step_configure() {
  local pkg_config nvcc py_args=() pyexe pybind
  pkg_config=$(command -v pkg-config || echo "$PREFIX/pkg-config")
  nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  pyexe=$(command -v "$PY" || true)
  pybind=$([ -n "$pyexe" ] && "$pyexe" -m pybind11 --cmakedir 2>/dev/null || true)
  if [ -n "$pybind" ]; then
    py_args=(-DUMLOAD_BUILD_PYTHON=ON -DPython3_EXECUTABLE="$pyexe" -Dpybind11_DIR="$pybind")
  else
    py_args=(-DUMLOAD_BUILD_PYTHON=OFF)
    echo "no pybind11 for $PY: the Python module is not configured"
  fi
  rm -rf "$BUILD"
  # shellcheck disable=SC2086
  cmake -S "$ROOT" -B "$BUILD" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release -DUMLOAD_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -DCMAKE_PREFIX_PATH="$PREFIX/usr" -DPKG_CONFIG_EXECUTABLE="$pkg_config" "${py_args[@]}" \
    ${UMLOAD_GPU_CHECK_CMAKE_ARGS:-} || return 1
  [ -n "$pybind" ] && note "sm_$ARCH, Python module for $pyexe" || note "sm_$ARCH, no Python module (no pybind11)"
}

# The targets the run builds: every one this configure has.
WANTED_TARGETS=(umload umload_cuda_test umload_cuda_convert_test test_platform_live_gpu
  umload_cuda_tile_test umload_gpu_bench umload_python)
step_build() {
  need "$BUILD/CMakeCache.txt" || return 3
  local have targets=() t keep=(-k 0)
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
  note "${#targets[@]} targets: ${targets[*]}"
  return $rc
}

# gtest BINARY [ARGS...]: one process, results to $OUT_DIR/NAME.json; the note counts skips.
gtest() {
  local b
  b=$(bin_of "$1")
  [ -n "$b" ] || { note "not built: $1"; return 3; }
  shift
  "$b" --gtest_brief=1 --gtest_output="json:$OUT_DIR/$STEP_NAME.json" "$@"
  local rc=$? summary src
  # Exit 5 when every case skipped: on the GPU run that means no usable device, not a pass.
  summary=$("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
cases = [c for s in r.get("testsuites", []) for c in s.get("testsuite", [])]
skipped = sum(1 for c in cases if c.get("result") == "SKIPPED")
failed = r.get("failures", 0)
print(f"{len(cases)} cases, {failed} failed, {skipped} skipped")
sys.exit(5 if cases and skipped == len(cases) else 0)
' "$OUT_DIR/$STEP_NAME.json" 2> /dev/null)
  src=$?
  note "${summary:-no gtest report}"
  [ "$rc" = 0 ] || return "$rc"
  if [ "$src" = 5 ] && [ "$MODE" = run ]; then return 5; fi
  return 0
}
step_tile_test() { gtest umload_cuda_tile_test; }
step_gpu_test_cuda() { gtest umload_cuda_test; }
step_gpu_test_convert() { gtest umload_cuda_convert_test; }
step_gpu_test_platform() { gtest test_platform_live_gpu; }

step_memcheck() {
  local b sanitizer
  b=$(bin_of umload_cuda_test)
  [ -n "$b" ] || { note "not built: umload_cuda_test"; return 3; }
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  [ -x "$sanitizer" ] || { note "no compute-sanitizer"; return 3; }
  "$sanitizer" --tool memcheck --error-exitcode 99 --print-limit 20 "$b" --gtest_brief=1
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
  local u=$BUILD/umload d=$WORK/digest-ckpt r=$WORK/digest-runs failed=0 layout dtype platform
  need "$u" || return 3
  rm -rf "$d" "$r" && mkdir -p "$r"
  "$u" synth --preset tiny --layers 3 --experts 8 --edge-scales --out "$d" > /dev/null || return 1
  for layout in hf native; do
    for dtype in bf16 f32 keep; do
      "$u" load "$d" --device cpu --layout $layout --dtype $dtype --digest --check --json \
        > "$r/cpu-$layout-$dtype.json" || return 1
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
        fi
      done
    done
  done
  # convert: the same files byte for byte from the GPU as from the CPU.
  for layout in hf native; do
    "$u" convert "$d" --out "$r/conv-cpu-$layout" --device cpu --layout $layout --json > /dev/null || return 1
    if "$u" convert "$d" --out "$r/conv-gpu-$layout" --device cuda --layout $layout --json > /dev/null &&
      [ "$(cd "$r/conv-cpu-$layout" && sha256sum -- * | sort)" = "$(cd "$r/conv-gpu-$layout" && sha256sum -- * | sort)" ]; then
      echo "same converted files: $layout"
    else
      echo "DIFFERENT or failed convert: $layout"
      failed=$((failed + 1))
    fi
  done
  rm -rf "$d" "$r"
  note "$((18 + 2 - failed)) of 20 equal"
  [ "$failed" = 0 ]
}

# The module: build/python/umload*.so, or a package build/python/umload/ with it inside.
module_built() { compgen -G "$BUILD/python/umload*.so" > /dev/null || compgen -G "$BUILD/python/umload/*.so" > /dev/null; }
step_python() {
  local pkg=$BUILD/python
  if ! module_built; then
    note "not built: the Python module (no pybind11 or Python headers for $PY)"
    return 3
  fi
  PYTHONPATH=$pkg${PYTHONPATH:+:$PYTHONPATH} "$PY" "$ROOT/bench/gpu/python_check.py" \
    --umload "$BUILD/umload" --work "$WORK/python" --json "$OUT_DIR/python.json"
}

step_gpu_bench() {
  need "$BUILD/umload_gpu_bench" || return 3
  "$BUILD/umload_gpu_bench" | tee "$OUT_DIR/bench.txt"
}

# The checkpoint goes to /dev/shm when it has room: tmpfs pages are page cache that the disk never
# has to absorb (a writer's fdatasync on a slow VM disk could take minutes for 13.8 GB).
ckpt_dir() {
  local free
  free=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
  if [ "${free:-0}" -gt 20000000000 ] 2>/dev/null; then echo /dev/shm/umload-ckpt-20b; else echo "$WORK/ckpt-20b"; fi
}
step_synth() {
  need "$BUILD/umload" || return 3
  local c
  c=$(ckpt_dir)
  rm -rf "$c"
  "$BUILD/umload" synth --preset gpt-oss-20b --out "$c" || return 1
  cat "$c"/*.safetensors > /dev/null
  local bytes
  bytes=$(cat "$c"/*.safetensors | wc -c)
  echo "{\"bytes\": $bytes}" > "$OUT_DIR/ckpt.json"
  note "$((bytes / 1000000)) MB in $c"
}

step_load() {
  local c i
  c=$(ckpt_dir)
  need "$BUILD/umload" "$c/config.json" || return 3
  # Buffered reads that keep the cache, so both runs read from memory; the faster one counts.
  for i in 1 2; do
    "$BUILD/umload" load "$c" --device cuda --io buffered --keep-cache --json > "$WORK/load-$i.json" || return 1
  done
  "$PY" -c '
import json, shutil, sys
runs = [json.load(open(p)) for p in sys.argv[1:3]]
best = min(range(2), key=lambda i: runs[i]["seconds"])
print("load runs:", [r["seconds"] for r in runs], "s")
shutil.copy(sys.argv[1 + best], sys.argv[3])' "$WORK/load-1.json" "$WORK/load-2.json" "$OUT_DIR/load.json" || return 1
  head -40 "$OUT_DIR/load.json"
}

step_reference() {
  local c
  c=$(ckpt_dir)
  need "$c/config.json" || return 3
  PYTHONUNBUFFERED=1 "$PY" "$ROOT/bench/gpu/reference_gpu.py" "$c" --json "$OUT_DIR/reference.json"
}

# ---------------------------------------------------------------------------------------------
step_field() { local s=$1 i=$2; read -ra f <<< "$s"; echo "${f[$i]}"; }
step_what() { local s=$1; read -ra f <<< "$s"; echo "${f[*]:3}"; }

if [ "$MODE" = list ]; then
  for s in "${STEPS[@]}"; do
    printf '%-18s %4ss  %-5s  %s\n' "$(step_field "$s" 0)" "$(step_field "$s" 1)" "$(step_field "$s" 2)" "$(step_what "$s")"
  done
  exit 0
fi

if [ "$MODE" = step ]; then
  STEP_NAME=${2:?}
  declare -F "step_$STEP_NAME" > /dev/null || { echo "no step $STEP_NAME in $SELF" >&2; exit 2; }
  [ "${3:-}" = --defined ] && exit 0
  "step_$STEP_NAME"
  exit $?
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
  DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-560}))
fi
TABLE_RESERVE=15
mkdir -p "$OUT_DIR"
rm -rf "$OUT_DIR/notes" "$OUT_DIR/steps.tsv" "$OUT_DIR"/*.json "$OUT_DIR/bench.txt" "$OUT_DIR/gpu_table.txt"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
TEE_PID=$!
for s in "${STEPS[@]}"; do step_field "$s" 0; done > "$OUT_DIR/plan.txt"

ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=${ARCH:-90}
CARD=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
CARD=${CARD:-no GPU seen}
GENERATOR="Unix Makefiles"
command -v ninja > /dev/null && GENERATOR=Ninja
JOBS=$(nproc)
export ROOT OUT_DIR PREFIX BUILD WORK PY LIBDIR ARCH CARD GENERATOR JOBS MODE
mkdir -p "$WORK"
echo "umload GPU check ($MODE) of $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'): $CARD, sm_$ARCH, $GENERATOR, $JOBS jobs, $PY"

FAILED=0
# run_step NAME LIMIT: one row in $OUT_DIR/steps.tsv (name, status, seconds, note).
run_step() {
  local name=$1 limit=$2 t0 rc status left
  left=$((DEADLINE - $(date +%s) - TABLE_RESERVE))
  if [ "$left" -lt 5 ]; then
    status="skipped: out of time"
    rc=124
    t0=$(date +%s)
  else
    [ "$limit" -gt "$left" ] && limit=$left
    echo
    echo "=== $name (limit ${limit}s, at $(($(date +%s) - START))s)"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" bash "$SELF" --step "$name"
    rc=$?
    case $rc in
      0) status=ok ;;
      3) status="not built" ;;
      5) status="FAILED: every case skipped" ;;
      124 | 137) status="timed out after ${limit}s" ;;
      *) status="FAILED rc=$rc" ;;
    esac
  fi
  [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
  local n=""
  [ -f "$OUT_DIR/notes/$name" ] && n=$(head -1 "$OUT_DIR/notes/$name")
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - t0))" "$n" >> "$OUT_DIR/steps.tsv"
  echo "=== $name: $status in $(($(date +%s) - t0))s${n:+ ($n)}"
  table > /dev/null
  return "$rc"
}
table() { CARD=$CARD MODE=$MODE "$PY" "$ROOT/bench/gpu/table.py" "$OUT_DIR" | tee "$OUT_DIR/gpu_table.txt"; }

# A dry run's own checks: the script parses, every step is defined by this file (the step's own
# process finds its function), the Python the run uses compiles.
check_steps() {
  local s name bad=0
  bash -n "$SELF" || bad=1
  for s in "${STEPS[@]}"; do
    name=$(step_field "$s" 0)
    bash "$SELF" --step "$name" --defined || bad=1
  done
  "$PY" -m py_compile "$ROOT"/bench/gpu/*.py || bad=1
  [ "$bad" = 0 ] && note "${#STEPS[@]} steps defined; bench/gpu/*.py compile"
  return $bad
}
# What a GPU step runs, for the dry run's list.
declare -A NEEDS=([gpu_test_cuda]=umload_cuda_test [gpu_test_convert]=umload_cuda_convert_test
  [gpu_test_platform]=test_platform_live_gpu [memcheck]=umload_cuda_test [gpu_bench]=umload_gpu_bench
  [digests]=umload [synth]=umload [load]=umload [reference]=umload)

for s in "${STEPS[@]}"; do
  name=$(step_field "$s" 0)
  phase=$(step_field "$s" 2)
  if [ "$MODE" = dry-run ] && [ "$phase" = gpu ]; then continue; fi
  run_step "$name" "$(($(step_field "$s" 1) * SCALE))"
done

if [ "$MODE" = dry-run ]; then
  STEP_NAME=checks
  t0=$(date +%s)
  if check_steps; then status=ok; else status="FAILED"; FAILED=$((FAILED + 1)); fi
  printf '%s\t%s\t%s\t%s\n' checks "$status" "$(($(date +%s) - t0))" "$(cat "$OUT_DIR/notes/checks" 2>/dev/null)" >> "$OUT_DIR/steps.tsv"
  echo
  echo "would run on the GPU:"
  for s in "${STEPS[@]}"; do
    [ "$(step_field "$s" 2)" = gpu ] || continue
    name=$(step_field "$s" 0)
    if [ "$name" = python ]; then
      if module_built; then w=built
      else w="would build where $PY has pybind11 and Python headers"; fi
    elif [ -n "$(bin_of "${NEEDS[$name]}")" ]; then w="${NEEDS[$name]} built"
    else w="${NEEDS[$name]} NOT BUILT"; fi
    printf '  %-18s %4ss  %s  [%s]\n' "$name" "$(step_field "$s" 1)" "$(step_what "$s")" "$w"
    case $w in *NOT\ BUILT) FAILED=$((FAILED + 1)) ;; esac
  done
fi

rm -rf "$WORK" /dev/shm/umload-ckpt-20b
echo
echo "total $(($(date +%s) - START)) s; log and table in $OUT_DIR"
table
# Let tee write the last lines before the script ends.
exec 1>&- 2>&-
wait "$TEE_PID" 2> /dev/null
[ "$FAILED" = 0 ]
