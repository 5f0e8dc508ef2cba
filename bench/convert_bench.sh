#!/usr/bin/env bash
# convert against the disk's write limit, in one run on one machine:
#   the limit: a direct, fsynced write of the output's size (dd oflag=direct conv=fsync, 64 MiB
#     blocks), and for context the same write while the input is read direct at the same time
#     (what convert must do: read its input from the same disk);
#   umload convert --device cpu at --memory-budget 128M, 256M, 1G and the default,
# each case once per round, the rounds interleaved so the machine's other load spreads over all
# cases. The input's pages are dropped from the page cache before every case (cold input). Prints
# wall time (median over rounds), the ratio to the limit's median, and peak RSS (GNU time); the
# raw figures land in $WORK/results.tsv. The checkpoint is `umload synth --preset gpt-oss-20b`
# with LAYERS layers (2: 3.3 GB out; 24: the full 20b shape, 13.8 GB in, 41.8 GB out).
#
#   bash bench/convert_bench.sh [BUILD_DIR] [LAYERS] [ROUNDS]
#   KEEP=1 keeps the checkpoint in $WORK for a later run; otherwise everything is deleted.
#   BEFORE=/path/to/another/umload adds that binary's convert at 256M and 1G to every round (an
#   A/B against an earlier build, in the same run).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
layers=${2:-2}
rounds=${3:-3}
python=/usr/bin/python3
umload=$build/umload
work=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/umload-convert-bench-XXXXXX")}
mkdir -p "$work"
ckpt=$work/gpt-oss-20b-${layers}layers
out=$work/dense
results=$work/results.tsv
cleanup() {
  rm -rf "$out" "$work/limit.bin"
  if [ -z "${KEEP:-}" ]; then rm -rf "$ckpt"; fi
}
trap cleanup EXIT

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB;" \
     "disk: $(df -hT "$work" | awk 'NR==2{print $1, $2, $3 " total, " $5 " free"}')"
echo "load before: $(uptime)"
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
  "$umload" synth --preset gpt-oss-20b --layers "$layers" --out "$ckpt" >/dev/null
fi
in_bytes=$(du -sb "$ckpt" | cut -f1)
out_bytes=$("$umload" inspect --json "$ckpt" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["bf16_bytes_after_decode"])')
echo "checkpoint: $layers layers, $in_bytes bytes in, $out_bytes bytes of tensors out"

free_bytes() { df -B1 --output=avail "$work" | tail -1; }
need_space() {
  if [ "$(free_bytes)" -lt $((out_bytes + (4 << 30))) ]; then
    echo "not enough free space on $(df --output=target "$work" | tail -1) for $out_bytes more bytes; stopping" >&2
    exit 1
  fi
}
# Cold input: the checkpoint's pages out of the page cache (its own files only).
drop_input() {
  "$python" - "$ckpt" <<'PY'
import os, sys
for name in os.listdir(sys.argv[1]):
    fd = os.open(os.path.join(sys.argv[1], name), os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
PY
}
# Runs one case: wall seconds and peak RSS (KiB) from GNU time, appended to $results.
run_case() {
  local name=$1 round=$2
  shift 2
  need_space
  drop_input
  sync
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/stdout" 2>"$work/stderr" || {
    echo "case $name failed:" >&2
    cat "$work/stderr" >&2
    exit 1
  }
  read -r seconds rss_kib <"$work/time"
  printf '%s\t%s\t%s\t%s\n' "$name" "$round" "$seconds" "$rss_kib" >>"$results"
  printf '  %-18s %7.2f s  %6d MiB RSS\n' "$name" "$seconds" $((rss_kib / 1024))
  rm -rf "$out" "$work/limit.bin"
}

block=$((64 << 20))
blocks=$(((out_bytes + block - 1) / block))
: >"$results"
for round in $(seq "$rounds"); do
  echo "== round $round of $rounds ($(uptime | sed 's/.*load average/load average/'))"
  run_case limit "$round" dd if=/dev/zero of="$work/limit.bin" bs=$block count=$blocks oflag=direct conv=fsync
  run_case limit+read "$round" bash -c "dd if=/dev/zero of='$work/limit.bin' bs=$block count=$blocks oflag=direct conv=fsync &
    cat '$ckpt'/*.safetensors | dd of=/dev/null bs=$block iflag=fullblock 2>/dev/null; wait"
  for budget in 128M 256M 1G default; do
    args=()
    if [ "$budget" != default ]; then args=(--memory-budget "$budget"); fi
    run_case "convert $budget" "$round" "$umload" convert "$ckpt" --out "$out" --device cpu "${args[@]}" --json --progress none
    cp "$work/stdout" "$work/convert-$budget-$round.json"
  done
  if [ -n "${BEFORE:-}" ]; then
    for budget in 256M 1G; do
      run_case "before $budget" "$round" "$BEFORE" convert "$ckpt" --out "$out" --device cpu --memory-budget "$budget" --json --progress none
    done
  fi
done
echo "load after: $(uptime)"

"$python" - "$results" "$out_bytes" "$in_bytes" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, _, seconds, rss = line.rstrip("\n").split("\t")
    rows[name].append((float(seconds), int(rss) * 1024))
out_bytes, in_bytes = int(sys.argv[2]), int(sys.argv[3])
limit = statistics.median(s for s, _ in rows["limit"])
print()
print(f"output {out_bytes / 1e9:.2f} GB, input {in_bytes / 1e9:.2f} GB; limit (direct fsynced write) {limit:.2f} s = {out_bytes / limit / 1e9:.2f} GB/s")
print()
print("| case | runs (s) | median | GB/s written | ratio to the limit | peak RSS (median) |")
print("|---|---|---|---|---|---|")
for name, runs in rows.items():
    med = statistics.median(s for s, _ in runs)
    rss = statistics.median(r for _, r in runs)
    listed = ", ".join(f"{s:.1f}" for s, _ in runs)
    print(f"| {name} | {listed} | {med:.2f} s | {out_bytes / med / 1e9:.2f} | {med / limit:.2f}x | {rss / 2**20:.0f} MiB |")
PY
