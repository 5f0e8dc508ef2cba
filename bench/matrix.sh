#!/usr/bin/env bash
# The hardware matrix: one checkpoint loaded under every built-in platform profile (and the live
# machine), on every device present (the CPU, and CUDA when `umload platform --json` reports a
# GPU), with `umload load --digest --json`. Writes one JSON line per run: profile, platform,
# memory model, device, strategy, times, peaks (measured and predicted), digest. Exits 1 when
# the digests differ or a run fails; a profile whose plan does not fit this checkpoint (exit 5)
# is recorded as skipped. This is what a CI over several machine types runs, one machine each.
#
#   bench/matrix.sh                      # synth tiny into a temp dir, run it, lines to stdout
#   bench/matrix.sh CKPT --out runs.jsonl [--umload build/umload] [--devices "cpu cuda"] [-- LOAD ARGS]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
umload="${UMLOAD:-$root/build/umload}"
checkpoint=""
out=""
devices=""
load_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --umload) umload="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --devices) devices="$2"; shift 2 ;;
    --) shift; load_args=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "matrix.sh: unknown option $1" >&2; exit 2 ;;
    *) checkpoint="$1"; shift ;;
  esac
done
[[ -x "$umload" ]] || { echo "matrix.sh: no umload binary at $umload (build first, or pass --umload)" >&2; exit 2; }
python=/usr/bin/python3
[[ -x "$python" ]] || python="$(command -v python3)"

work="$(mktemp -d "${TMPDIR:-/tmp}/umload-matrix.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if [[ -z "$checkpoint" ]]; then
  checkpoint="$work/tiny"
  "$umload" synth --preset tiny --out "$checkpoint" >/dev/null
fi
if [[ -n "$out" ]]; then : >"$out"; fi
emit() { if [[ -n "$out" ]]; then echo "$1" >>"$out"; else echo "$1"; fi; }

# Devices present: the CPU always; CUDA when the live platform has a usable GPU.
if [[ -z "$devices" ]]; then
  devices="cpu"
  gpu="$("$umload" platform --json | "$python" -c 'import json,sys; print(int(json.load(sys.stdin)["device"]["present"]))')"
  [[ "$gpu" == 1 ]] && devices="cpu cuda"
fi

# Profiles: the names `umload platform --help` lists. `load --profile` may be missing in an
# older build: then only the live machine runs, and the profiles are reported as skipped.
profiles="$("$umload" platform --help | sed -n 's/.*built-in profile: \(.*\) (default.*/\1/p' | tr -d ',')"
if "$umload" load --help | grep -q -- '--profile'; then
  runs="live $profiles"
  skipped=""
else
  runs="live"
  skipped="$profiles"
  echo "matrix.sh: this umload's load has no --profile; skipped profiles: $profiles" >&2
fi

status=0
failed=0
total=0
not_fit=()
for device in $devices; do
  for profile in $runs; do
    args=(load "$checkpoint" --device "$device" --digest --json --progress none "${load_args[@]}")
    [[ "$profile" != live ]] && args+=(--profile "$profile")
    rc=0
    "$umload" "${args[@]}" >"$work/report.json" 2>"$work/stderr" || rc=$?
    total=$((total + 1))
    line="$(PROFILE="$profile" DEVICE="$device" RC="$rc" CKPT="$checkpoint" "$python" - "$work/report.json" "$work/stderr" <<'PY'
import json, os, sys
rc = int(os.environ["RC"])
row = {"checkpoint": os.environ["CKPT"], "profile": os.environ["PROFILE"], "device": os.environ["DEVICE"],
       "exit_code": rc}
try:
    report = json.load(open(sys.argv[1]))
except ValueError:
    report = {}
for key in ("platform", "memory_model", "strategy", "device", "backend", "host_stands_in", "seconds",
            "read_seconds", "copy_seconds", "decode_seconds", "output_gb_per_s", "bytes_read",
            "bytes_produced", "peak_rss_bytes", "peak_device_bytes", "predicted_peak_device_bytes",
            "predicted_peak_host_bytes", "digest"):
    if key in report:
        row["loaded_on" if key == "device" else key] = report[key]
if rc != 0:
    row["status"] = "does-not-fit" if rc == 5 else "failed"
    row["error"] = open(sys.argv[2]).read().strip().splitlines()[-1:] or [""]
    row["error"] = row["error"][0]
else:
    row["status"] = "ok"
print(json.dumps(row, sort_keys=True))
PY
)"
    emit "$line"
    echo "$line" >>"$work/all.jsonl"
    if [[ "$rc" == 5 ]]; then
      not_fit+=("$profile/$device")
    elif [[ "$rc" != 0 ]]; then
      failed=$((failed + 1))
      echo "matrix.sh: $profile on $device failed (exit $rc): $(tail -n 1 "$work/stderr")" >&2
    fi
  done
done

digests="$("$python" -c '
import json, sys
print(" ".join(sorted({json.loads(l)["digest"] for l in open(sys.argv[1]) if json.loads(l).get("digest")})))
' "$work/all.jsonl")"
count="$(wc -w <<<"$digests")"
echo "matrix.sh: $total runs on devices [$devices], profiles [$runs]" >&2
[[ -n "$skipped" ]] && echo "matrix.sh: skipped profiles (load has no --profile): $skipped" >&2
[[ ${#not_fit[@]} -gt 0 ]] && echo "matrix.sh: plan does not fit (skipped): ${not_fit[*]}" >&2
if [[ "$count" -gt 1 ]]; then
  echo "matrix.sh: DIGESTS DIFFER: $digests" >&2
  status=1
elif [[ "$count" -eq 0 ]]; then
  echo "matrix.sh: no run produced a digest" >&2
  status=1
else
  echo "matrix.sh: every digest is $digests" >&2
fi
[[ "$failed" -gt 0 ]] && status=1
exit "$status"
