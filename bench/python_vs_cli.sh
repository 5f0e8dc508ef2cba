#!/bin/bash
# umload load (CLI) beside umload.load from Python (torch and numpy) on the same 2-layer real-shaped
# gpt-oss-20b checkpoint, warm page cache, two rounds, each case a process of its own. The torch
# case imports torch before its timer (umload.load would import it on first use) and prints the
# import's time apart.
#   bash bench/python_vs_cli.sh [BUILD_DIR]
set -e
B=${1:-$(cd "$(dirname "$0")/.." && pwd)/build}
W=$(mktemp -d "${TMPDIR:-/tmp}/umload-py-vs-cli-XXXXXX"); rm -rf $W; mkdir -p $W
uptime
$B/umload synth --preset gpt-oss-20b --layers 2 --out $W/m >/dev/null
warm() { cat $W/m/*.safetensors > /dev/null; }
for i in 1 2; do
  warm; /usr/bin/time -f "cli %e s %M KiB" $B/umload load $W/m --device cpu --json > $W/cli$i.json
  python3 -c "import json;d=json.load(open('$W/cli$i.json'));print({k:v for k,v in d.items() if 'seconds' in k or k in ('io','io_mode')})" || true
  for fw in torch numpy; do
    warm; PYTHONPATH=$B/python /usr/bin/time -f "py-$fw %e s %M KiB" $B/venv/bin/python -c "
import time, umload
t=time.perf_counter()
if '$fw' == 'torch': import torch.utils.dlpack
imported=time.perf_counter()-t
t=time.perf_counter(); s,r=umload.load('$W/m', device='cpu', framework='$fw', with_report=True); t=time.perf_counter()-t
print('py-$fw import', round(imported,2), 's, load', round(t,2), 's', {k:v for k,v in r.items() if 'seconds' in k})"
  done
done
uptime
rm -rf $W
