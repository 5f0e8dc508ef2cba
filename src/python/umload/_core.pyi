# Type hints for umload's compiled extension (src/python/module.cpp). Users import the package
# `umload`, which re-exports these; umload.load there adds names= and device_mesh=.
from os import PathLike
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union, overload

__version__: str

_Path = Union[str, PathLike]
_Size = Union[int, str, None]
_Progress = Optional[Callable[[int, int, int, int], Any]]

class Error(Exception):
    """Every umload failure; `kind` and `exit_code` (the CLI's, docs/cli.md) say which."""
    kind: str
    exit_code: int

class FormatError(Error):
    """A bad or corrupt checkpoint (file, tensor, field, value, limit)."""

class IoError(Error, OSError):
    """A failed system call; errno and path."""

class CudaError(Error):
    """A CUDA failure, or a GPU asked of a build or machine without one."""

class BudgetError(Error):
    """The load cannot fit the memory available."""

class UsageError(Error, ValueError):
    """Bad arguments."""

class ConflictError(Error):
    """The destination holds something not asked to be replaced."""

class MismatchError(Error):
    """Results that should agree do not."""

class WeightSet:
    """The loaded tensors' owner (load(..., with_weights=True))."""
    def prefetch(self, layers: List[int], stream: Optional[int] = ...) -> List[str]: ...

@overload
def load(path: _Path, *, device: str = ..., layout: Literal["hf", "native"] = ...,
         dtype: Literal["bf16", "f32", "keep"] = ..., rank: Optional[int] = ...,
         world_size: Optional[int] = ..., progress: _Progress = ..., profile: Optional[str] = ...,
         threads: int = ..., digest: bool = ..., framework: Literal["auto", "torch", "numpy"] = ...,
         with_report: Literal[False] = ..., with_weights: Literal[False] = ...) -> Dict[str, Any]: ...
@overload
def load(path: _Path, *, device: str = ..., layout: Literal["hf", "native"] = ...,
         dtype: Literal["bf16", "f32", "keep"] = ..., rank: Optional[int] = ...,
         world_size: Optional[int] = ..., progress: _Progress = ..., profile: Optional[str] = ...,
         threads: int = ..., digest: bool = ..., framework: Literal["auto", "torch", "numpy"] = ...,
         with_report: Literal[True], with_weights: Literal[False] = ...
         ) -> Tuple[Dict[str, Any], Dict[str, Any]]: ...
@overload
def load(path: _Path, *, device: str = ..., layout: Literal["hf", "native"] = ...,
         dtype: Literal["bf16", "f32", "keep"] = ..., rank: Optional[int] = ...,
         world_size: Optional[int] = ..., progress: _Progress = ..., profile: Optional[str] = ...,
         threads: int = ..., digest: bool = ..., framework: Literal["auto", "torch", "numpy"] = ...,
         with_report: bool = ..., with_weights: Literal[True]) -> Tuple[Any, ...]: ...
def plan(path: _Path, *, profile: Optional[str] = ..., dtype: str = ..., layout: str = ...,
         rank: Optional[int] = ..., world_size: Optional[int] = ..., device_memory: _Size = ...,
         host_memory: _Size = ...) -> Dict[str, Any]: ...
def platform(profile: Optional[str] = ...) -> Dict[str, Any]: ...
def profiles() -> List[str]: ...
def inspect(path: _Path) -> Dict[str, Any]: ...
def convert(source: _Path, destination: _Path, *, layout: str = ..., dtype: str = ...,
            rank: Optional[int] = ..., world_size: Optional[int] = ..., memory_budget: _Size = ...,
            shard_size: _Size = ..., force: bool = ..., device: str = ..., threads: int = ...,
            progress: _Progress = ...) -> Dict[str, Any]: ...
