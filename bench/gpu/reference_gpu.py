#!/usr/bin/env python3
"""The reference a GPU load is measured against: HF transformers' MXFP4 dequantization algorithm,
rewritten here from its published steps, run with this machine's PyTorch on the GPU.

Steps per expert tensor (as HF's convert_moe_packed_tensors takes them): a BF16 lookup table of the
16 FP4 values; the low and high nibbles of every byte as int64 indexes into it; torch.ldexp by
scale - 127; then transpose(1, 2).contiguous() to the [E, in, out] layout.

Measured:
  seconds          loading the whole checkpoint as HF would: every tensor from its safetensors shard
                   to the GPU, expert pairs dequantized there, all outputs kept (what a model holds).
  kernel_gbps      the dequantization alone of one layer's gate_up tensor already on the GPU,
                   (input bytes + output bytes) / median time of 5 runs.
  peak_device_bytes  torch.cuda.max_memory_allocated() over the whole load.

Usage: reference_gpu.py CHECKPOINT_DIR [--json FILE] [--layers N]
"""
import argparse
import json
import os
import sys
import time

import struct

import torch

# The same steps as the CPU reference (bench/reference_hf.py), run on whatever device the tensors
# are on.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from reference_hf import convert_moe_packed_tensors as dequantize_hf_steps  # noqa: E402
from reference_checkpoint import DTYPES  # noqa: E402


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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


try:
    from safetensors import safe_open
    READER = "safetensors.safe_open"
except ImportError:
    safe_open = plain_shard
    READER = "os.pread (no safetensors package)"


def read_weight_map(ckpt):
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            return json.load(f)["weight_map"]
    single = os.path.join(ckpt, "model.safetensors")
    with safe_open(single, framework="pt") as f:
        return {name: "model.safetensors" for name in f.keys()}


def load_like_hf(ckpt, device):
    """Every tensor to the GPU; expert pairs dequantized there. Returns (tensors, seconds)."""
    weight_map = read_weight_map(ckpt)
    handles = {}

    def handle(name):
        shard = weight_map[name]
        if shard not in handles:
            handles[shard] = safe_open(os.path.join(ckpt, shard), framework="pt", device=device)
        return handles[shard]

    tensors = {}
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for name in sorted(weight_map):
        if name.endswith("_scales"):
            continue
        if name.endswith("_blocks"):
            base = name[: -len("_blocks")]
            blocks = handle(name).get_tensor(name)
            scales = handle(base + "_scales").get_tensor(base + "_scales")
            tensors[base] = dequantize_hf_steps(blocks, scales)
            del blocks, scales
        else:
            tensors[name] = handle(name).get_tensor(name)
    torch.cuda.synchronize()
    return tensors, time.perf_counter() - t0


def kernel_bandwidth(ckpt, device):
    """GB/s of the dequantization alone, on the first gate_up pair found, inputs on the GPU."""
    weight_map = read_weight_map(ckpt)
    names = sorted(n for n in weight_map if n.endswith("gate_up_proj_blocks"))
    if not names:
        return None, None
    name = names[0]
    base = name[: -len("_blocks")]
    with safe_open(os.path.join(ckpt, weight_map[name]), framework="pt", device=device) as f:
        blocks = f.get_tensor(name)
    with safe_open(os.path.join(ckpt, weight_map[base + "_scales"]), framework="pt", device=device) as f:
        scales = f.get_tensor(base + "_scales")
    out = dequantize_hf_steps(blocks, scales)  # warm-up
    moved = blocks.numel() + scales.numel() + out.numel() * out.element_size()
    del out
    times = []
    for _ in range(5):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = dequantize_hf_steps(blocks, scales)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
        del out
    times.sort()
    return moved / times[len(times) // 2] / 1e9, list(blocks.shape)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("reference_gpu: no CUDA device visible to PyTorch; nothing measured")
        return
    device = "cuda:0"
    result = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__, "reader": READER}

    gbps, shape = kernel_bandwidth(args.checkpoint, device)
    result["kernel_gbps"] = gbps
    result["kernel_shape"] = shape
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()

    tensors, seconds = load_like_hf(args.checkpoint, device)
    result["seconds"] = seconds
    result["tensors"] = len(tensors)
    result["bytes_produced"] = sum(t.numel() * t.element_size() for t in tensors.values())
    result["peak_device_bytes"] = torch.cuda.max_memory_allocated()
    del tensors
    torch.cuda.empty_cache()

    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
