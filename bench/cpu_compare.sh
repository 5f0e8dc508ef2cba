#!/usr/bin/env bash
# The CPU comparison of issues 2 and 4, in one run on one machine:
#   umload load --device cpu and umload convert --memory-budget 256M on a 2-layer, real-shaped
#   gpt-oss-20b synthetic checkpoint, against
#   (a) the reference loader algorithm (bench/reference_checkpoint.py: HF's steps in PyTorch), and
#   (b) the machine's limits measured in the same run (memset, memcpy, page-cache file read, and
#       memset of fresh memory: what writing output costs once the kernel must supply its pages).
# Prints medians and a short table last; the JSON of every run lands in $WORK (kept).
#
#   bash bench/cpu_compare.sh [BUILD_DIR] [REPEATS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
repeats=${2:-3}
# The Python stack `make` installs (src/python/requirements.txt), else Debian's interpreter.
python=${PYTHON:-$([ -x "$repo/build/venv/bin/python" ] && echo "$repo/build/venv/bin/python" || echo /usr/bin/python3)}
work=${WORK:-$(mktemp -d /tmp/umload-cpu-compare-XXXXXX)}
umload=$build/umload
limits=$build/bench/bench_limits
cmake --build "$build" --target umload bench_limits >/dev/null
threads=$(nproc)

median() { "$python" -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
field() { "$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $threads cores, $(free -g | awk '/Mem:/{print $2}') GiB"
echo "work:    $work"
ckpt=$work/gpt-oss-20b-2layers
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
  "$umload" synth --preset gpt-oss-20b --layers 2 --out "$ckpt"
fi
ckpt_bytes=$(du -sb "$ckpt" | cut -f1)

echo "== limits (bench_limits, medians of 3)"
UMLOAD_BENCH_DIR=$work "$limits" --benchmark_filter="BM_memset/threads:$threads/|BM_memset_fresh/threads:$threads/|BM_memcpy/threads:$threads/|BM_file_read/page_cache" \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true --benchmark_format=json \
  --benchmark_out="$work/limits.json" >/dev/null
read -r memset_bps memcpy_bps read_bps fresh_bps < <("$python" - "$work/limits.json" <<'PY'
import json, sys
rows = {b["name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
def rate(prefix):
    for name, b in rows.items():
        if name.startswith(prefix):
            return b["bytes_per_second"]
    return 0
print(rate("BM_memset/"), rate("BM_memcpy"), rate("BM_file_read/page_cache"), rate("BM_memset_fresh"))
PY
)

warm() { cat "$ckpt"/*.safetensors >/dev/null; }
echo "== umload load --device cpu (page cache warm, $repeats runs)"
load_s=(); load_rss=()
for i in $(seq "$repeats"); do
  warm
  "$umload" load "$ckpt" --device cpu --keep-cache --io buffered --json >"$work/load-$i.json"
  load_s+=("$(field "$work/load-$i.json" seconds)"); load_rss+=("$(field "$work/load-$i.json" peak_rss_bytes)")
done
produced=$(field "$work/load-1.json" bytes_produced)
decode_s=$(field "$work/load-1.json" decode_seconds)
quantized=$(field "$work/load-1.json" quantized_bytes)

echo "== umload convert --device cpu --memory-budget 256M ($repeats runs)"
conv_s=(); conv_rss=()
for i in $(seq "$repeats"); do
  warm
  "$umload" convert "$ckpt" --out "$work/dense" --device cpu --memory-budget 256M --json --force >"$work/convert-$i.json"
  conv_s+=("$(field "$work/convert-$i.json" seconds)"); conv_rss+=("$(field "$work/convert-$i.json" peak_rss_bytes)")
done

echo "== reference loader in PyTorch ($python, $threads threads)"
warm
"$python" "$repo/bench/reference_checkpoint.py" "$ckpt" --threads "$threads" >"$work/reference.json"
ref_s=$(field "$work/reference.json" seconds)
ref_rss=$(field "$work/reference.json" peak_rss_bytes)

"$python" - "$ckpt_bytes" "$produced" "$memset_bps" "$memcpy_bps" "$read_bps" "$(median "${load_s[@]}")" \
  "$(median "${load_rss[@]}")" "$(median "${conv_s[@]}")" "$(median "${conv_rss[@]}")" "$ref_s" "$ref_rss" \
  "$decode_s" "$quantized" "$fresh_bps" <<'PY'
import sys
(ckpt, produced, memset, memcpy, read, load_s, load_rss, conv_s, conv_rss, ref_s, ref_rss,
 decode_s, quantized, fresh) = map(float, sys.argv[1:])
gb = 1e9
limit = ckpt / read + produced / memset
floor = ckpt / read + produced / fresh
budget = 256 * 2**20
print()
print(f"checkpoint {ckpt/gb:.2f} GB on disk -> {produced/gb:.2f} GB loaded (experts BF16, hf layout)")
print(f"limits: memset {memset/gb:.1f} GB/s, memset of fresh memory {fresh/gb:.1f} GB/s, memcpy {memcpy/gb:.1f} GB/s, "
      f"page-cache read {read/gb:.1f} GB/s")
print()
print(f"| what | measured | baseline / limit | ratio | target |")
print(f"|---|---|---|---|---|")
print(f"| load --device cpu | {load_s:.2f} s ({produced/load_s/gb:.2f} GB/s) | read + memset of output {limit:.2f} s | {load_s/limit:.2f}x | <= 1.5x |")
print(f"| load --device cpu | {load_s:.2f} s | read + memset of fresh output memory {floor:.2f} s | {load_s/floor:.2f}x | (context) |")
print(f"| load vs reference loader | {load_s:.2f} s | PyTorch {ref_s:.1f} s | {ref_s/load_s:.0f}x faster | (informational) |")
print(f"| load peak RSS | {load_rss/2**30:.2f} GiB | output {produced/2**30:.2f} GiB | +{(load_rss-produced)/2**20:.0f} MiB | output + staging |")
print(f"| convert 256M budget | {conv_s:.2f} s ({produced/conv_s/gb:.2f} GB/s) | | | |")
print(f"| convert peak RSS | {conv_rss/2**20:.0f} MiB | budget + 64 MiB = {(budget + 64*2**20)/2**20:.0f} MiB | {'within' if conv_rss <= budget + 64*2**20 else 'OVER'} | <= budget + 64 MiB |")
print(f"| reference peak RSS | {ref_rss/2**30:.2f} GiB | | | |")
print(f"| decode inside load | {decode_s:.2f} s for {quantized/gb:.2f} GB MXFP4 | | | |")
PY
