#!/usr/bin/python3
"""The reference MXFP4 -> BF16 algorithm of HF transformers' convert_moe_packed_tensors and NeMo
Automodel, written from the published facts (docs/formats.md), timed
on the same synthetic data as bench/bench_decode.cpp.

Steps, as those loaders take them: a BF16 lookup table of the 16 FP4 values; the blocks and
scales flattened to rows; per chunk of rows, int64 nibble indexes (low nibble first) into the
table, then ldexp by int32 exponents (scale - 127) in place; a reshape to [E, rows, in]; and
transpose(1, 2).contiguous() to HF's [E, in, rows], a second full copy.

Run with Debian's interpreter, which has python3-torch:
    /usr/bin/python3 bench/reference_hf.py --experts 4 --rows 5760 --groups 90 --repeats 3
prints one JSON object: median seconds, GB/s of BF16 output, peak RSS (ru_maxrss).
    build/bench/bench_decode dump 1 5760 90 /tmp/hf.bin
    /usr/bin/python3 bench/reference_hf.py --experts 1 --rows 5760 --groups 90 --check /tmp/hf.bin
also compares the reference output with umload's, bit for bit.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch

FP4_VALUES = [+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
              -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def synthetic(experts, rows, groups):
    """The data bench_decode.cpp generates: a 32-bit multiplicative hash of each byte's index."""
    count = experts * rows * groups
    i = torch.arange(count * 16, dtype=torch.int64)
    blocks = (((i * 2654435761) & 0xFFFFFFFF) >> 24).to(torch.uint8)
    j = torch.arange(count, dtype=torch.int64)
    scales = (119 + (((j * 2246822519) & 0xFFFFFFFF) >> 28)).to(torch.uint8)
    return blocks.reshape(experts, rows, groups, 16), scales.reshape(experts, rows, groups)


def convert_moe_packed_tensors(blocks, scales, dtype=torch.bfloat16, rows_per_chunk=32768 * 1024):
    scales = scales.to(torch.int32) - 127
    lut = torch.tensor(FP4_VALUES, dtype=dtype, device=blocks.device)
    *prefix_shape, groups, block_bytes = blocks.shape
    rows_total = 1
    for d in prefix_shape:
        rows_total *= d
    rows_total *= groups
    blocks = blocks.reshape(rows_total, block_bytes)
    scales = scales.reshape(rows_total, 1)
    out = torch.empty(rows_total, block_bytes * 2, dtype=dtype, device=blocks.device)
    for r0 in range(0, rows_total, rows_per_chunk):
        r1 = min(r0 + rows_per_chunk, rows_total)
        blk = blocks[r0:r1]
        exp = scales[r0:r1]
        idx_lo = (blk & 0x0F).to(torch.long)
        idx_hi = (blk >> 4).to(torch.long)
        sub = out[r0:r1]
        sub[:, 0::2] = lut[idx_lo]
        sub[:, 1::2] = lut[idx_hi]
        torch.ldexp(sub, exp, out=sub)
        del idx_lo, idx_hi, blk, exp
    out = out.reshape(*prefix_shape, groups, block_bytes * 2).view(*prefix_shape, groups * block_bytes * 2)
    return out.transpose(1, 2).contiguous()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--rows", type=int, default=5760)
    parser.add_argument("--groups", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--check", help="raw hf BF16 output of `bench_decode dump` to compare with")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    blocks, scales = synthetic(args.experts, args.rows, args.groups)
    seconds = []
    out = None
    for _ in range(args.repeats):
        out = None
        start = time.perf_counter()
        out = convert_moe_packed_tensors(blocks, scales)
        seconds.append(time.perf_counter() - start)
    out_bytes = out.numel() * out.element_size()
    median = statistics.median(seconds)
    result = {
        "algorithm": "hf convert_moe_packed_tensors (BF16 LUT, int64 indexes, ldexp, transpose.contiguous)",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "shape": [args.experts, args.rows, args.groups],
        "out_bytes": out_bytes,
        "seconds": seconds,
        "median_seconds": median,
        "gb_per_s": out_bytes / median / 1e9,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if args.check:
        with open(args.check, "rb") as f:
            theirs = torch.frombuffer(bytearray(f.read()), dtype=torch.int16)
        ours = out.contiguous().view(torch.int16).reshape(-1)
        if theirs.numel() != ours.numel():
            result["check"] = f"size differs: {theirs.numel()} vs {ours.numel()} values"
        else:
            diff = (theirs != ours).nonzero()
            result["check"] = "bit-identical" if diff.numel() == 0 else \
                f"{diff.numel()} values differ, first at {int(diff[0])}"
    print(json.dumps(result))
    return 0 if result.get("check", "bit-identical") == "bit-identical" else 1


if __name__ == "__main__":
    sys.exit(main())
