#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each from fresh seed corpora. Any crash, leak, timeout
# (-timeout), over-sized allocation (-malloc_limit_mb) or RSS blow-up (-rss_limit_mb) fails the
# run and leaves the input under BUILD/fuzz/artifacts/. Longer runs: docs/reliability.md.
#
#   tests/fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]
set -euo pipefail
build=${1:?build dir}
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : $# ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors index config model_map)
here=$(cd "$(dirname "$0")" && pwd)
work="$build/fuzz/work"
rm -rf "$work/seeds" && mkdir -p "$work/seeds" "$build/fuzz/artifacts"
/usr/bin/python3 "$here/make_corpus.py" "$build/umload" "$work/seeds"
status=0
for t in "${targets[@]}"; do
  corpus="$work/corpus-$t"
  mkdir -p "$corpus"
  echo "== fuzz_$t for ${seconds}s"
  # UBSan reports abort (so they are findings); LeakSanitizer runs at the end of each input.
  if ! UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$build/fuzz/fuzz_$t" "$corpus" "$work/seeds/$t" \
       -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
       -max_len=65536 -dict="$here/json.dict" -print_final_stats=1 \
       -artifact_prefix="$build/fuzz/artifacts/$t-" >"$work/$t.log" 2>&1; then
    echo "fuzz_$t FAILED; log: $work/$t.log, input under $build/fuzz/artifacts/"
    tail -n 40 "$work/$t.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/$t.log" | tr '\n' ' '
    echo
  fi
done
exit $status
