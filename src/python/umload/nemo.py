"""NeMo Automodel's names for GPT-OSS (see umload._names for the mapping and its source).

    state = umload.load("gpt-oss-20b", names="nemo")   # or umload.nemo.load("gpt-oss-20b")
"""
from __future__ import annotations

from ._load import load as _load
from ._names import nemo_name, rename

__all__ = ["load", "to_nemo", "nemo_name", "rename"]


def load(path, **kwargs):
    """umload.load(path, names="nemo", **kwargs): the state dict under NeMo Automodel's GPT-OSS
    names, for its GptOssForCausalLM (also with device_mesh= for its DTensor-native expert
    parallelism)."""
    return _load(path, names="nemo", **kwargs)


def to_nemo(state):
    """A transformers-named GPT-OSS state dict under NeMo Automodel's names (same tensors)."""
    return rename(state, "nemo")
