"""Helpers the Python tests share: synthetic checkpoints made with the CLI, a plain-Python
safetensors reader, and an MXFP4 decoder written from the rule in
docs/formats.md, independent of umload's own kernels.

The tests get the CLI from UMLOAD_CLI and import `umload` from PYTHONPATH (both set by ctest).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

CLI = os.environ.get("UMLOAD_CLI", "umload")
SOURCE_DIR = os.environ.get("UMLOAD_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# torchrun's variables would change every default; the tests set them only where they mean to.
for _name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "UMLOAD_PROFILE", "UMLOAD_DEVICE"):
    os.environ.pop(_name, None)

FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float64)

SAFETENSORS_DTYPES = {"BF16": np.uint16, "U8": np.uint8, "F32": np.float32, "F16": np.float16,
                      "I64": np.int64, "I32": np.int32, "U16": np.uint16}


REQUIRE_STACK = os.environ.get("UMLOAD_REQUIRE_STACK", "0") not in ("", "0", "OFF", "FALSE")


def optional(module):
    """Imports `module` (e.g. "torch", "transformers") or returns None where it is missing, for a
    test to skip. Under `make test` (UMLOAD_REQUIRE_STACK=1) the pinned venv must have it, so a
    missing one raises instead of letting its tests skip unseen."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if REQUIRE_STACK:
            raise ImportError("%s is missing from %s, which should have the pins of "
                              "src/python/requirements*.txt (`make venv`): %s"
                              % (module, sys.executable, e)) from e
        return None


def synth(out, *args):
    """`umload synth --preset tiny --out OUT [args]`; returns OUT."""
    subprocess.run([CLI, "synth", "--preset", "tiny", "--out", str(out), *args], check=True,
                   stdout=subprocess.DEVNULL)
    return str(out)


def read_safetensors(path):
    """{name: numpy array} from one file: 8-byte little-endian header length, JSON, data."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=SAFETENSORS_DTYPES[entry["dtype"]])
        out[name] = arr.reshape(entry["shape"])
    return out


def read_checkpoint(directory):
    """Every tensor of a checkpoint directory, following the index's weight_map."""
    with open(os.path.join(directory, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    files = {}
    tensors = {}
    for name, file in weight_map.items():
        if file not in files:
            files[file] = read_safetensors(os.path.join(directory, file))
        tensors[name] = files[file][name]
    return tensors


def decode_mxfp4(blocks, scales):
    """[E, rows, G, 16] U8 blocks and [E, rows, G] U8 scales -> float32 [E, rows, G*32].

    Element k of a row: group k // 32, byte (k % 32) // 2 of it, low nibble for even k, high for
    odd; value FP4[code] * 2^(scale - 127).
    """
    low = blocks & 0x0F
    high = blocks >> 4
    codes = np.stack([low, high], axis=-1).reshape(*blocks.shape[:-1], 32)  # [E, rows, G, 32]
    values = FP4[codes] * np.exp2(scales.astype(np.float64) - 127.0)[..., None]
    with np.errstate(over="ignore"):
        return values.astype(np.float32).reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


def bf16_bits(values):
    """Exact float32 values (at most 2 significant bits) -> their BF16 bit patterns."""
    return (np.ascontiguousarray(values).view(np.uint32) >> 16).astype(np.uint16)


def expected_state(directory, layout="hf", dtype="bf16", rank=0, world_size=1):
    """What a load should hold: {name: numpy array} (BF16 as uint16 bits)."""
    stored = read_checkpoint(directory)
    out = {}
    for name, arr in stored.items():
        if name.endswith("_scales"):
            continue
        if name.endswith("_blocks") and dtype != "keep":
            base = name[: -len("_blocks")]
            values = decode_mxfp4(arr, stored[base + "_scales"])  # [E, out, in]
            if layout == "hf":
                values = values.transpose(0, 2, 1)
            values = np.ascontiguousarray(values)
            out[base] = bf16_bits(values) if dtype == "bf16" else values
        else:
            out[name] = arr
    if dtype == "keep":
        for name, arr in stored.items():
            if name.endswith("_scales"):
                out[name] = arr
    if world_size > 1:
        for name in out:
            if ".mlp.experts." in name:
                e = out[name].shape[0] // world_size
                out[name] = out[name][rank * e:(rank + 1) * e]
    return out


def as_numpy_bits(t):
    """A torch tensor or numpy array -> numpy, BF16 as uint16 bits."""
    try:
        import torch
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu()
            if t.dtype == torch.bfloat16:
                return t.view(torch.int16).numpy().view(np.uint16)
            return t.numpy()
    except ImportError:
        pass
    return np.asarray(t)


class checkpoint_case(unittest.TestCase):
    """A test case with a fresh tiny checkpoint in self.ckpt (removed afterwards)."""

    synth_args = ()

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="umload-pytest-")
        cls.tmp = cls._tmp.name
        cls.ckpt = synth(os.path.join(cls.tmp, "ckpt"), *cls.synth_args)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()


def run_python(code, env=None, cwd=None):
    """Runs `code` in a fresh /usr/bin/python3 (the same interpreter) and returns the result."""
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=cwd, capture_output=True, text=True)
