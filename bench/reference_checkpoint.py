#!/usr/bin/python3
"""Loads a whole GPT-OSS checkpoint the way the reference loaders do (HF transformers'
convert_moe_packed_tensors, NeMo Automodel): every tensor read into memory, every MXFP4 pair
decoded a whole tensor at a time with the BF16 LUT / int64 index / ldexp / transpose-contiguous
steps of bench/reference_hf.py, all results kept, as a state dict is. Prints one JSON object:
seconds, bytes produced, GB/s, peak RSS, and (with --digest) the same per-tensor SHA-256 digests
`umload load --digest --json` prints, so the two outputs can be compared bit for bit.

    /usr/bin/python3 bench/reference_checkpoint.py CKPT_DIR [--threads N] [--digest]

Run with Debian's /usr/bin/python3 (python3-torch).
"""
import argparse
import hashlib
import json
import os
import resource
import struct
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_hf import convert_moe_packed_tensors  # noqa: E402

DTYPES = {"BF16": torch.bfloat16, "U8": torch.uint8, "F32": torch.float32, "F16": torch.float16,
          "I8": torch.int8, "I32": torch.int32, "I64": torch.int64}


def read_shard(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        t = torch.frombuffer(data, dtype=DTYPES[entry["dtype"]], count=(end - begin) //
                             torch.tensor([], dtype=DTYPES[entry["dtype"]]).element_size(),
                             offset=begin) if end > begin else torch.empty(0, dtype=DTYPES[entry["dtype"]])
        tensors[name] = t.reshape(entry["shape"])
    return tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--digest", action="store_true")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    index = json.load(open(os.path.join(args.checkpoint, "model.safetensors.index.json")))
    raw = {}
    for shard in sorted(set(index["weight_map"].values())):
        raw.update(read_shard(os.path.join(args.checkpoint, shard)))
    state = {}
    for name in sorted(raw):
        if name.endswith("_scales"):
            continue
        if name.endswith("_blocks"):
            base = name[: -len("_blocks")]
            state[base] = convert_moe_packed_tensors(raw[name], raw[base + "_scales"])
        else:
            state[name] = raw[name]
    seconds = time.perf_counter() - start
    produced = sum(t.numel() * t.element_size() for t in state.values())
    result = {
        "algorithm": "reference loader: whole tensors, BF16 LUT, int64 indexes, ldexp, transpose.contiguous",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "seconds": seconds,
        "bytes_produced": produced,
        "output_gb_per_s": produced / seconds / 1e9,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if args.digest:
        lines = []
        for name in sorted(state):
            t = state[name].contiguous()
            h = hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bfloat16 else
                               t.view(torch.int16).numpy().tobytes()).hexdigest()
            lines.append(f"{name} {h}\n")
        result["digest"] = "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
