#!/usr/bin/env bash
# bench/matrix.sh on a tiny checkpoint: every profile on every device here gives one JSON line
# and the same digest (exit 0); a umload whose digest changes under one profile fails it (exit 1).
#   matrix_test.sh UMLOAD SOURCE_DIR
set -euo pipefail
umload="$1"
matrix="$2/bench/matrix.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/umload-matrix-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

bash "$matrix" --umload "$umload" --out "$work/runs.jsonl" 2>"$work/summary"
cat "$work/summary"
profiles="$("$umload" platform --help | sed -n 's/.*built-in profile: \(.*\) (default.*/\1/p' | tr -d ',' | wc -w)"
lines="$(wc -l <"$work/runs.jsonl")"
[[ "$lines" -ge $((profiles + 1)) ]] || { echo "expected at least $((profiles + 1)) runs, got $lines"; exit 1; }
/usr/bin/python3 - "$work/runs.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert all(r["status"] == "ok" for r in rows), rows
assert len({r["digest"] for r in rows}) == 1
assert {"live", "h100-sxm", "gh200", "dgx-spark"} <= {r["profile"] for r in rows}
for r in rows:
    for key in ("platform", "memory_model", "strategy", "seconds", "peak_rss_bytes", "device"):
        assert key in r, (key, r)
print(f"{len(rows)} runs, one digest")
PY

# A build whose digest differs under one profile must fail the matrix.
cat >"$work/fake-umload" <<FAKE
#!/usr/bin/env bash
if [[ "\$1" == load && " \$* " == *" --profile gh200 "* ]]; then
  "$umload" "\$@" | sed 's/"digest": "sha256:[0-9a-f]*"/"digest": "sha256:0000"/'
  exit "\${PIPESTATUS[0]}"
fi
exec "$umload" "\$@"
FAKE
chmod +x "$work/fake-umload"
rc=0
bash "$matrix" --umload "$work/fake-umload" >/dev/null 2>"$work/summary" || rc=$?
[[ "$rc" == 1 ]] || { echo "matrix.sh should fail on differing digests, exit was $rc"; cat "$work/summary"; exit 1; }
grep -q "DIGESTS DIFFER" "$work/summary"
echo "differing digests: detected"
