#!/usr/bin/env python3
"""The reference a GPU load is measured against: HF transformers' MXFP4 dequantization algorithm,
rewritten here from its published steps, run with this machine's PyTorch on the GPU.

Steps per expert tensor (as HF's convert_moe_packed_tensors takes them): a BF16 lookup table of the
16 FP4 values; the low and high nibbles of every byte as int64 indexes into it; torch.ldexp by
scale - 127; then transpose(1, 2).contiguous() to the [E, in, out] layout.

Timed the way umload's load is (bench/gpu_check.sh's load step): from the start of the load, its
allocations included (every device tensor is allocated inside the timed span), --runs times
(default 2, as the load step), with the same page-cache state before each run (the shards read
through once, or nothing where they are on a tmpfs such as /dev/shm), every run reported and the
best counted.

Measured, per run:
  seconds          the whole checkpoint as HF would load it: every tensor read from its shard,
                   moved to the GPU, expert pairs dequantized there, all outputs kept (what a model
                   holds), up to torch.cuda.synchronize().
  read_seconds     reading the tensors from the shards into host memory (safetensors' safe_open
                   get_tensor on the CPU, which is what safe_open(device="cuda") does first);
  copy_seconds     .to(device): the device allocation and the host-to-device copy;
  dequant_seconds  the dequantization on the device, its allocations and temporaries included.
                   Each part ends with a synchronize, so the parts add up to about `seconds`.
  peak_device_bytes  torch.cuda.max_memory_allocated() over the load (reset before each run).
And once:
  kernel_gbps      the dequantization alone of one layer's gate_up tensor already on the GPU,
                   (input bytes + output bytes) / median time of 5 runs.

Usage: reference_gpu.py CHECKPOINT_DIR [--json FILE] [--runs N] [--device cuda|cpu] [--reader auto|pread]
(--device cpu: the same code on the CPU, to check it where there is no GPU.)
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

# The same steps as the CPU reference (bench/reference_hf.py), run on whatever device the tensors
# are on; the page-cache preparation is the peers step's (peers.py, beside this file).
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
from reference_hf import convert_moe_packed_tensors as dequantize_hf_steps  # noqa: E402
from reference_checkpoint import DTYPES  # noqa: E402
from peers import shards, warm_page_cache  # noqa: E402


class plain_shard:
    """safe_open's interface (keys, get_tensor, with) over os.pread, one tensor at a time, for
    machines whose PyTorch comes without the safetensors package."""

    def __init__(self, path, framework="pt", device="cpu"):
        assert framework == "pt"
        self.path, self.device = path, device
        self.fd = os.open(path, os.O_RDONLY)
        (n,) = struct.unpack("<Q", os.pread(self.fd, 8, 0))
        self.header = json.loads(os.pread(self.fd, n, 8))
        self.header.pop("__metadata__", None)
        self.data_start = 8 + n

    def keys(self):
        return list(self.header)

    def get_tensor(self, name):
        entry = self.header[name]
        begin, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        if end == begin:
            return torch.empty(entry["shape"], dtype=dtype, device=self.device)
        buf = bytearray(end - begin)
        view, got = memoryview(buf), 0
        while got < len(buf):  # one pread returns at most about 2 GiB
            n = os.preadv(self.fd, [view[got:]], self.data_start + begin + got)
            if n <= 0:
                raise OSError(f"{self.path}: short read of {name}")
            got += n
        return torch.frombuffer(buf, dtype=dtype).reshape(entry["shape"]).to(self.device)

    def close(self):
        os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


try:
    from safetensors import safe_open
    READER = "safetensors.safe_open"
except ImportError:
    safe_open = plain_shard
    READER = "os.pread (no safetensors package)"


def use_plain_reader():
    """--reader pread: the reader of machines without safetensors, chosen where it is there."""
    global safe_open, READER
    safe_open, READER = plain_shard, "os.pread (--reader pread)"


def read_weight_map(ckpt):
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            return json.load(f)["weight_map"]
    single = os.path.join(ckpt, "model.safetensors")
    with safe_open(single, framework="pt") as f:
        return {name: "model.safetensors" for name in f.keys()}


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class part_clock:
    """Seconds per part of a load; each part ends with a synchronize of the device."""

    def __init__(self, device):
        self.device = device
        self.seconds = {}

    def run(self, part, fn, *args):
        t0 = time.perf_counter()
        value = fn(*args)
        synchronize(self.device)
        self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - t0
        return value


def load_like_hf(ckpt, device):
    """Every tensor to the device, expert pairs dequantized there. Returns (tensors, seconds,
    {part: seconds}); the seconds start before the first file is opened."""
    synchronize(device)
    t0 = time.perf_counter()
    clock = part_clock(device)
    weight_map = read_weight_map(ckpt)
    handles = {}

    def read(name):
        shard = weight_map[name]
        if shard not in handles:
            handles[shard] = safe_open(os.path.join(ckpt, shard), framework="pt", device="cpu")
        return handles[shard].get_tensor(name)

    def fetch(name):
        host = clock.run("read_seconds", read, name)
        return clock.run("copy_seconds", host.to, device)

    tensors = {}
    for name in sorted(weight_map):
        if name.endswith("_scales"):
            continue
        if name.endswith("_blocks"):
            base = name[: -len("_blocks")]
            blocks, scales = fetch(name), fetch(base + "_scales")
            tensors[base] = clock.run("dequant_seconds", dequantize_hf_steps, blocks, scales)
            del blocks, scales
        else:
            tensors[name] = fetch(name)
    synchronize(device)
    seconds = time.perf_counter() - t0
    for handle in handles.values():
        if hasattr(handle, "close"):
            handle.close()
    return tensors, seconds, clock.seconds


def kernel_bandwidth(ckpt, device, repeats=5):
    """GB/s of the dequantization alone, on the first gate_up pair found, inputs on the device."""
    weight_map = read_weight_map(ckpt)
    names = sorted(n for n in weight_map if n.endswith("gate_up_proj_blocks"))
    if not names:
        return None, None
    name = names[0]
    base = name[: -len("_blocks")]
    with safe_open(os.path.join(ckpt, weight_map[name]), framework="pt", device="cpu") as f:
        blocks = f.get_tensor(name).to(device)
    with safe_open(os.path.join(ckpt, weight_map[base + "_scales"]), framework="pt", device="cpu") as f:
        scales = f.get_tensor(base + "_scales").to(device)
    out = dequantize_hf_steps(blocks, scales)  # warm-up
    moved = blocks.numel() + scales.numel() + out.numel() * out.element_size()
    del out
    cuda = torch.device(device).type == "cuda"
    times = []
    for _ in range(repeats):
        if cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = dequantize_hf_steps(blocks, scales)
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
        else:
            t0 = time.perf_counter()
            out = dequantize_hf_steps(blocks, scales)
            times.append(time.perf_counter() - t0)
        del out
    times.sort()
    return moved / times[len(times) // 2] / 1e9, list(blocks.shape)


def release(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def write_json(path, result):
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(result, f, indent=2)
        os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--json", help="write the results to this file (rewritten after every run)")
    parser.add_argument("--runs", type=int, default=2, help="timed loads (default 2); the best counts")
    parser.add_argument("--device", default="cuda:0", help="cuda:0 (default) or cpu (a check of this script)")
    parser.add_argument("--reader", choices=("auto", "pread"), default="auto",
                        help="auto: safetensors' safe_open where installed, else os.pread; pread: os.pread")
    args = parser.parse_args()
    if args.reader == "pread":
        use_plain_reader()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    device = args.device
    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        print("reference_gpu: no CUDA device visible to PyTorch; nothing measured")
        return 1
    result = {
        "card": torch.cuda.get_device_name(device) if cuda else "cpu",
        "device": device,
        "torch": torch.__version__,
        "reader": READER,
        "timed_from": "the start of the load (before the first shard is opened), allocations included, "
                      "to a synchronize after the last tensor",
        "statistic": f"every run, and the best (lowest seconds) of {args.runs}",
        "runs": [],
    }

    gbps, shape = kernel_bandwidth(args.checkpoint, device)
    result["kernel_gbps"] = gbps
    result["kernel_shape"] = shape
    release(device)
    write_json(args.json, result)

    for run in range(1, args.runs + 1):
        page_cache = warm_page_cache(shards(args.checkpoint))
        release(device)
        try:
            tensors, seconds, parts = load_like_hf(args.checkpoint, device)
        except Exception as e:  # an out-of-memory on the GPU, say: the runs before it stay
            result["runs"].append({"run": run, "error": f"{type(e).__name__}: {e}"[:400]})
            write_json(args.json, result)
            raise
        row = {"run": run, "seconds": round(seconds, 4), "page_cache": page_cache}
        row.update({part: round(s, 4) for part, s in parts.items()})
        row["tensors"] = len(tensors)
        row["bytes_produced"] = sum(t.numel() * t.element_size() for t in tensors.values())
        row["peak_device_bytes"] = torch.cuda.max_memory_allocated(device) if cuda else None
        del tensors
        release(device)
        result["runs"].append(row)
        print(f"reference run {run}: {seconds:.2f} s (read {parts.get('read_seconds', 0):.2f}, copy "
              f"{parts.get('copy_seconds', 0):.2f}, dequant {parts.get('dequant_seconds', 0):.2f}); "
              f"{page_cache}", flush=True)
        # The best run so far, at the top level, where the table reads it.
        best = min(result["runs"], key=lambda r: r["seconds"])
        result.update({k: v for k, v in best.items() if k not in ("run", "page_cache")})
        result["best_run"] = best["run"]
        write_json(args.json, result)

    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
