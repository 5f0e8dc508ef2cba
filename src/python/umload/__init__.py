"""umload: load MXFP4 GPT-OSS checkpoints into PyTorch tensors, decoding the experts to BF16 as
they stream in (docs/python.md).

    import umload
    state = umload.load("gpt-oss-20b")              # {name: torch.Tensor}, HF's names and layout
    model = umload.hf.from_pretrained("gpt-oss-20b")  # a transformers GptOssForCausalLM

The loader itself is the compiled extension `umload._core`; this package adds the names other
frameworks use (`names="nemo"`), DTensor loading over a device mesh and the transformers model.
Every failure is a `umload.Error` subclass whose `kind` and `exit_code` match the CLI's.
"""
from ._core import (  # noqa: F401
    BudgetError,
    ConflictError,
    CudaError,
    Error,
    FormatError,
    IoError,
    MismatchError,
    UsageError,
    __version__,
    convert,
    inspect,
    plan,
    platform,
    profiles,
)
from ._load import load  # noqa: F401

__all__ = [
    "load", "plan", "platform", "profiles", "inspect", "convert", "hf", "nemo",
    "Error", "FormatError", "IoError", "CudaError", "BudgetError", "UsageError", "ConflictError",
    "MismatchError", "__version__",
]


def __getattr__(name):
    # umload.hf and umload.nemo import transformers / torch only when used.
    if name in ("hf", "nemo"):
        import importlib
        return importlib.import_module("." + name, __name__)
    raise AttributeError("module 'umload' has no attribute %r" % name)
