#!/usr/bin/env bash
# bench/matrix.sh, the thin wrapper over `umload matrix run`: with no checkpoint it synthesizes
# the tiny preset and prints one JSON line per run on stdout, all with one digest (exit 0);
# options pass through to matrix run (an unknown profile: exit 2).
#   matrix_test.sh UMLOAD SOURCE_DIR
set -euo pipefail
umload="$1"
matrix="$2/bench/matrix.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/umload-matrix-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

bash "$matrix" --umload "$umload" >"$work/runs.jsonl" 2>"$work/summary"
cat "$work/summary"
/usr/bin/python3 - "$work/runs.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) >= 9, len(rows)
ok = [r for r in rows if r["run"]["status"] == "ok"]
assert {"live", "h100-sxm", "gh200", "dgx-spark"} <= {r["run"]["profile"] for r in ok}
assert len({r["run"]["digest"] for r in ok}) == 1
print(f"{len(rows)} runs, one digest")
PY
rc=0
bash "$matrix" --umload "$umload" --profiles live,nowhere --out "$work/x.jsonl" 2>"$work/summary" || rc=$?
[[ "$rc" == 2 ]] || { echo "an unknown profile should exit 2, exit was $rc"; cat "$work/summary"; exit 1; }
grep -q "nowhere" "$work/summary"
echo "options pass through"
