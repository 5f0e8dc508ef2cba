"""The GPU check's table: measured values against the targets, then one row per step.

Usage: table.py RESULTS_DIR. Reads what bench/gpu_check.sh's steps left in RESULTS_DIR (steps.tsv,
plan.txt, gpu_bench.txt, synth.json, load.json, reference.json, python.json, peers.json); anything
missing or unreadable reads as "not measured". HEADER (the card, the machine, the tool versions)
and MODE come from the environment. The step rows come last, each with its reason.
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
    with open(os.path.join(out, "gpu_bench.txt")) as f:
        for line in f:
            m = re.match(r"result name=(\S+) bytes=(\S+) ms=(\S+) gbps=(\S+)", line)
            if m:
                bench[m.group(1)] = float(m.group(4))
except OSError:
    pass
run = load("load.json")
ref = load("reference.json")
py = load("python.json")
ckpt = load("synth.json")
ckpt_bytes = ckpt.get("bytes", 0) if isinstance(ckpt, dict) else 0
peers = load("peers.json")

rows = []


def add(what, value, target, ok):
    verdict = "ok" if ok is True else "MISS" if ok is False else "n/a" if target else ""
    rows.append((what, value, target, verdict))


def step_row(name, what, target):
    s = status.get(name)
    if s is None:
        add(what, "not run", target, None)
    else:
        st = s[1].removeprefix("earlier: ")
        ok = True if st == "ok" else None if st.startswith(("not run", "skipped")) else False
        add(what, f"{s[1]}{': ' + s[3] if s[3] else ''}", target, ok)


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
timing = run.get("timing") if isinstance(run, dict) else None
timing = timing if isinstance(timing, dict) else None


def load_seconds():
    """umload's load time, like for like with the reference: from backend creation, allocations
    included (timing.total_seconds); a build without `timing` has only `seconds`, which starts
    after the context and the allocations."""
    if timing and isinstance(timing.get("total_seconds"), (int, float)):
        return timing["total_seconds"], "total"
    if run and isinstance(run.get("seconds"), (int, float)):
        return run["seconds"], "seconds"
    return None, None


seconds, which = load_seconds()
if seconds is not None and h2d and ckpt_bytes:
    bound = ckpt_bytes / (h2d * 1e9)
    add("load seconds (page cache)", f"{seconds:.2f} vs {ckpt_bytes / 1e9:.1f} GB / H2D = {bound:.2f}",
        "<= 1.5x bound", seconds <= 1.5 * bound)
else:
    add("load seconds (page cache)", "not measured", "<= 1.5x ckpt/H2D", None)
if timing:
    parts = [timing.get(k) for k in ("backend_seconds", "allocate_seconds", "pipeline_seconds", "finish_seconds")]
    add("  backend / allocate / pipeline / finish s",
        " / ".join(f"{p:.2f}" if isinstance(p, (int, float)) else "?" for p in parts), "", None)
elif run:
    add("  timing (total, backend, allocate, ...)", "not measured: this build's load --json has no timing", "", None)
if run:
    add("  read / copy / decode s",
        f"{run.get('read_seconds', 0):.2f} / {run.get('copy_seconds', 0):.2f} / {run.get('decode_seconds', 0):.2f}",
        "", None)
    limit = run.get("bytes_produced", 0) + 2 * run.get("slot_bytes", 0)
    peak = run.get("peak_device_bytes", 0)
    add("peak device GB", f"{peak / 1e9:.2f} vs outputs {run.get('bytes_produced', 0) / 1e9:.2f} + 2 slots",
        "<= outputs + 2 slots", peak <= limit)
else:
    add("peak device GB", "not measured", "<= outputs + 2 slots", None)
ref_seconds = ref.get("seconds") if isinstance(ref, dict) else None
if seconds and isinstance(ref_seconds, (int, float)):
    like = "" if which == "total" else "; umload's without context and allocations"
    add("speedup vs PyTorch (load)",
        f"{ref_seconds / seconds:.1f}x ({ref_seconds:.2f} s vs {seconds:.2f} s{like})",
        ">= 5x", ref_seconds >= 5 * seconds)
else:
    add("speedup vs PyTorch (load)", "not measured", ">= 5x", None)
ref = ref if isinstance(ref, dict) else None
if ref and ref.get("kernel_gbps") and bench.get("decode_hf_bf16_gate_up"):
    add("speedup vs PyTorch (kernel)",
        f"{bench['decode_hf_bf16_gate_up'] / ref['kernel_gbps']:.1f}x ({ref['kernel_gbps']:.0f} GB/s)", "", None)
if ref and ref.get("reader"):
    add("PyTorch reference reads with", ref["reader"], "", None)
if ref and ref.get("peak_device_bytes"):
    add("PyTorch peak device GB", f"{ref['peak_device_bytes'] / 1e9:.2f}", "", None)



def peer_rows(data):
    """peers.json as bench/gpu/peers.py writes it: `summary` maps each case (umload-cli, umload-hf,
    transformers) to its runs, the best run's seconds and that run's peak device and host bytes;
    `h2d` holds the pinned H2D limit where gpu_bench measured it. A run cut short still leaves
    the cases it finished."""
    summary = data.get("summary") if isinstance(data, dict) else None
    for name, r in (summary or {}).items():
        if not isinstance(r, dict):
            continue
        if not r.get("passed"):
            yield name, f"FAILED: 0 of {r.get('runs', '?')} runs passed (see the log)"
            continue
        bits = [f"{r['best_seconds']:.2f} s (best of {r['passed']})"]
        for key, label in (("peak_device_bytes", "device"), ("peak_host_bytes", "host")):
            if isinstance(r.get(key), (int, float)):
                bits.append(f"{label} {r[key] / 2**30:.2f} GiB")
        yield name, ", ".join(bits)
    h2d = data.get("h2d") if isinstance(data, dict) else None
    if isinstance(h2d, dict) and isinstance(h2d.get("gbps"), (int, float)):
        yield "H2D limit (pinned)", f"{h2d['gbps']:.1f} GB/s"


peer_status = status.get("peers", ["", "", "", ""])[1]
rows_of_peers = list(peer_rows(peers)) if isinstance(peers, dict) else []
if rows_of_peers:
    for name, value in rows_of_peers:
        add(f"peer: {name}", value, "", None)
    if peer_status not in ("ok", "earlier: ok"):
        add("peers step", peer_status or "not run", "", None)
else:
    step_row("peers", "peers (umload.hf, transformers, CLI)", "")

print()
print(f"umload GPU check ({os.environ.get('MODE', 'run')}) on {os.environ.get('HEADER', 'unknown')}")
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
# SELECTED: the steps this call runs (--only / --from); GPU_ONLY: those a dry run leaves out.
selected = set(os.environ.get("SELECTED", " ".join(planned)).split())
gpu_only = set(os.environ.get("GPU_ONLY", "").split())
for name in planned + [s[0] for s in steps if s[0] not in planned]:
    if name in status:
        _, st, secs, note = status[name]
        print(f"  {name:<18} {st:<28} {secs:>4} s  {note}")
    else:
        print(f"  {name:<18} {'not run (dry run)' if dry and name in gpu_only else 'not selected' if name not in selected else 'not reached'}")
