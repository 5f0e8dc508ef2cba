#!/usr/bin/env bash
# umload beside the loaders a GPT-OSS user would otherwise use, on the CPU, in one run on one
# machine: a real-shaped gpt-oss-20b synthetic checkpoint (`umload synth --preset gpt-oss-20b
# --layers N`), every case in a process of its own (bench/peer_bench.py), each with the page cache
# warm (the files read just before) and cold (the checkpoint's pages dropped, checked with fincore).
#   decode to BF16: umload.load, umload.hf.from_pretrained, transformers' from_pretrained with
#                   Mxfp4Config(dequantize=True), NeMo Automodel's GPTOSSStateDictAdapter.from_hf
#   raw tensors:    umload.load(dtype="keep"), safetensors, fastsafetensors, runai-model-streamer
# Per case: the load's seconds (after the imports), the process's wall seconds and peak RSS (GNU
# time), and what it produced. Prints the machine, versions, `uptime` before and after, and a
# Markdown table; every JSON line lands in $WORK/peers.jsonl.
#
#   bash bench/peer_bench.sh [--layers N] [--repeats R] [--cases "A B ..."] [--checkpoint DIR] [--dry-run]
#
# --dry-run: a 1-layer checkpoint and one round, to check that every case runs (not a measurement).
# --checkpoint DIR: that checkpoint instead of a synthetic one (e.g. a tiny one, to try the script).
# Venvs: build/venv (torch, transformers; `make venv`), build/venv-nemo (NeMo Automodel), and
# build/venv-peers, made here from bench/requirements-peers.txt (the raw readers).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$repo/build}
layers=2
repeats=1
dry_run=0
ckpt=
cases="umload.load umload.hf transformers nemo umload.load-keep safetensors fastsafetensors runai"
while [ $# -gt 0 ]; do
  case $1 in
    --layers) layers=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    --checkpoint) ckpt=$(cd "$2" && pwd); shift 2 ;;
    --dry-run) dry_run=1; layers=1; shift ;;
    *) echo "usage: $0 [--layers N] [--repeats R] [--cases \"A B ...\"] [--checkpoint DIR] [--dry-run]" >&2; exit 2 ;;
  esac
done
work=${WORK:-$(mktemp -d /tmp/umload-peers-XXXXXX)}
mkdir -p "$work"
venv=$build/venv
nemo_venv=$build/venv-nemo
peers_venv=$build/venv-peers
wheelhouse=${WHEELHOUSE:-$HOME/.cache/umload/wheels}
requirements=$repo/bench/requirements-peers.txt

for need in "$build/umload" "$build/python/umload/__init__.py" "$venv/bin/python" "$nemo_venv/bin/python"; do
  [ -e "$need" ] || { echo "missing $need: run make build (it makes the venvs) first" >&2; exit 1; }
done
# The raw readers' venv sees build/venv's packages through a .pth file, as build/venv-nemo does.
if [ ! -f "$peers_venv/.umload-installed" ] || [ "$requirements" -nt "$peers_venv/.umload-installed" ]; then
  [ -x "$peers_venv/bin/pip" ] || /usr/bin/python3 -m venv "$peers_venv"
  "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
    >"$("$peers_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/umload-base-venv.pth"
  mkdir -p "$wheelhouse"
  "$peers_venv/bin/pip" install -q --no-index --find-links "$wheelhouse" --no-deps -r "$requirements" 2>/dev/null || {
    "$peers_venv/bin/pip" download -q --no-deps -d "$wheelhouse" -r "$requirements" &&
      "$peers_venv/bin/pip" install -q --no-index --find-links "$wheelhouse" --no-deps -r "$requirements"; }
  touch "$peers_venv/.umload-installed"
fi

ckpt=${ckpt:-$work/gpt-oss-20b-${layers}layers}
if [ ! -f "$ckpt/model.safetensors.index.json" ]; then
  "$build/umload" synth --preset gpt-oss-20b --layers "$layers" --out "$ckpt" >/dev/null
fi
files=("$ckpt"/*.safetensors)
# The checkpoint's own pages only: synced first (dirty pages cannot be dropped), then dropped.
drop_cache() {
  "$venv/bin/python" - "${files[@]}" <<'PY'
import os, sys
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
PY
}
warm_cache() { cat "${files[@]}" >/dev/null; }
cached_bytes() { fincore -b -n -o RES "${files[@]}" | awk '{s += $1} END {printf "%.0f\n", s}'; }

interpreter() {
  case $1 in
    nemo) echo "$nemo_venv/bin/python" ;;
    *) echo "$peers_venv/bin/python" ;;
  esac
}

results=$work/peers.jsonl
: >"$results"
echo "machine:  $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "disk:     $(df --output=source "$work" | tail -1) ($(findmnt -no FSTYPE -T "$work"))"
echo "ckpt:     $ckpt ($(du -sb "$ckpt" | cut -f1) bytes; config: $("$venv/bin/python" -c 'import json,sys; c=json.load(open(sys.argv[1])); print("%d layers, %d experts, hidden %d, intermediate %d, vocab %d" % tuple(c[k] for k in ("num_hidden_layers","num_local_experts","hidden_size","intermediate_size","vocab_size")))' "$ckpt/config.json"))"
echo "work:     $work"
echo "uptime before: $(uptime)"
[ "$dry_run" = 1 ] && echo "DRY RUN: one round on a 1-layer checkpoint; the times are not a measurement"
for round in $(seq "$repeats"); do
  for cache in warm cold; do
    for case in $cases; do
      if [ "$cache" = warm ]; then warm_cache; else drop_cache; fi
      before=$(cached_bytes)
      if ! CUDA_VISIBLE_DEVICES="" PYTHONPATH="$build/python" /usr/bin/time -f "%e %M" -o "$work/time" \
        "$(interpreter "$case")" "$repo/bench/peer_bench.py" "$case" "$ckpt" >"$work/out" 2>"$work/err"; then
        echo "case $case ($cache) failed:" >&2
        tail -5 "$work/err" >&2
        "$venv/bin/python" -c 'import json,sys; print(json.dumps({"case": sys.argv[1], "cache": sys.argv[2], "round": int(sys.argv[3]), "failed": open(sys.argv[4]).read()[-2000:]}))' \
          "$case" "$cache" "$round" "$work/err" >>"$results"
        continue
      fi
      read -r wall max_kib <"$work/time"
      "$venv/bin/python" - "$work/out" "$cache" "$round" "$wall" "$max_kib" "$before" >>"$results" <<'PY'
import json, sys
out, cache, rnd, wall, max_kib, before = sys.argv[1:]
r = json.loads(open(out).read().strip().splitlines()[-1])
r.update(cache=cache, round=int(rnd), wall_seconds=float(wall), time_max_rss_bytes=int(max_kib) * 1024,
         cached_bytes_before=int(before))
print(json.dumps(r))
PY
      tail -1 "$results" | "$venv/bin/python" -c 'import json,sys; r=json.load(sys.stdin); print("%-17s %-5s load %7.2f s  process %7.2f s  peak RSS %6.2f GiB  (%d tensors, %.2f GiB; %.0f MiB cached before)" % (r["case"], r["cache"], r["seconds"], r["wall_seconds"], r["peak_rss_bytes"]/2**30, r["tensors"], r["bytes"]/2**30, r["cached_bytes_before"]/2**20))'
    done
  done
done
echo "uptime after:  $(uptime)"

"$venv/bin/python" - "$results" <<'PY'
import collections, json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\nversions:")
seen = {}
for r in rows:
    for k, v in r.get("versions", {}).items():
        seen.setdefault(k, set()).add(v)
for k in sorted(seen):
    print("  %s %s" % (k, ", ".join(sorted(seen[k]))))
groups = collections.OrderedDict()
for r in rows:
    groups.setdefault(r["case"], {}).setdefault(r["cache"], []).append(r)
print("\n| case | output | warm: load s | warm: process s | warm: peak RSS GiB | cold: load s | cold: process s | cold: peak RSS GiB |")
print("|---|---|---|---|---|---|---|---|")
for case, by_cache in groups.items():
    cells = []
    out = ""
    for cache in ("warm", "cold"):
        runs = [r for r in by_cache.get(cache, []) if "failed" not in r]
        if not runs:
            cells += ["failed", "", ""]
            continue
        out = "%d tensors, %.2f GiB" % (runs[0]["tensors"], runs[0]["bytes"] / 2**30)
        cells += ["%.2f" % statistics.median(r["seconds"] for r in runs),
                  "%.2f" % statistics.median(r["wall_seconds"] for r in runs),
                  "%.2f" % statistics.median(r["peak_rss_bytes"] / 2**30 for r in runs)]
    print("| %s | %s | %s |" % (case, out, " | ".join(cells)))
PY
