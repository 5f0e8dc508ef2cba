"""The Python step of the GPU check: umload's module under the GPU machine's own PyTorch.

Usage: python_check.py --umload BUILD/umload --work DIR [--json FILE] [--cpu-only]
(PYTHONPATH names the module; --work is emptied and holds the checkpoint.)

On a small synthetic checkpoint (`umload synth --preset tiny` at sizes transformers accepts),
the half that needs no GPU (all that --cpu-only runs, for a dry run without one):
- the module imports, and says which build it is;
- the CPU load is the CLI's: for both layouts and every dtype, the report's digest of
  `umload.load(..., device="cpu", digest=True)` and the digest recomputed here from the torch
  tensors' own bytes (SHA-256 per tensor, then of the sorted "<name> <hex>" lines, docs/cli.md)
  both equal `umload load --device cpu --digest --json`'s;
- umload.hf.from_pretrained's model gives the logits of transformers' own MXFP4 loading
  (Mxfp4Config(dequantize=True), BF16) of the same checkpoint, here on the CPU.
With a GPU (without --cpu-only), instead of the CPU logits:
- every tensor of `umload.load(..., device="cuda")` is a torch CUDA tensor on the GPU asked for,
  handed over through DLPack without a copy: PyTorch's allocator holds none of it (its allocated
  bytes do not move and no tensor lies in one of its segments), the GPU's free memory drops by at
  least the tensors' bytes when they arrive and comes back (to 1 MB) when the last one goes. One
  load is made and dropped first: kernels load at their first launch and the driver takes memory
  in 2 MiB pieces, which would otherwise read as a leak;
- the tensors are complete when they arrive: compared on PyTorch's current stream and on a second
  stream, with no synchronization, each equals the CPU load bit for bit (both layouts, every dtype);
- umload.hf.from_pretrained(device="cuda") gives the logits of transformers' MXFP4 load with
  device_map="cuda".
Exits 0 when every check passed, 1 otherwise; --json gets each check's result (the table's rows).
transformers and the Hub run offline (HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

# The sizes tests/python/test_transformers.py uses: transformers accepts them, and hidden and
# intermediate differ, so a transposed expert shows.
SYNTH_ARGS = ("--hidden", "64", "--intermediate", "96", "--experts", "4", "--layers", "2")
LAYOUTS = ("hf", "native")
DTYPES = ("bf16", "f32", "keep")

checks = {}
notes = {}
# The report, rewritten after every check so that a step cut off by its time limit still leaves
# the checks it finished.
doc = {"checks": checks, "notes": notes}
json_path = None


def write_json():
    if json_path:
        with open(json_path + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(json_path + ".tmp", json_path)


def record(name, ok, value, target):
    checks[name] = {"ok": bool(ok), "value": str(value), "target": target}
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {value}", flush=True)
    write_json()


def bits(t):
    """The tensor's bytes as integers, so NaN payloads compare too."""
    import torch

    width = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}[t.element_size()]
    return t.contiguous().view(getattr(torch, width))


def tensor_sha256(t):
    """SHA-256 of the tensor's bytes as loaded (copied to the host where it is on a GPU)."""
    import torch

    host = t.detach().contiguous().cpu().view(torch.uint8).reshape(-1)
    # The bytes straight from the tensor's memory: PyTorch does not need NumPy, so neither does this.
    data = ctypes.string_at(host.data_ptr(), host.numel()) if host.numel() else b""
    return hashlib.sha256(data).hexdigest()


def state_digest(state):
    """The load's digest as docs/cli.md defines it, from the tensors themselves."""
    lines = "".join(f"{name} {tensor_sha256(t)}\n" for name, t in sorted(state.items()))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# The half without a GPU.

def check_module(torch, umload, ckpt, cli):
    record("module imports", hasattr(umload, "load") and hasattr(umload, "__version__"),
           f"umload {getattr(umload, '__version__', '?')} from {umload.__file__}", "umload.load")


def cli_digest(cli, ckpt, layout, dtype):
    out = subprocess.run([cli, "load", ckpt, "--device", "cpu", "--layout", layout, "--dtype", dtype,
                          "--digest", "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["digest"]


def check_cpu_digest(torch, umload, ckpt, cli):
    bad = []
    for layout in LAYOUTS:
        for dtype in DTYPES:
            want = cli_digest(cli, ckpt, layout, dtype)
            state, report = umload.load(ckpt, device="cpu", layout=layout, dtype=dtype, framework="torch",
                                        digest=True, with_report=True)
            if report.get("digest") != want:
                bad.append(f"{layout}/{dtype}: report {report.get('digest')} vs CLI {want}")
            elif state_digest(state) != want:
                bad.append(f"{layout}/{dtype}: the tensors' bytes digest to {state_digest(state)}, CLI {want}")
            del state
    total = len(LAYOUTS) * len(DTYPES)
    record("CPU load digest = CLI digest", not bad,
           f"{total - len(bad)} of {total} equal (report and tensors' bytes)" + (f"; first: {bad[0]}" if bad else ""),
           "2 layouts x 3 dtypes")


def hf_logits(torch, umload, ckpt, device):
    """(umload.hf's logits, transformers' logits) on fixed input ids, both models on `device`."""
    import transformers

    ours = umload.hf.from_pretrained(ckpt, device=device).eval()
    placement = {} if device == "cpu" else {"device_map": device}  # the CPU is transformers' default
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        ckpt, dtype=torch.bfloat16, quantization_config=transformers.Mxfp4Config(dequantize=True),
        **placement).eval()
    devices = {str(p.device) for p in ours.parameters()} | {str(p.device) for p in theirs.parameters()}
    ids = torch.arange(0, 16, device=device).remainder(theirs.config.vocab_size).unsqueeze(0)
    with torch.no_grad():
        a = ours(input_ids=ids).logits
        b = theirs(input_ids=ids).logits
    return a, b, devices


def check_hf(torch, umload, ckpt, device):
    a, b, devices = hf_logits(torch, umload, ckpt, device)
    want = {"cpu"} if device == "cpu" else {str(torch.device("cuda", torch.cuda.current_device()))}
    diff = (a.float() - b.float()).abs().max().item()
    record(f"umload.hf logits = transformers' MXFP4 load ({torch.device(device).type})",
           torch.equal(a, b) and devices == want and bool(torch.isfinite(a).all()),
           f"max |diff| {diff:g} over {tuple(a.shape)}, parameters on {', '.join(sorted(devices))}",
           f"equal, finite, on {', '.join(sorted(want))}")


# ---------------------------------------------------------------------------------------------
# The half on the GPU.

def settle(torch):
    """Everything dropped really gone: Python's references, the device's work, PyTorch's cache."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def torch_segments(torch):
    return [(s["address"], s["address"] + s["total_size"]) for s in torch.cuda.memory_snapshot()]


def check_handover(torch, umload, ckpt):
    dev = torch.device("cuda", torch.cuda.current_device())
    # Warm-up: the decode kernels load at their first launch and the driver maps memory in 2 MiB
    # pieces that it keeps; what stays after this load is not the measured load's.
    settle(torch)
    before_warm = torch.cuda.mem_get_info()[0]
    warm = umload.load(ckpt, device=f"cuda:{dev.index}", framework="torch")
    del warm
    settle(torch)
    free0 = torch.cuda.mem_get_info()[0]
    notes["warm-up load kept"] = f"{(before_warm - free0) / 1e6:.1f} MB (kernels, driver pieces)"
    print(f"warm-up load kept {(before_warm - free0) / 1e6:.1f} MB", flush=True)

    allocated0 = torch.cuda.memory_allocated()
    sd = umload.load(ckpt, device=f"cuda:{dev.index}", framework="torch")
    free1 = torch.cuda.mem_get_info()[0]
    nbytes = sum(t.numel() * t.element_size() for t in sd.values())
    devices = {str(t.device) for t in sd.values()}
    record("tensors on the GPU asked for", devices == {str(dev)}, ", ".join(sorted(devices)), str(dev))
    segments = torch_segments(torch)
    inside = [n for n, t in sd.items() if any(a <= t.data_ptr() < b for a, b in segments)]
    moved = torch.cuda.memory_allocated() - allocated0
    record("no copy: none in PyTorch's allocator", moved == 0 and not inside,
           f"allocator moved {moved} B, {len(inside)} tensors in its segments", "0 B, 0 tensors")
    ptrs = {t.data_ptr() for t in sd.values()}
    record("no copy: distinct umload pointers", len(ptrs) == len(sd) and 0 not in ptrs,
           f"{len(ptrs)} pointers for {len(sd)} tensors", "one each")
    record("GPU memory taken on arrival", free0 - free1 >= nbytes,
           f"{(free0 - free1) / 1e6:.1f} MB for {nbytes / 1e6:.1f} MB of tensors", ">= tensors' bytes")
    del sd
    settle(torch)
    free2 = torch.cuda.mem_get_info()[0]
    record("GPU memory back when the tensors go", free2 >= free0 - (1 << 20),
           f"{(free0 - free2) / 1e6:.1f} MB still taken (after a warm-up load)", "<= 1 MB")


def check_equal(torch, umload, ckpt):
    bad = []
    count = 0
    side = torch.cuda.Stream()
    for layout in LAYOUTS:
        for dtype in DTYPES:
            cpu = umload.load(ckpt, device="cpu", layout=layout, dtype=dtype, framework="torch")
            gpu = umload.load(ckpt, device="cuda", layout=layout, dtype=dtype, framework="torch")
            if set(cpu) != set(gpu):
                bad.append(f"{layout}/{dtype}: names differ")
                continue
            for name, t in gpu.items():
                count += 1
                # No synchronization first: the tensors must be complete when they arrive.
                same = t.dtype == cpu[name].dtype and t.shape == cpu[name].shape and torch.equal(
                    bits(t).cpu(), bits(cpu[name]))
                with torch.cuda.stream(side):
                    same = same and torch.equal(bits(t), bits(cpu[name]).to(t.device, non_blocking=False))
                torch.cuda.current_stream().wait_stream(side)
                if not same:
                    bad.append(f"{layout}/{dtype}: {name}")
            del cpu, gpu
    record("GPU load = CPU load bit for bit", not bad,
           f"{count - len(bad)} of {count} tensors equal" + (f"; first: {bad[0]}" if bad else ""),
           "2 layouts x 3 dtypes")


# ---------------------------------------------------------------------------------------------

def run_checks(steps, *args):
    for name, check in steps:
        try:
            check(*args)
        except Exception as e:  # one failed check must not hide the others
            traceback.print_exc()
            record(name, False, f"{type(e).__name__}: {e}"[:300], "no exception")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--umload", required=True, help="the umload CLI")
    ap.add_argument("--work", required=True, help="scratch folder (emptied first)")
    ap.add_argument("--json", help="write each check's result here")
    ap.add_argument("--cpu-only", action="store_true", help="only the checks that need no GPU")
    args = ap.parse_args()
    global json_path
    json_path = args.json
    mode = "cpu-only" if args.cpu_only else "gpu"
    doc.update(mode=mode, python=sys.executable,
               offline={k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")})
    try:
        import torch
        import umload
    except ImportError as e:
        record("module imports", False, f"{type(e).__name__}: {e}", "torch and umload import")
        return 1
    doc.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), umload from {umload.__file__} ({mode})")

    ckpt = os.path.join(args.work, "tiny")
    subprocess.run(["rm", "-rf", args.work], check=True)
    os.makedirs(args.work)
    subprocess.run([args.umload, "synth", "--preset", "tiny", *SYNTH_ARGS, "--out", ckpt], check=True,
                   stdout=subprocess.DEVNULL)
    run_checks([("module imports", check_module), ("CPU load digest = CLI digest", check_cpu_digest)],
               torch, umload, ckpt, args.umload)
    if args.cpu_only:
        run_checks([("umload.hf logits (cpu)", check_hf)], torch, umload, ckpt, "cpu")
    elif not torch.cuda.is_available():
        record("torch sees a GPU", False, "torch.cuda.is_available() is False", "True")
    else:
        doc["card"] = torch.cuda.get_device_name()
        run_checks([("hand-over", check_handover), ("GPU load = CPU load", check_equal)], torch, umload, ckpt)
        run_checks([("umload.hf logits (cuda)", check_hf)], torch, umload, ckpt, "cuda")
    write_json()
    return 0 if checks and all(c["ok"] for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
