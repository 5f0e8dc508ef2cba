"""A transformers model filled by umload:

    model = umload.hf.from_pretrained("gpt-oss-20b")   # GptOssForCausalLM, ready for generate

The model is built on the meta device (no memory), then its parameters become umload's tensors
themselves (`load_state_dict(..., assign=True)`): no second copy of the weights is made, so the
peak is about the model's bytes. Each parameter gets the dtype transformers' own
from_pretrained gives it (its `_keep_in_fp32_modules` rules); only tensors whose dtype differs
from that are converted. An MXFP4 checkpoint and a dense one (e.g. `umload convert` output) load
the same way; a config that lost its quantization_config is decoded all the same (umload goes by
the tensors). Needs torch and transformers (5.x).
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional

from . import _core
from ._load import load as _load

_DTYPES = {"bf16": "bfloat16", "f32": "float32"}


def _device_of(state) -> Any:
    for t in state.values():
        return t.device
    raise _core.FormatError("the checkpoint holds no tensors")


def _dtype_plan(model, dtype) -> dict:
    """{module name: dtype} for the modules transformers keeps in another dtype than `dtype`
    (PreTrainedModel._get_dtype_plan in transformers 5.x; before it, the strict fp32 list)."""
    import torch
    plan = getattr(model, "_get_dtype_plan", None)
    if plan is not None:
        return dict(plan(dtype))
    strict = getattr(model, "_keep_in_fp32_modules_strict", None) or []
    return dict.fromkeys(strict, torch.float32) if dtype in (torch.float16, torch.bfloat16) else {}


def _wanted_dtype(name: str, plan: dict, default):
    for module, dtype in plan.items():
        if re.search(r"(^|\.)%s(\.|$)" % re.escape(module), name):
            return dtype
    return default


def _config(path, **config_kwargs):
    """The checkpoint's config as transformers reads it, without its quantization_config: the
    weights umload hands over are dense whatever the checkpoint held."""
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(path, **config_kwargs)
    if getattr(config, "model_type", None) != "gpt_oss":
        raise _core.FormatError("%s: config.json has model_type %r; umload.hf loads GPT-OSS (gpt_oss)"
                                % (os.path.join(str(path), "config.json"), getattr(config, "model_type", None)))
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config


def _rebuild_meta_buffers(model, device) -> None:
    """Buffers computed at construction (the rotary embedding's inv_freq) were made on the meta
    device; build those modules again on `device`."""
    import torch
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if not any(b.is_meta for b in child.buffers(recurse=False)):
                continue
            if "RotaryEmbedding" not in type(child).__name__:
                raise _core.Error("%s.%s: a buffer left on the meta device that umload.hf cannot rebuild"
                                  % (parent_name, child_name))
            with torch.device(device):
                setattr(parent, child_name, type(child)(child.config))


def from_pretrained(path, device: str = "auto", dtype: str = "bf16", *,
                    attn_implementation: Optional[str] = None, **kwargs):
    """A transformers GptOssForCausalLM holding the checkpoint at `path` (MXFP4 or dense), in
    eval mode with its generation config, ready for `generate`.

    device: as umload.load ("auto": CUDA when usable, else CPU; "cpu", "cuda", "cuda:N"); the
    weights are loaded straight there. dtype: "bf16" or "f32" (the experts' decode target and the
    model's dtype). attn_implementation: passed to transformers (default: its choice). Other
    keyword arguments go to umload.load (threads, profile, progress, ...); a model needs every
    expert, so rank/world_size/device_mesh/names are refused.
    """
    import torch
    from transformers import GenerationConfig, GptOssForCausalLM

    if dtype not in _DTYPES:
        raise _core.UsageError("dtype '%s' (expected bf16 or f32)" % dtype)
    for refused in ("rank", "world_size", "device_mesh", "names", "framework", "layout", "with_report"):
        if refused in kwargs:
            raise _core.UsageError("umload.hf.from_pretrained does not take %s: the model holds every "
                                   "expert in transformers' layout" % refused)
    torch_dtype = getattr(torch, _DTYPES[dtype])
    config = _config(path)
    # Checked before the load, so a bad config costs no I/O.
    model_kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    with torch.device("meta"):
        model = GptOssForCausalLM._from_config(config, dtype=torch_dtype, **model_kwargs)

    # Every tensor of the checkpoint, one umload load; RANK/WORLD_SIZE from a launcher must not
    # slice it.
    state = _load(path, device=device, layout="hf", dtype=dtype, framework="torch", rank=0,
                  world_size=1, **kwargs)
    plan = _dtype_plan(model, torch_dtype)
    expected = dict(model.state_dict(keep_vars=True))
    for name, t in list(state.items()):
        want = expected.get(name)
        if want is not None:
            target = _wanted_dtype(name, plan, want.dtype)
            if t.dtype != target:
                state[name] = t.to(target)
    result = model.load_state_dict(state, strict=False, assign=True)
    problems = []
    if result.missing_keys:
        problems.append("missing: " + ", ".join(sorted(result.missing_keys)[:8]))
    if result.unexpected_keys:
        problems.append("unexpected: " + ", ".join(sorted(result.unexpected_keys)[:8]))
    if problems:
        raise _core.FormatError("%s: the checkpoint does not match transformers' GptOssForCausalLM for its "
                                "config (%s)" % (path, "; ".join(problems)))
    del state
    _rebuild_meta_buffers(model, _device_of(dict(model.named_parameters())))
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    try:
        model.generation_config = GenerationConfig.from_pretrained(path)
    except (OSError, ValueError):
        pass  # no generation_config.json: the one built from the config stays
    model.eval()
    return model


