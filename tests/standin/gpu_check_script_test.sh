#!/usr/bin/env bash
# bench/gpu_check.sh without a GPU: it parses, every listed step is a function of its own file
# that its own process finds, correctness steps come before the timings, a step whose binary is
# not built says so (exit 3, "not built") instead of passing, and the table gives every step a
# row. Usage: gpu_check_script_test.sh REPO_ROOT [BUILD_DIR]
set -uo pipefail
repo=${1:?repository root}
build=${2:-}
script=$repo/bench/gpu_check.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0
expect() {  # expect WHAT COMMAND...: the command succeeds
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; passes=$((passes + 1)); else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

expect "the script parses" bash -n "$script"
mapfile -t steps < <(bash "$script" --list | awk '{print $1}')
expect "--list names the steps" test "${#steps[@]}" -ge 12
for s in "${steps[@]}"; do
  expect "step $s is defined" bash "$script" --step "$s" --defined
done
expect "an unknown step is refused" bash -c '! bash "$1" --step no_such_step --defined 2> /dev/null' _ "$script"
expect "an unknown option is refused" bash -c '! bash "$1" --bogus 2> /dev/null' _ "$script"

index() { local i; for i in "${!steps[@]}"; do [ "${steps[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo 999; }
for correct in gpu_test_cuda gpu_test_convert gpu_test_platform digests python memcheck; do
  for timing in gpu_bench synth load reference; do
    expect "$correct runs before $timing" test "$(index "$correct")" -lt "$(index "$timing")"
  done
done
expect "the build comes before every GPU step" test "$(index build)" -lt "$(index gpu_test_cuda)"

# With nothing built, each step that needs a binary exits 3 and leaves a "not built" note.
export OUT_DIR=$tmp/out UMLOAD_GPU_BUILD=$tmp/build UMLOAD_GPU_WORK=$tmp/work
mkdir -p "$OUT_DIR" "$UMLOAD_GPU_BUILD"
for s in build gpu_test_cuda gpu_test_convert gpu_test_platform digests python memcheck gpu_bench synth; do
  bash "$script" --step "$s" > "$tmp/$s.log" 2>&1
  rc=$?
  expect "$s without a build exits 3 (got $rc)" test "$rc" = 3
  expect "$s without a build notes it" grep -q "^not built" "$OUT_DIR/notes/$s"
done

# A gtest step over a real binary: one process, its cases counted from gtest's JSON report.
if [ -n "$build" ] && [ -x "$build/tests/cuda/umload_cuda_tile_test" ]; then
  OUT_DIR=$tmp/real UMLOAD_GPU_BUILD=$build MODE=run PY=python3 bash "$script" --step tile_test > "$tmp/tile.log" 2>&1
  expect "the tile test step passes over the built binary" test $? = 0
  expect "its row counts the cases" grep -qE "^[1-9][0-9]* cases, 0 failed, 0 skipped$" "$tmp/real/notes/tile_test"
fi

# The table: a row per planned step, the ones never run as such, values not measured.
printf '%s\n' "${steps[@]}" > "$OUT_DIR/plan.txt"
printf 'deps\tok\t1\t21 packages\nbuild\tnot built\t0\tnot built: CMakeCache.txt\n' > "$OUT_DIR/steps.tsv"
MODE=run CARD=none python3 "$repo/bench/gpu/table.py" "$OUT_DIR" > "$tmp/table.txt"
expect "the table prints" test -s "$tmp/table.txt"
for s in "${steps[@]}"; do
  expect "the table has a row for $s" grep -qE "^  $s " "$tmp/table.txt"
done
expect "an unbuilt step reads as not built" grep -qE "^  build +not built" "$tmp/table.txt"
expect "a step never reached reads so" grep -qE "^  reference +not reached" "$tmp/table.txt"
expect "no digest result reads as not run, not as a pass" grep -qE "^GPU digest/checks = CPU +not run" "$tmp/table.txt"
expect "the Python used compiles" python3 -m py_compile "$repo"/bench/gpu/*.py

echo "$passes checks passed, $failures failed"
[ "$failures" = 0 ]
