#!/usr/bin/env bash
# The hardware matrix of this machine: a thin wrapper over `umload matrix run` (docs/matrix.md),
# kept for the old entry point. Without a checkpoint it synthesizes the tiny preset first;
# without --out it prints the JSON lines on stdout. The exit code is umload's.
#
#   bench/matrix.sh [CKPT] [--umload build/umload] [--out RUNS.jsonl] [matrix run options...]
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
umload="${UMLOAD:-$root/build/umload}"
checkpoint=""
out=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --umload) umload="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) args+=("$1" "$2"); shift 2 ;;
    *) checkpoint="$1"; shift ;;
  esac
done
[[ -x "$umload" ]] || { echo "matrix.sh: no umload binary at $umload (build first, or pass --umload)" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/umload-matrix.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if [[ -z "$checkpoint" ]]; then
  checkpoint="$work/tiny"
  "$umload" synth --preset tiny --out "$checkpoint" >/dev/null
fi
rc=0
"$umload" matrix run "$checkpoint" --out "${out:-$work/runs.jsonl}" "${args[@]}" >&2 || rc=$?
[[ -z "$out" && -f "$work/runs.jsonl" ]] && cat "$work/runs.jsonl"
exit "$rc"
