"""State-dict names of the frameworks umload serves. umload loads under transformers' GPT-OSS
names (model.layers.{i}.mlp.router.weight, ...mlp.experts.gate_up_proj, ...); NeMo Automodel's
GPT-OSS model names three of them differently (its GPTOSSStateDictAdapter.from_hf renames
mlp.router.* -> mlp.gate.*, mlp.experts.gate_up_proj -> mlp.experts.gate_and_up_projs and
mlp.experts.down_proj -> mlp.experts.down_projs; shapes and the gate/up interleave stay
transformers'). Source: NVIDIA-NeMo/Automodel,
nemo_automodel/components/models/gpt_oss/state_dict_adapter.py."""
from __future__ import annotations

import re
from typing import Dict, TypeVar

T = TypeVar("T")

# (pattern on the transformers name, replacement); applied in order, the first match wins.
NEMO = [
    (re.compile(r"(\.mlp)\.router\.(weight|bias)$"), r"\1.gate.\2"),
    (re.compile(r"(\.mlp\.experts)\.gate_up_proj$"), r"\1.gate_and_up_projs"),
    (re.compile(r"(\.mlp\.experts)\.down_proj$"), r"\1.down_projs"),
]


def nemo_name(name: str) -> str:
    """The NeMo Automodel name of a transformers GPT-OSS tensor name (unchanged where they agree)."""
    for pattern, replacement in NEMO:
        new, n = pattern.subn(replacement, name)
        if n:
            return new
    return name


def rename(state: Dict[str, T], names: str) -> Dict[str, T]:
    """`state` under the `names` convention ("hf": as loaded; "nemo": NeMo Automodel's)."""
    if names == "hf":
        return state
    return {nemo_name(k): v for k, v in state.items()}
