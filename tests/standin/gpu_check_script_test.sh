#!/usr/bin/env bash
# bench/gpu_check.sh without a GPU: it parses, every listed step is a function of its own file
# that its own process finds, correctness steps come before the timings, the limits fit the
# budget, --only / --from select what a rerun repeats, a step whose binary is not built says so
# (exit 3, "not run") instead of passing, memcheck's sanitizer is called with API errors off and
# memory errors fatal, $OUT ends with the four files (and a step that writes more fails), a build
# of the same tree is reused, every step runs offline, and the table gives every step a row.
# Fake binaries (shell scripts in a fake build folder) stand in for the GPU ones.
# Usage: gpu_check_script_test.sh REPO_ROOT [BUILD_DIR]
set -uo pipefail
repo=${1:?repository root}
build=${2:-}
script=$repo/bench/gpu_check.sh
# shellcheck source=tests/standin/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
same() { [ "$1" = "$2" ] || { echo "  got:      $(echo "$1" | tr '\n' ' ')"; echo "  expected: $(echo "$2" | tr '\n' ' ')"; return 1; }; }
# Every call below keeps to $tmp.
export UMLOAD_DEPS_PREFIX=$tmp/prefix UMLOAD_GPU_DEBS=$tmp/no-debs
unset OUT

expect "the script parses" bash -n "$script"
mapfile -t steps < <(bash "$script" --list | grep -v '^budget:' | awk '{print $1}')
expect "--list names the steps" test "${#steps[@]}" -ge 15
for s in "${steps[@]}"; do
  expect "step $s is defined" bash "$script" --step "$s" --defined
done
expect "an unknown step is refused" bash -c '! bash "$1" --step no_such_step --defined 2> /dev/null' _ "$script"
expect "an unknown option is refused" bash -c '! bash "$1" --bogus 2> /dev/null' _ "$script"

# The limits: each step shows one; the correctness steps' limits and a cold build fit the budget.
expect "--list shows a limit for every step" bash -c '! bash "$1" --list | grep -v "^budget:" | grep -vqE "^[a-z_0-9]+ +[0-9]+s "' _ "$script"
budget=$(bash "$script" --list | sed -n 's/^budget: .* = \([0-9]*\) s of \([0-9]*\) s.*/\1 \2/p')
expect "--list sums the correctness limits and the cold build ($budget)" test -n "$budget"
read -r planned of <<< "${budget:-999 0}"
expect "they fit the run's budget ($planned of $of s, at most 560)" test "$planned" -le "$of" -a "$of" -le 560
limit() { bash "$script" --list | awk -v n="$1" '$1 == n {print $2 + 0}'; }
estimate=$(sed -n 's/^COLD_BUILD_ESTIMATE_S=//p' "$script")
expect "the build's limit covers the cold build estimate" test "$(limit build)" -ge "${estimate:-99999}"

index() { local i; for i in "${!steps[@]}"; do [ "${steps[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo 999; }
for correct in gpu_test_cuda gpu_test_convert gpu_test_platform digests python memcheck; do
  for timing in gpu_bench synth load reference peers; do
    expect "$correct runs before $timing" test "$(index "$correct")" -lt "$(index "$timing")"
  done
done
expect "the build comes before every GPU step" test "$(index build)" -lt "$(index gpu_test_cuda)"
expect "peers comes after reference" test "$(index reference)" -lt "$(index peers)"
expect "every timing step is of class timing, the rest not" bash -c '
  bash "$1" --list | grep -v "^budget:" | awk "{print \$1, \$3}" | while read -r n c; do
    case $n in gpu_bench|synth|load|reference|peers) [ "$c" = timing ] || exit 1 ;; *) [ "$c" != timing ] || exit 1 ;; esac
  done' _ "$script"

# Step selection: --only in the steps' order, --from to the end, mistakes refused.
expect "--only picks those steps, in the run's order" same "$(bash "$script" --only peers,memcheck --plan)" "$(printf 'memcheck\npeers')"
expect "--only=A works too" same "$(bash "$script" --only=python --plan)" "python"
expect "--from runs that step and every later one" same "$(bash "$script" --from load --plan)" "$(printf 'load\nreference\npeers')"
expect "no option runs every step" same "$(bash "$script" --plan)" "$(printf '%s\n' "${steps[@]}")"
expect "a dry run's plan says which steps need the GPU" same "$(bash "$script" --dry-run --only tile_test,memcheck,python --plan)" \
  "$(printf 'tile_test\npython (its non-GPU half)\nmemcheck (not in a dry run: needs the GPU)')"
expect "--only with an unknown step is refused" bash -c '! bash "$1" --only memcheck,nope --plan 2> /dev/null' _ "$script"
expect "--from with an unknown step is refused" bash -c '! bash "$1" --from nope --plan 2> /dev/null' _ "$script"
expect "--only and --from together are refused" bash -c '! bash "$1" --only memcheck --from load --plan 2> /dev/null' _ "$script"
expect "--only without a value is refused" bash -c '! bash "$1" --only 2> /dev/null' _ "$script"

# With nothing built, each step that needs a binary exits 3 and leaves a "not built" note.
export UMLOAD_GPU_BUILD=$tmp/build UMLOAD_GPU_WORK=$tmp/work
res=$tmp/work/results
mkdir -p "$UMLOAD_GPU_BUILD"
for s in build gpu_test_cuda gpu_test_convert gpu_test_platform digests python gpu_bench synth; do
  bash "$script" --step "$s" > "$tmp/$s.log" 2>&1
  rc=$?
  expect "$s without a build exits 3 (got $rc)" test "$rc" = 3
  expect "$s without a build notes it" grep -q "^not built" "$res/notes/$s"
done
for s in load reference; do
  mkdir -p "$tmp/empty-shm"
  bash "$script" --step "$s" > "$tmp/$s.log" 2>&1
  rc=$?
  expect "$s without a checkpoint or build exits 3 (got $rc)" test "$rc" = 3
done
bash "$script" --step deps > "$tmp/deps.log" 2>&1
expect "deps without .debs fails" test $? = 1
expect "deps without .debs says to fetch them" grep -q "fetch_debs.sh" "$res/notes/deps"
mkdir -p "$tmp/some-debs"
while read -r p; do [ "$p" = libcli11-dev ] || : > "$tmp/some-debs/${p}_1_amd64.deb"; done < <(bash "$repo/bench/fetch_debs.sh" --list)
UMLOAD_GPU_DEBS=$tmp/some-debs bash "$script" --step deps > "$tmp/deps.log" 2>&1
expect "deps with a package missing from .debs fails" test $? = 1
expect "and names the package" grep -q "missing from .debs/: libcli11-dev" "$res/notes/deps"

# A build without the module: the python step says why, in the configure's words.
mkdir -p "$tmp/nomodule"
touch "$tmp/nomodule/umload" "$tmp/nomodule/CMakeCache.txt"
echo "no Python module: no Python.h for Python 3.12" > "$tmp/nomodule/.umload-gpu-check-python"
UMLOAD_GPU_BUILD=$tmp/nomodule bash "$script" --step python > "$tmp/python.log" 2>&1
expect "python without the module exits 3" test $? = 3
expect "and its row gives the configure's reason" grep -q "^not built: the Python module (no Python module: no Python.h for Python 3.12)" "$res/notes/python"

# A fake build: gtest binaries that write their JSON report (and, asked to, a stray file into
# $OUT), a compute-sanitizer that records how it was called.
fake=$tmp/fake-build
mkdir -p "$fake/tests/cuda" "$tmp/cuda/bin" "$tmp/shim"
cat > "$fake/tests/cuda/umload_cuda_tile_test" << 'EOF'
#!/bin/bash
for a in "$@"; do case $a in --gtest_output=json:*) json=${a#--gtest_output=json:} ;; esac; done
echo "${HF_HUB_OFFLINE:-unset} ${TRANSFORMERS_OFFLINE:-unset}" > "$UMLOAD_GPU_WORK/offline"
printf '%s\n' "$@" > "$UMLOAD_GPU_WORK/args-$(basename "$0")"
[ -z "${FAKE_STRAY:-}" ] || : > "$OUT/stray.txt"
if [ -n "${FAKE_FAIL:-}" ]; then
  echo '{"tests": 2, "failures": 1, "testsuites": [{"name": "S", "testsuite": [{"name": "a", "result": "COMPLETED"}, {"name": "b", "result": "COMPLETED", "failures": [{"failure": "x"}]}]}]}' > "$json"
  exit 1
fi
cat > "$json" << 'J'
{"tests": 2, "failures": 0, "testsuites": [{"name": "S", "testsuite": [{"name": "a", "result": "COMPLETED"}, {"name": "b", "result": "COMPLETED"}]}]}
J
EOF
chmod +x "$fake/tests/cuda/umload_cuda_tile_test"
cp "$fake/tests/cuda/umload_cuda_tile_test" "$fake/tests/cuda/umload_cuda_test"
touch "$fake/CMakeCache.txt"
cat > "$tmp/cuda/bin/compute-sanitizer" << 'EOF'
#!/bin/bash
printf '%s\n' "$@" > "$UMLOAD_GPU_WORK/sanitizer-args"
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do case $1 in --tool|--report-api-errors|--error-exitcode|--print-limit) shift ;; esac; shift; done
"$@"
exit ${FAKE_SANITIZER_RC:-$?}
EOF
chmod +x "$tmp/cuda/bin/compute-sanitizer"
printf '#!/bin/sh\necho 4.4.0\n' > "$tmp/shim/uname"
chmod +x "$tmp/shim/uname"

# memcheck: API errors not reported, memory errors fatal, the bounded filter; exit 99 says why.
NVCC=$tmp/cuda/bin/nvcc UMLOAD_GPU_BUILD=$fake bash "$script" --step memcheck > "$tmp/memcheck.log" 2>&1
expect "memcheck over a fake binary passes" test $? = 0
args=$(tr '\n' ' ' < "$tmp/work/sanitizer-args" 2> /dev/null)
expect "memcheck: --tool memcheck" grep -q -- "--tool memcheck " <<< "$args"
expect "memcheck: --report-api-errors no" grep -q -- "--report-api-errors no " <<< "$args"
expect "memcheck: --error-exitcode 99 (memory errors fatal)" grep -q -- "--error-exitcode 99 " <<< "$args"
expect "memcheck: a gtest filter bounds it" grep -q -- "--gtest_filter=CudaDecode\.\*:" "$tmp/work/args-umload_cuda_test"
FAKE_SANITIZER_RC=99 NVCC=$tmp/cuda/bin/nvcc UMLOAD_GPU_BUILD=$fake bash "$script" --step memcheck > "$tmp/memcheck.log" 2>&1
expect "memcheck with memory errors fails with 99" test $? = 99
expect "and its note says memory errors" grep -q "^memory errors found" "$res/notes/memcheck"
if [ -n "$build" ] && [ -x "$build/tests/cuda/umload_cuda_test" ]; then
  filter=$(sed -n "s/^MEMCHECK_FILTER='\(.*\)'$/\1/p" "$script")
  IFS=: read -ra patterns <<< "$filter"
  for p in "${patterns[@]}"; do
    n=$("$build/tests/cuda/umload_cuda_test" --gtest_list_tests --gtest_filter="$p" | grep -c '^  ')
    expect "memcheck's pattern $p names tests ($n)" test "$n" -gt 0
  done
fi

# A dry run of one step over the fake build: $OUT ends with the four files, the table last.
rm -rf "$tmp/work"
OUT=$tmp/out1 NVCC=$tmp/cuda/bin/nvcc UMLOAD_GPU_BUILD=$fake PATH=$tmp/shim:$PATH \
  bash "$script" --dry-run --only tile_test > "$tmp/run1.log" 2>&1
expect "a dry run of the tile test over the fake build passes" test $? = 0
expect "\$OUT holds the four files only" same "$(ls -A "$tmp/out1" | sort | tr '\n' ' ')" "gpu_check.log gpu_check.tar.gz gpu_table.txt steps.tsv "
expect "the archive holds the plan, the notes and the gtest report" bash -c \
  'tar -tzf "$1" | grep -q "plan.txt" && tar -tzf "$1" | grep -q "notes/tile_test" && tar -tzf "$1" | grep -q "tile_test.json"' _ "$tmp/out1/gpu_check.tar.gz"
expect "the output ends with the table" same "$(tail -n "$(wc -l < "$tmp/out1/gpu_table.txt")" "$tmp/run1.log")" "$(cat "$tmp/out1/gpu_table.txt")"
expect "the table's header names cmake, gcc, nvcc, the driver and Python" \
  grep -qE "driver .*cmake [0-9].*gcc [0-9].*nvcc .*Python [0-9]" "$tmp/out1/gpu_table.txt"
expect "the header says the kernel is gVisor's (uname -r 4.4.0)" grep -q "kernel 4.4.0 (gVisor" "$tmp/out1/gpu_table.txt"
expect "its row counts the cases" grep -qE "^tile_test	ok	[0-9]+	2 cases, 0 failed, 0 skipped$" "$tmp/out1/steps.tsv"
expect "every step runs with HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1" same "$(cat "$tmp/work/offline" 2> /dev/null)" "1 1"

FAKE_FAIL=1 UMLOAD_GPU_BUILD=$fake bash "$script" --step tile_test > "$tmp/fail.log" 2>&1
expect "a failing gtest case fails its step" test $? = 1
expect "and its row names the case" same "$(cat "$res/notes/tile_test")" "2 cases, 1 failed, 0 skipped; first: S.b"

# A rerun of another step keeps the earlier row, marked so.
OUT=$tmp/out2 NVCC=$tmp/cuda/bin/nvcc UMLOAD_GPU_BUILD=$fake bash "$script" --dry-run --only build > "$tmp/run2.log" 2>&1
expect "a rerun keeps the earlier call's rows, marked earlier" grep -qE "^tile_test	earlier: ok	" "$tmp/out2/steps.tsv"
expect "and adds its own" grep -qE "^build	" "$tmp/out2/steps.tsv"

# A step that writes into $OUT fails its row, and the file goes into the archive.
rm -rf "$tmp/work"
FAKE_STRAY=1 OUT=$tmp/out3 NVCC=$tmp/cuda/bin/nvcc UMLOAD_GPU_BUILD=$fake \
  bash "$script" --dry-run --only tile_test > "$tmp/run3.log" 2>&1
expect "a dry run whose step writes into \$OUT fails" test $? != 0
expect "\$OUT still holds the four files only" same "$(ls -A "$tmp/out3" | sort | tr '\n' ' ')" "gpu_check.log gpu_check.tar.gz gpu_table.txt steps.tsv "
expect "the step's row names the file" grep -qE "^tile_test	FAILED: wrote into \\\$OUT: stray.txt	" "$tmp/out3/steps.tsv"
expect "the file is in the archive" bash -c 'tar -tzf "$1" | grep -q "stray/stray.txt"' _ "$tmp/out3/gpu_check.tar.gz"

# Out of time: a timing step with less than half its limit left is skipped with its row; a
# correctness step still runs, cut to what is left.
rm -rf "$tmp/work"
GPU_CHECK_BUDGET_S=40 OUT=$tmp/out4 NVCC=$tmp/cuda/bin/nvcc UMLOAD_GPU_BUILD=$fake \
  bash "$script" --only tile_test,reference > "$tmp/run4.log" 2>&1
expect "with 40 s of budget the tile test still runs" grep -qE "^tile_test	ok	" "$tmp/out4/steps.tsv"
expect "and the reference is skipped, saying why" grep -qE "^reference	skipped: out of time" "$tmp/out4/steps.tsv"
expect "which the table shows" grep -qE "^  reference +skipped: out of time" "$tmp/out4/gpu_table.txt"

# The build of the same tree is reused: no build tool runs.
printf 'config x\nsource %s\nbuilt %s\n' "$(bash "$script" --source-stamp)" "$(bash "$script" --source-stamp)" > "$fake/.umload-gpu-check"
GENERATOR=none UMLOAD_GPU_BUILD=$fake bash "$script" --step build > "$tmp/build.log" 2>&1
expect "a build folder built from this tree is reused" test $? = 0
expect "and says so" grep -q "^reused" "$res/notes/build"
printf 'config x\nsource y\nbuilt y\n' > "$fake/.umload-gpu-check"
GENERATOR=none UMLOAD_GPU_BUILD=$fake bash "$script" --step build > "$tmp/build.log" 2>&1
expect "one built from another tree is built again" bash -c '! grep -q "^reused" "$1"' _ "$res/notes/build"

# A gtest step over a real binary: one process, its cases counted from gtest's JSON report.
if [ -n "$build" ] && [ -x "$build/tests/cuda/umload_cuda_tile_test" ]; then
  UMLOAD_GPU_WORK=$tmp/real UMLOAD_GPU_BUILD=$build bash "$script" --step tile_test > "$tmp/tile.log" 2>&1
  expect "the tile test step passes over the built binary" test $? = 0
  expect "its row counts the cases" grep -qE "^[1-9][0-9]* cases, 0 failed, 0 skipped$" "$tmp/real/results/notes/tile_test"
fi

# The table: a row per planned step, the ones never run as such, values not measured.
t=$tmp/table
mkdir -p "$t"
printf '%s\n' "${steps[@]}" > "$t/plan.txt"
printf 'deps\tok\t1\t21 packages\nbuild\tnot run\t0\tnot built: CMakeCache.txt\n' > "$t/steps.tsv"
echo '{"seconds": 2.0, "bytes_produced": 10, "peak_device_bytes": 5}' > "$t/load.json"
echo 'not json' > "$t/peers.json"
MODE=run HEADER=none python3 "$repo/bench/gpu/table.py" "$t" > "$tmp/table.txt"
expect "the table prints" test -s "$tmp/table.txt"
for s in "${steps[@]}"; do
  expect "the table has a row for $s" grep -qE "^  $s " "$tmp/table.txt"
done
expect "an unbuilt step reads as not run" grep -qE "^  build +not run" "$tmp/table.txt"
expect "a step never reached reads so" grep -qE "^  reference +not reached" "$tmp/table.txt"
expect "no digest result reads as not run, not as a pass" grep -qE "^GPU digest/checks = CPU +not run" "$tmp/table.txt"
expect "a load without timing reads as not measured" grep -qE "timing .*not measured" "$tmp/table.txt"
echo '{"seconds": 2.0, "timing": {"total_seconds": 3.0, "backend_seconds": 0.5, "allocate_seconds": 1.0, "pipeline_seconds": 1.4, "finish_seconds": 0.1}}' > "$t/load.json"
echo '{"seconds": 30.0}' > "$t/reference.json"
MODE=run HEADER=none python3 "$repo/bench/gpu/table.py" "$t" > "$tmp/table.txt"
expect "with timing, the speedup is taken from total_seconds" grep -qE "^speedup vs PyTorch \(load\) +10\.0x \(30\.00 s vs 3\.00 s\)" "$tmp/table.txt"
expect "and the parts are shown" grep -qE "backend / allocate / pipeline / finish s +0\.50 / 1\.00 / 1\.40 / 0\.10" "$tmp/table.txt"
expect "the Python used compiles" python3 -m py_compile "$repo"/bench/gpu/*.py
find "$repo/bench/gpu" -name __pycache__ -prune -exec rm -rf {} +

summarize
