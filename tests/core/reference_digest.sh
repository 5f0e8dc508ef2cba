#!/usr/bin/env bash
# Bit-exactness against the reference loaders' algorithm: umload's digest of a load (hf layout,
# BF16, scales covering every byte 0..254) must equal the digest of the PyTorch reference
# (bench/reference_checkpoint.py: HF's convert_moe_packed_tensors steps) on the same checkpoint.
set -euo pipefail
umload=$1
repo=$2
python=${3:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$umload" synth --preset tiny --layers 3 --experts 8 --edge-scales --seed 7 --out "$work/ckpt" >/dev/null
ours=$("$umload" load "$work/ckpt" --device cpu --digest --json | "$python" -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
theirs=$("$python" "$repo/bench/reference_checkpoint.py" "$work/ckpt" --digest | "$python" -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
echo "umload    $ours"
echo "reference $theirs"
[ "$ours" = "$theirs" ]
