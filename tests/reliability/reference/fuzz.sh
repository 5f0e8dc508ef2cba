#!/usr/bin/env bash
# Runs the differential fuzzer (fuzz_reference.py) for SECONDS from fresh seeds and a corpus kept
# under WORK. With a libFuzzer runtime library (built beside the coverage probe where clang is
# found) it is preloaded, so that libFuzzer sees the probe's coverage; without one the run still
# compares every input, guided only by the Python side. Any disagreement fails the run and leaves
# the input under WORK/artifacts/. Longer runs: docs/reliability.md.
#
#   fuzz.sh PYTHON PROBE.so RUNTIME.so|- SECONDS WORK
set -euo pipefail
python=$1 probe=$2 runtime=$3 seconds=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work/corpus" "$work/artifacts"
rm -rf "$work/seeds"
preload=()
[ "$runtime" != "-" ] && preload=(env "LD_PRELOAD=$runtime")
set +e
"${preload[@]}" "$python" "$here/fuzz_reference.py" "$probe" "$work/seeds" "$work/corpus" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -dict="$here/../../fuzz/json.dict" -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  >"$work/fuzz.log" 2>&1
status=$?
set -e
if [ $status -eq 77 ]; then
  tail -n 1 "$work/fuzz.log"
  exit 77
fi
grep -E "^INFO: Loaded|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" \
  "$work/fuzz.log" || true
if [ $status -ne 0 ]; then
  echo "differential fuzz FAILED (status $status); log: $work/fuzz.log, input under $work/artifacts/"
  tail -n 30 "$work/fuzz.log"
fi
exit $status
