"""One rank of tests/python/test_torchrun.py, started by torchrun: loads its expert slice with
umload's defaults (RANK, WORLD_SIZE, LOCAL_RANK from torchrun), gathers every rank's slice of
each expert tensor over a gloo process group, and on rank 0 compares the gathered whole with an
unsharded load of the same checkpoint. Each rank writes RESULT_DIR/rank<R>.json."""
import datetime
import json
import os
import sys

import torch
import torch.distributed as dist
import umload


def raw_bits(t):
    """The tensor's bit patterns widened to int32: gloo gathers neither bfloat16 nor int16, and
    comparing bits (not values) keeps NaN payloads and signed zeros exact."""
    narrow = {1: torch.int8, 2: torch.int16, 4: torch.int32}[t.element_size()]
    return t.contiguous().view(narrow).to(torch.int32)


ckpt, result_dir = sys.argv[1], sys.argv[2]
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
timeout = datetime.timedelta(seconds=float(os.environ.get("UMLOAD_RENDEZVOUS_TIMEOUT_S", "60")))
dist.init_process_group("gloo", timeout=timeout)

mine = umload.load(ckpt, device="cpu", framework="torch")  # rank and world size from torchrun
result = {"rank": rank, "world_size": world, "tensors": len(mine), "experts": {}, "compared": 0,
          "mismatched": []}
whole = umload.load(ckpt, device="cpu", framework="torch", rank=0, world_size=1) if rank == 0 else None
for name in sorted(mine):
    t = mine[name]
    if ".mlp.experts." not in name:
        continue
    result["experts"][name] = t.shape[0]
    bits = raw_bits(t)
    parts = [torch.empty_like(bits) for _ in range(world)]
    dist.all_gather(parts, bits)
    if whole is not None:
        result["compared"] += 1
        if not torch.equal(torch.cat(parts), raw_bits(whole[name])):
            result["mismatched"].append(name)

dist.barrier()
dist.destroy_process_group()
with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
    json.dump(result, f)
# torch 2.11's gloo worker threads can still free a finished collective's tensors while the
# interpreter shuts down, and that aborts the process ("terminate called without an active
# exception", seen in ProcessGroupGloo::runLoop; pytorch/pytorch PR 179291 describes it). Leaving
# without the interpreter's shutdown avoids the race.
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
