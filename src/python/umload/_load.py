"""umload.load: the extension's load, plus the names other frameworks use and DTensor output."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from . import _core
from ._names import rename

EXPERT_MARK = ".mlp.experts."


def load(path, *, device: str = "auto", layout: str = "hf", dtype: str = "bf16",
         rank: Optional[int] = None, world_size: Optional[int] = None,
         progress: Optional[Callable[[int, int, int, int], Any]] = None,
         profile: Optional[str] = None, threads: int = 0, digest: bool = False,
         framework: str = "auto", with_report: bool = False, names: str = "hf",
         device_mesh: Any = None):
    """Load a checkpoint; returns {name: tensor} (or (state_dict, report) with with_report).

    device: "auto" (CUDA when usable, else CPU), "cpu", "cuda" (the GPU UMLOAD_DEVICE or
    LOCAL_RANK names, else 0) or "cuda:N". layout: "hf" (experts [E, in, out], what transformers
    and NeMo Automodel hold) or "native" ([E, out, in], as stored). dtype: "bf16", "f32" or
    "keep" (MXFP4 blocks and scales as stored). rank, world_size: the expert-parallel slice
    (default: RANK and WORLD_SIZE from the environment, as torchrun sets them). progress: called as
    progress(bytes_done, bytes_total, tensors_done, tensors_total). profile: plan as on a built-in
    machine profile (umload.profiles()); default UMLOAD_PROFILE, else this machine. threads: decode
    threads (0: the plan's). digest: add a SHA-256 digest of the output to the report.
    framework: "auto" (torch when importable, else numpy), "torch" or "numpy". names: "hf"
    (transformers' names) or "nemo" (NeMo Automodel's GPT-OSS names: mlp.router -> mlp.gate,
    experts.gate_up_proj -> experts.gate_and_up_projs, experts.down_proj -> experts.down_projs).
    device_mesh: a 1-D torch.distributed DeviceMesh; each rank loads its expert slice and gets
    DTensors: expert tensors Shard(0) over the mesh, every other tensor Replicate().

    Raises a umload.Error subclass (FormatError, IoError, CudaError, BudgetError, UsageError, ...).
    """
    if names not in ("hf", "nemo"):
        raise _core.UsageError("names '%s' (expected hf or nemo)" % names)
    if device_mesh is not None:
        if rank is not None or world_size is not None:
            raise _core.UsageError("pass either device_mesh or rank/world_size, not both")
        if framework == "numpy":
            raise _core.UsageError("device_mesh gives DTensors, which need framework torch")
        if device_mesh.ndim != 1:
            raise _core.UsageError("device_mesh must be 1-D (the expert-parallel dimension); got %d-D: "
                                   "pass the expert-parallel sub-mesh, e.g. mesh[\"ep\"]" % device_mesh.ndim)
        rank, world_size, framework = device_mesh.get_local_rank(), device_mesh.size(), "torch"
    result = _core.load(path, device=device, layout=layout, dtype=dtype, rank=rank,
                        world_size=world_size, progress=progress, profile=profile, threads=threads,
                        digest=digest, framework=framework, with_report=with_report)
    state, report = result if with_report else (result, None)
    if device_mesh is not None:
        state = _distribute(state, device_mesh)
    if names != "hf":
        state = rename(state, names)
    return (state, report) if with_report else state


def _distribute(state: Dict[str, Any], mesh) -> Dict[str, Any]:
    """Each rank's tensors as DTensors over `mesh`: its expert slice as the local shard of the
    whole (Shard(0)), every other tensor as a replica. No data moves: DTensor.from_local with
    run_check=False only records placement; shapes are checked here instead (umload gave every rank
    an equal slice)."""
    from torch.distributed.tensor import DTensor, Replicate, Shard
    out = {}
    world = mesh.size()
    for name, t in state.items():
        if EXPERT_MARK in name:
            shape = (t.shape[0] * world, *t.shape[1:])
            out[name] = DTensor.from_local(t, mesh, [Shard(0)], run_check=False, shape=shape,
                                           stride=t.stride())
        else:
            out[name] = DTensor.from_local(t, mesh, [Replicate()], run_check=False, shape=t.shape,
                                           stride=t.stride())
    return out
