"""The GPU check's table: measured values against the targets, then one row per step.

Usage: table.py OUT_DIR. Reads what bench/gpu_check.sh's steps left in OUT_DIR (steps.tsv,
bench.txt, load.json, reference.json, python.json, ckpt.json); anything missing reads as
"not measured". CARD and MODE come from the environment.
"""
import json
import os
import re
import sys

out = sys.argv[1]


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


steps = []
try:
    with open(os.path.join(out, "steps.tsv")) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t") + ["", "", "", ""]
            steps.append(parts[:4])
except OSError:
    pass
status = {s[0]: s for s in steps}

bench = {}
try:
    with open(os.path.join(out, "bench.txt")) as f:
        for line in f:
            m = re.match(r"result name=(\S+) bytes=(\S+) ms=(\S+) gbps=(\S+)", line)
            if m:
                bench[m.group(1)] = float(m.group(4))
except OSError:
    pass
run = load("load.json")
ref = load("reference.json")
py = load("python.json")
ckpt = load("ckpt.json")
ckpt_bytes = ckpt["bytes"] if ckpt else 0

rows = []


def add(what, value, target, ok):
    verdict = "ok" if ok is True else "MISS" if ok is False else "n/a" if target else ""
    rows.append((what, value, target, verdict))


def step_row(name, what, target):
    s = status.get(name)
    if s is None:
        add(what, "not run", target, None)
    else:
        add(what, f"{s[1]}{': ' + s[3] if s[3] else ''}", target, s[1] == "ok")


step_row("gpu_test_cuda", "gpu tests: umload_cuda_test", "pass")
step_row("gpu_test_convert", "gpu tests: umload_cuda_convert_test", "pass")
step_row("gpu_test_platform", "gpu tests: test_platform_live_gpu", "pass")
step_row("digests", "GPU digest/checks = CPU", "20 of 20 equal")
if py:
    for check, result in py.get("checks", {}).items():
        add(f"python: {check}", result["value"], result["target"], result["ok"])
else:
    step_row("python", "python: torch through DLPack", "pass")
step_row("memcheck", "compute-sanitizer memcheck", "no errors")

copy = bench.get("device_copy")
h2d = bench.get("pinned_h2d")
for name in ("decode_hf_bf16_gate_up", "decode_hf_bf16_down", "decode_native_bf16_gate_up",
             "decode_native_bf16_down", "decode_hf_f32_down", "decode_native_f32_down"):
    k = bench.get(name)
    if k and copy:
        add(f"{name} GB/s", f"{k:.0f} = {100 * k / copy:.0f}% of copy {copy:.0f}", ">= 80%", k >= 0.8 * copy)
    else:
        add(f"{name} GB/s", "not measured", ">= 80% of copy", None)
add("pinned H2D GB/s", f"{h2d:.1f}" if h2d else "not measured", "(limit)", None)
if run and h2d and ckpt_bytes:
    bound = ckpt_bytes / (h2d * 1e9)
    add("load seconds (page cache)", f"{run['seconds']:.2f} vs {ckpt_bytes / 1e9:.1f} GB / H2D = {bound:.2f}",
        "<= 1.5x bound", run["seconds"] <= 1.5 * bound)
    add("  read / copy / decode s",
        f"{run.get('read_seconds', 0):.2f} / {run.get('copy_seconds', 0):.2f} / {run.get('decode_seconds', 0):.2f}",
        "", None)
else:
    add("load seconds (page cache)", "not measured", "<= 1.5x ckpt/H2D", None)
if run:
    limit = run.get("bytes_produced", 0) + 2 * run.get("slot_bytes", 0)
    peak = run.get("peak_device_bytes", 0)
    add("peak device GB", f"{peak / 1e9:.2f} vs outputs {run.get('bytes_produced', 0) / 1e9:.2f} + 2 slots",
        "<= outputs + 2 slots", peak <= limit)
else:
    add("peak device GB", "not measured", "<= outputs + 2 slots", None)
if run and ref and ref.get("seconds"):
    add("speedup vs PyTorch (load)",
        f"{ref['seconds'] / run['seconds']:.1f}x ({ref['seconds']:.2f} s vs {run['seconds']:.2f} s)",
        ">= 5x", ref["seconds"] >= 5 * run["seconds"])
else:
    add("speedup vs PyTorch (load)", "not measured", ">= 5x", None)
if ref and ref.get("kernel_gbps") and bench.get("decode_hf_bf16_gate_up"):
    add("speedup vs PyTorch (kernel)",
        f"{bench['decode_hf_bf16_gate_up'] / ref['kernel_gbps']:.1f}x ({ref['kernel_gbps']:.0f} GB/s)", "", None)
if ref and ref.get("reader"):
    add("PyTorch reference reads with", ref["reader"], "", None)
if ref and ref.get("peak_device_bytes"):
    add("PyTorch peak device GB", f"{ref['peak_device_bytes'] / 1e9:.2f}", "", None)

print()
print(f"umload GPU check ({os.environ.get('MODE', 'run')}) on {os.environ.get('CARD', 'unknown')}")
if os.environ.get("MODE") != "dry-run":
    w = max(len(r[0]) for r in rows)
    for what, value, target, verdict in rows:
        print(f"{what:<{w}}  {value:<56}  {target:<22}  {verdict}")
print()
print("steps:")
try:
    with open(os.path.join(out, "plan.txt")) as f:
        planned = [line.strip() for line in f if line.strip()]
except OSError:
    planned = []
dry = os.environ.get("MODE") == "dry-run"
for name in planned + [s[0] for s in steps if s[0] not in planned]:
    if name in status:
        _, st, seconds, note = status[name]
        print(f"  {name:<18} {st:<28} {seconds:>4} s  {note}")
    else:
        print(f"  {name:<18} {'not run (dry run)' if dry else 'not reached'}")
