#!/bin/sh
# `umload platform` and `umload plan` end to end, on checkpoints whose data are holes: exit codes
# (0 fits, 5 does not, 2 usage) and the JSON keys tools read.
set -eu
umload="$1"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$umload" synth --preset gpt-oss-20b --holes --out "$dir/20b" >/dev/null
"$umload" synth --preset gpt-oss-120b --holes --out "$dir/120b" >/dev/null

"$umload" platform --json > "$dir/platform.json"
python3 - "$dir/platform.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["memory_model"] in ("host", "discrete", "discrete-hmm", "coherent", "integrated"), d
assert d["reason"]
PY

"$umload" plan "$dir/20b" --profile h100-sxm --json > "$dir/fits.json"
set +e
"$umload" plan "$dir/120b" --profile h100-sxm --json > "$dir/nofit.json"; rc_json=$?
"$umload" plan "$dir/120b" --profile dgx-spark > "$dir/nofit.txt"; rc_text=$?
"$umload" plan "$dir/120b" --profile h100-sxm --world-size 3 2>/dev/null; rc_usage=$?
set -e
[ "$rc_json" -eq 5 ] || { echo "120b bf16 on h100-sxm --json exited $rc_json, expected 5"; exit 1; }
[ "$rc_text" -eq 5 ] || { echo "120b bf16 on dgx-spark exited $rc_text, expected 5"; exit 1; }
[ "$rc_usage" -eq 2 ] || { echo "--world-size 3 exited $rc_usage, expected 2"; exit 1; }
grep -q "What would fit" "$dir/nofit.txt" || { echo "no suggestion in:"; cat "$dir/nofit.txt"; exit 1; }
"$umload" plan "$dir/120b" --profile h100-sxm --world-size 4 --rank 3 >/dev/null

python3 - "$dir/fits.json" "$dir/nofit.json" <<'PY'
import json, sys
fits, nofit = (json.load(open(p)) for p in sys.argv[1:3])
for d in (fits, nofit):
    for key in ("fits", "memory_model", "io_mode", "peak_device_bytes", "peak_host_bytes", "placements"):
        assert key in d, key
    assert all("tensor" in p and "location" in p for p in d["placements"])
assert fits["fits"] is True and nofit["fits"] is False
assert fits["peak_device_bytes"] == 41829514368 + 4 * 64 * 2**20, fits["peak_device_bytes"]
assert "keep" in nofit["message"]
PY
echo ok
