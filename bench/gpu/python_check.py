"""The Python step of the GPU check: umload's module under the GPU machine's own PyTorch.

Usage: python_check.py --umload BUILD/umload --work DIR [--json FILE]   (PYTHONPATH names the module)

Checks, on a small synthetic checkpoint (`umload synth --preset tiny`):
- every tensor of `umload.load(..., device="cuda")` is a torch CUDA tensor on the GPU asked for,
  handed over through DLPack without a copy: PyTorch's allocator holds none of it (its allocated
  bytes do not move and no tensor lies in one of its segments), the GPU's free memory drops by at
  least the tensors' bytes when they arrive and comes back when the last one goes;
- the tensors are complete when they arrive: compared on PyTorch's current stream and on a second
  stream, with no synchronization, each equals the CPU load bit for bit (both layouts, every dtype);
- where the package has `umload.hf.from_pretrained`, its GPU model gives the logits of
  transformers' own MXFP4 loading (dequantized to BF16) of the same checkpoint on the same GPU.
Exits 1 when a check fails; the results go to --json for the table.
"""
import argparse
import gc
import importlib
import inspect
import json
import subprocess
import sys
import traceback

checks = {}


def record(name, ok, value, target):
    checks[name] = {"ok": bool(ok), "value": str(value), "target": target}
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {value}")


def bits(t):
    """The tensor's bytes as integers, so NaN payloads compare too."""
    width = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}[t.element_size()]
    import torch

    return t.contiguous().view(getattr(torch, width))


def torch_segments(torch):
    return [(s["address"], s["address"] + s["total_size"]) for s in torch.cuda.memory_snapshot()]


def check_handover(torch, umload, ckpt):
    dev = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.synchronize()
    allocated0 = torch.cuda.memory_allocated()
    free0 = torch.cuda.mem_get_info()[0]
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
    gc.collect()
    torch.cuda.synchronize()
    free2 = torch.cuda.mem_get_info()[0]
    record("GPU memory back when the tensors go", free2 >= free0 - (1 << 20),
           f"{(free0 - free2) / 1e6:.1f} MB still taken", "<= 1 MB")


def check_equal(torch, umload, ckpt):
    bad = []
    count = 0
    side = torch.cuda.Stream()
    for layout in ("hf", "native"):
        for dtype in ("bf16", "f32", "keep"):
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


def check_hf(torch, umload, ckpt):
    try:
        hf = importlib.import_module("umload.hf")
    except ImportError:
        hf = getattr(umload, "hf", None)
    if hf is None or not hasattr(hf, "from_pretrained"):
        print("umload.hf.from_pretrained is not in this build: the logits check does not apply")
        return
    import transformers

    params = inspect.signature(hf.from_pretrained).parameters
    kwargs = {}
    if "device" in params:
        kwargs["device"] = "cuda"
    elif "device_map" in params:
        kwargs["device_map"] = "cuda"
    ours = hf.from_pretrained(ckpt, **kwargs).eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        ckpt, dtype=torch.bfloat16, device_map="cuda",
        quantization_config=transformers.Mxfp4Config(dequantize=True)).eval()
    vocab = theirs.config.vocab_size
    ids = torch.arange(0, 16, device="cuda").remainder(vocab).unsqueeze(0)
    with torch.no_grad():
        a = ours(input_ids=ids).logits
        b = theirs(input_ids=ids).logits
    diff = (a.float() - b.float()).abs().max().item()
    record("umload.hf logits = transformers' MXFP4 load", torch.equal(a, b),
           f"max |diff| {diff:g} over {tuple(a.shape)}", "equal")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--umload", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch
    import umload

    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), umload from {umload.__file__}")
    if not torch.cuda.is_available():
        record("torch sees a GPU", False, "torch.cuda.is_available() is False", "True")
    else:
        ckpt = f"{args.work}/tiny"
        subprocess.run(["rm", "-rf", args.work], check=True)
        subprocess.run([args.umload, "synth", "--preset", "tiny", "--out", ckpt], check=True,
                       stdout=subprocess.DEVNULL)
        for check in (check_handover, check_equal, check_hf):
            try:
                check(torch, umload, ckpt)
            except Exception as e:  # one failed check must not hide the others
                traceback.print_exc()
                record(check.__name__, False, f"{type(e).__name__}: {e}"[:200], "no exception")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checks": checks}, f, indent=1)
    return 0 if checks and all(c["ok"] for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
