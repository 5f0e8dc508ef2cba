"""One rank of tests/python/test_torchrun.py's DTensor case, started by torchrun: builds a 1-D
CPU device mesh over every rank, loads with umload.load(..., device_mesh=mesh) and checks on
each rank that every value is a DTensor placed as it should be (expert tensors Shard(0), every
other tensor Replicate()), that each local expert shard is this rank's slice only, and that
full_tensor() equals an unsharded load bit for bit. Writes RESULT_DIR/rank<R>.json."""
import datetime
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard

import umload


def same_bits(a, b):
    """Equal dtype, shape and bit patterns (NaN payloads and signed zeros included)."""
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    narrow = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.contiguous().view(narrow), b.contiguous().view(narrow))


ckpt, result_dir = sys.argv[1], sys.argv[2]
names = sys.argv[3] if len(sys.argv) > 3 else "hf"
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
timeout = datetime.timedelta(seconds=float(os.environ.get("UMLOAD_RENDEZVOUS_TIMEOUT_S", "60")))
dist.init_process_group("gloo", timeout=timeout)
mesh = init_device_mesh("cpu", (world,), mesh_dim_names=("ep",))

state, report = umload.load(ckpt, device="cpu", device_mesh=mesh, names=names, with_report=True)
whole = umload.load(ckpt, device="cpu", rank=0, world_size=1, names=names)
result = {"rank": rank, "world_size": world, "tensors": len(state), "names": sorted(state),
          "not_dtensor": [], "wrong_placement": [], "wrong_local": [], "mismatched": [],
          "sharded": 0, "replicated": 0, "quantized_bytes": report["quantized_bytes"]}
for name in sorted(state):
    t = state[name]
    if not isinstance(t, DTensor):
        result["not_dtensor"].append(name)
        continue
    expert = ".mlp.experts." in name
    want = (Shard(0),) if expert else (Replicate(),)
    if tuple(t.placements) != want or t.device_mesh != mesh:
        result["wrong_placement"].append(name)
    local = t.to_local()
    full = whole[name]
    if expert:
        result["sharded"] += 1
        e = full.shape[0] // world
        if not same_bits(local, full[rank * e:(rank + 1) * e]):
            result["wrong_local"].append(name)
    else:
        result["replicated"] += 1
    gathered = t.full_tensor()  # a collective: every rank calls it for every tensor, in order
    if not same_bits(gathered, full):
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
