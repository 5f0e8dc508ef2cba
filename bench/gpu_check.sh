#!/usr/bin/env bash
# The GPU check: one run on a machine with an NVIDIA GPU (CUDA 13, CMake, ninja, PyTorch; none of
# our Debian packages; no network), in about 8 minutes on an H100 including the build.
#
#   bash bench/fetch_debs.sh                 # once, on a machine with network: fills .debs/
#   bash bench/gpu_check.sh                  # on the GPU machine, from the repository root
#   (device tool: run(command="bash bench/gpu_check.sh", carry=[".debs"], timeout_s=600))
#
# Steps: unpack .debs/ into a prefix, configure for this GPU's architecture only, build the needed
# targets, run the `gpu` tests, the GPU benchmark (device copy and pinned H2D limits, decode kernel
# bandwidth), synthesize a 24-layer gpt-oss-20b-shaped checkpoint, load it from the page cache with
# `umload load --device cuda`, run the PyTorch reference of HF's algorithm on the same GPU over the
# same checkpoint, and print a table of measured values against the targets last. Every step runs
# under a time limit; a failed step is reported in the table and the rest still run. The log and
# the table also go to $OUT when it is set (the device tool brings that folder back).
#
# Environment: GPU_CHECK_DRY_RUN=1 stops after the configure (to test the unpack and the configure
# on a machine without a GPU); UMLOAD_GPU_CHECK_CMAKE_ARGS adds configure arguments.
# Nothing here asks for managed memory: every allocation on the GPU is a plain cudaMalloc.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
OUT_DIR=${OUT:-/tmp/umload-gpu-check}
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1

PREFIX=${UMLOAD_DEPS_PREFIX:-/tmp/umload-deps}
BUILD=${UMLOAD_GPU_BUILD:-/tmp/umload-build-gpu}
# The checkpoint goes to /dev/shm when it has room: tmpfs pages are page cache that the disk never
# has to absorb (a writer's fdatasync on a slow VM disk could take minutes for 13.8 GB).
SHM_FREE=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
if [ -z "${UMLOAD_GPU_CKPT:-}" ] && [ "${SHM_FREE:-0}" -gt 20000000000 ] 2>/dev/null; then
  CKPT=/dev/shm/umload-ckpt-20b
else
  CKPT=${UMLOAD_GPU_CKPT:-/tmp/umload-ckpt-20b}
fi
export ROOT PREFIX BUILD CKPT OUT_DIR
declare -A STATUS

# The whole run must end, table printed, inside the device tool's 600 s command limit.
DEADLINE=$(( START + ${GPU_CHECK_BUDGET_S:-560} ))

# step NAME SECONDS COMMAND...: runs under a time limit (cut to what is left before the deadline,
# keeping 20 s for the table), logs the outcome, never stops the script.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$(( DEADLINE - $(date +%s) - 20 ))
  if [ "$left" -lt 5 ]; then
    STATUS[$name]="skipped: out of time"
    echo "=== $name: skipped, out of time"
    return 124
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo
  echo "=== $name (limit ${limit}s, at $(( $(date +%s) - START ))s)"
  local t0 rc
  t0=$(date +%s)
  if declare -F "$1" >/dev/null; then
    # A shell function: run it in a child bash so that `timeout` can stop it.
    timeout --kill-after=10 "$limit" bash -c "set -o pipefail; $(declare -f "$1"); $1"
  else
    timeout --kill-after=10 "$limit" "$@"
  fi
  rc=$?
  STATUS[$name]="rc=$rc in $(( $(date +%s) - t0 ))s"
  echo "=== $name: ${STATUS[$name]}"
  return $rc
}

# ---------------------------------------------------------------------------------------------
# Dependencies from the carried .debs.
unpack_debs() {
  shopt -s nullglob
  local debs=("$ROOT"/.debs/*.deb)
  if [ ${#debs[@]} -eq 0 ]; then
    echo "no .debs/ here: run bench/fetch_debs.sh on a machine with network, and carry .debs"
    return 1
  fi
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  for f in "${debs[@]}"; do dpkg -x "$f" "$PREFIX" || return 1; done
  # The .pc files name /usr; point them at the prefix (CMake package files are relocatable).
  find "$PREFIX/usr" -name '*.pc' -exec sed -i "s#/usr#$PREFIX/usr#g" {} +
  echo "unpacked ${#debs[@]} packages into $PREFIX"
  ldconfig -p 2>/dev/null | grep 'libudev.so.1' >/dev/null || echo "warning: no libudev.so.1 on this machine (libhwloc needs it)"
}
step deps 60 unpack_debs

# Our binaries find the prefix's shared libraries through the build tree's RPATH; nothing else
# (python3, PyTorch) should see the prefix's libraries, so LD_LIBRARY_PATH is left alone.
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig:$PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
PKG_CONFIG_BIN=$(command -v pkg-config || true)
if [ -z "$PKG_CONFIG_BIN" ] && [ -x "$PREFIX/usr/bin/pkgconf" ]; then
  # The carried pkgconf needs the carried libpkgconf3.
  PKG_CONFIG_BIN=$PREFIX/pkg-config
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$LIBDIR" "$PREFIX/usr/bin/pkgconf" > "$PKG_CONFIG_BIN"
  chmod +x "$PKG_CONFIG_BIN"
fi
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=${ARCH:-90}
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
CARD=${CARD:-unknown}
GENERATOR="Unix Makefiles"
command -v ninja >/dev/null && GENERATOR=Ninja
export NVCC ARCH GENERATOR PKG_CONFIG_BIN
echo "card: $CARD, sm_$ARCH; nvcc: $NVCC; pkg-config: $PKG_CONFIG_BIN; generator: $GENERATOR"

configure() {
  rm -rf "$BUILD"
  # shellcheck disable=SC2086
  cmake -S "$ROOT" -B "$BUILD" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release \
    -DUMLOAD_BUILD_PYTHON=OFF -DUMLOAD_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -DCMAKE_PREFIX_PATH="$PREFIX/usr" -DPKG_CONFIG_EXECUTABLE="$PKG_CONFIG_BIN" \
    ${UMLOAD_GPU_CHECK_CMAKE_ARGS:-}
}
step configure 120 configure
if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
  echo "dry run: stopping after the configure"
  for k in "${!STATUS[@]}"; do echo "  $k: ${STATUS[$k]}"; done
  exit 0
fi

JOBS=$(nproc)
# Only what this check runs; other areas' executables with `gpu` tests join when they exist.
TARGETS=(umload umload_cuda_test umload_cuda_tile_test umload_gpu_bench)
for extra in test_platform_live_gpu umload_cuda_convert_test; do
  cmake --build "$BUILD" --target help 2>/dev/null | grep -w "^$extra:" >/dev/null && TARGETS+=("$extra")
done
step build 300 cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"

# ---------------------------------------------------------------------------------------------
step gpu_tests 150 ctest --test-dir "$BUILD" -L gpu --output-on-failure
step tile_math_test 60 "$BUILD/tests/cuda/umload_cuda_tile_test" --gtest_brief=1
step gpu_bench 120 bash -c "'$BUILD/umload_gpu_bench' | tee '$OUT_DIR/bench.txt'"

# ---------------------------------------------------------------------------------------------
# Same digest and same checks on the GPU as on the CPU: a checkpoint with every scale byte, both
# layouts and dtypes, both GPU strategies (discrete copy; zero-copy as integrated and coherent).
digests() {
  local d=/tmp/umload-digest-ckpt
  rm -rf "$d"
  "$BUILD/umload" synth --preset tiny --layers 3 --experts 8 --edge-scales --out "$d" >/dev/null || return 1
  local failed=0
  for layout in hf native; do
    for dtype in bf16 f32 keep; do
      local cpu gpu
      cpu=$("$BUILD/umload" load "$d" --device cpu --layout $layout --dtype $dtype --digest --check --json) || return 1
      for platform in discrete integrated coherent; do
        gpu=$("$BUILD/umload" load "$d" --device cuda --platform $platform --layout $layout --dtype $dtype \
              --digest --check --json) || { echo "load failed: $layout $dtype $platform"; failed=1; continue; }
        if python3 - "$cpu" "$gpu" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.exit(0 if a["digest"] == b["digest"] and a.get("checks") == b.get("checks") else 1)
PY
        then echo "same digest and checks: $layout $dtype $platform"
        else echo "DIFFERENT: $layout $dtype $platform"; failed=1; fi
      done
    done
  done
  # convert: the same files byte for byte from the GPU as from the CPU.
  for layout in hf native; do
    rm -rf "$d.cpu" "$d.gpu"
    "$BUILD/umload" convert "$d" --out "$d.cpu" --device cpu --layout $layout --json > /dev/null || return 1
    if ! "$BUILD/umload" convert "$d" --out "$d.gpu" --device cuda --layout $layout --json > /dev/null; then
      echo "convert failed on the GPU: $layout"; failed=1; continue
    fi
    if [ "$(cd "$d.cpu" && sha256sum * | sort)" = "$(cd "$d.gpu" && sha256sum * | sort)" ]; then
      echo "same converted files: $layout"
    else echo "DIFFERENT converted files: $layout"; failed=1; fi
  done
  rm -rf "$d" "$d.cpu" "$d.gpu"
  echo "$failed" > "$OUT_DIR/digests.txt"
  return $failed
}
step digests 120 digests

# ---------------------------------------------------------------------------------------------
# The 20b-shaped checkpoint, loaded from the page cache.
rm -rf "$CKPT"
step synth 240 "$BUILD/umload" synth --preset gpt-oss-20b --out "$CKPT"
warm() { cat "$CKPT"/*.safetensors > /dev/null; }
step warm_cache 120 warm
free -g | head -2

load_twice() {
  # Buffered reads that keep the cache, so both runs read from memory; the faster one counts.
  local best=""
  for i in 1 2; do
    "$BUILD/umload" load "$CKPT" --device cuda --io buffered --keep-cache --json > "/tmp/umload-load-$i.json" || return 1
    python3 -c "import json,sys; print('load run $i:', json.load(open('/tmp/umload-load-$i.json'))['seconds'], 's')"
  done
  python3 - <<'PY'
import json, shutil
runs = [json.load(open(f"/tmp/umload-load-{i}.json")) for i in (1, 2)]
best = min((1, 2), key=lambda i: runs[i - 1]["seconds"])
shutil.copy(f"/tmp/umload-load-{best}.json", "/tmp/umload-load.json")
PY
  cp /tmp/umload-load.json "$OUT_DIR/load.json"
  cat "$OUT_DIR/load.json" | head -40
}
step load 180 load_twice

step reference 300 env PYTHONUNBUFFERED=1 python3 "$ROOT/bench/gpu/reference_gpu.py" "$CKPT" \
  --json "$OUT_DIR/reference.json"

# ---------------------------------------------------------------------------------------------
# The table.
STATUS_TEXT=$(for k in "${!STATUS[@]}"; do echo "$k: ${STATUS[$k]}"; done | sort)
export CARD OUT_DIR CKPT STATUS_TEXT
python3 - <<'PY' | tee "$OUT_DIR/gpu_table.txt"
import glob, json, os, re

out = os.environ["OUT_DIR"]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception:
        return None

bench = {}
try:
    for line in open(os.path.join(out, "bench.txt")):
        m = re.match(r"result name=(\S+) bytes=(\S+) ms=(\S+) gbps=(\S+)", line)
        if m:
            bench[m.group(1)] = float(m.group(4))
except OSError:
    pass
run = load("load.json")
ref = load("reference.json")
ckpt_bytes = sum(os.path.getsize(p) for p in glob.glob(os.path.join(os.environ["CKPT"], "*.safetensors")))

rows = []
def add(what, value, target, ok):
    rows.append((what, value, target, "ok" if ok is True else "MISS" if ok is False else "" if not target else "n/a"))

try:
    same = open(os.path.join(out, "digests.txt")).read().strip() == "0"
    add("GPU digest/checks = CPU", "equal (3 strategies x 2 layouts x 3 dtypes; convert files)" if same else "DIFFERENT", "equal", same)
except OSError:
    add("GPU digest/checks = CPU", "not measured", "equal", None)

copy = bench.get("device_copy")
h2d = bench.get("pinned_h2d")
for name in ("decode_hf_bf16_gate_up", "decode_hf_bf16_down", "decode_native_bf16_gate_up",
             "decode_native_bf16_down", "decode_hf_f32_down", "decode_native_f32_down"):
    k = bench.get(name)
    if k and copy:
        add(f"{name} GB/s", f"{k:.0f} = {100 * k / copy:.0f}% of copy {copy:.0f}", ">= 80%", k >= 0.8 * copy)
    else:
        add(f"{name} GB/s", "not measured", ">= 80% of copy", None)
add("pinned H2D GB/s", f"{h2d:.1f}" if h2d else "not measured", "(limit)", None)
if run and h2d:
    bound = ckpt_bytes / (h2d * 1e9)
    add("load seconds (page cache)", f"{run['seconds']:.2f} vs {ckpt_bytes / 1e9:.1f} GB / H2D = {bound:.2f}",
        "<= 1.5x bound", run["seconds"] <= 1.5 * bound)
    add("  read / copy / decode s", f"{run.get('read_seconds', 0):.2f} / {run.get('copy_seconds', 0):.2f} / {run.get('decode_seconds', 0):.2f}", "", None)
else:
    add("load seconds (page cache)", "not measured", "<= 1.5x ckpt/H2D", None)
if run:
    limit = run.get("bytes_produced", 0) + 2 * run.get("slot_bytes", 0)
    peak = run.get("peak_device_bytes", 0)
    add("peak device GB", f"{peak / 1e9:.2f} vs outputs {run.get('bytes_produced', 0) / 1e9:.2f} + 2 slots",
        "<= outputs + 2 slots", peak <= limit)
else:
    add("peak device GB", "not measured", "<= outputs + 2 slots", None)
if run and ref and ref.get("seconds"):
    add("speedup vs PyTorch (load)", f"{ref['seconds'] / run['seconds']:.1f}x ({ref['seconds']:.2f} s vs {run['seconds']:.2f} s)",
        ">= 5x", ref["seconds"] >= 5 * run["seconds"])
else:
    add("speedup vs PyTorch (load)", "not measured", ">= 5x", None)
if ref and ref.get("kernel_gbps") and bench.get("decode_hf_bf16_gate_up"):
    add("speedup vs PyTorch (kernel)", f"{bench['decode_hf_bf16_gate_up'] / ref['kernel_gbps']:.1f}x ({ref['kernel_gbps']:.0f} GB/s)", "", None)
if ref and ref.get("reader"):
    add("PyTorch reference reads with", ref["reader"], "", None)
if ref and ref.get("peak_device_bytes"):
    add("PyTorch peak device GB", f"{ref['peak_device_bytes'] / 1e9:.2f}", "", None)

print()
print(f"umload GPU check on {os.environ['CARD']}")
w = max(len(r[0]) for r in rows)
for what, value, target, verdict in rows:
    print(f"{what:<{w}}  {value:<52}  {target:<22}  {verdict}")
print()
print("steps:")
print(os.environ["STATUS_TEXT"])
PY
rm -rf "$CKPT"
echo "total $(( $(date +%s) - START )) s; log and table in $OUT_DIR"
