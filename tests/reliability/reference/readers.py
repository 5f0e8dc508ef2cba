"""The two readers under comparison, on the same bytes: umload's (src/safetensors.cpp, through the
probe library's C entry) and the reference, the `safetensors` package's deserialize (the Rust
crate's SafeTensors::deserialize, which transformers and every Hugging Face loader use).

Each returns (accepted, reading): on acceptance {name: (dtype, shape, data bytes)}, otherwise the
reason. `differences` names what two acceptances disagree on.
"""
import ctypes
import json

import safetensors

# umload refuses these on purpose although the reference reads them (docs/security.md): a
# refusal whose message holds one of these phrases is not a disagreement when the reference
# accepts the file.
DELIBERATE = ("empty tensor name", "tensor name appears twice", "entry is a JSON array",
              "'dtype' is an object")


class Umload:
    def __init__(self, probe_path):
        self.lib = ctypes.CDLL(probe_path)
        f = self.lib.umload_probe_safetensors
        f.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                      ctypes.POINTER(ctypes.c_size_t)]
        f.restype = ctypes.c_int
        self.capacity = 1 << 16
        self.out = ctypes.create_string_buffer(self.capacity)
        self.metadata = None  # of the last file read

    def read(self, blob):
        written = ctypes.c_size_t(0)
        while True:
            status = self.lib.umload_probe_safetensors(blob, len(blob), self.out, self.capacity,
                                                       ctypes.byref(written))
            if written.value < self.capacity:
                break
            self.capacity = written.value + 1
            self.out = ctypes.create_string_buffer(self.capacity)
        text = self.out.raw[: written.value].decode("utf-8", "replace")
        if status == 3:
            return False, text
        if status != 0:
            raise RuntimeError(f"umload's reader failed with status {status}: {text}")
        doc = json.loads(text)
        self.metadata = doc["metadata"]
        start = doc["data_offset"]
        return True, {name: (dtype, list(shape), blob[start + begin : start + end])
                      for name, (dtype, shape, begin, end) in doc["tensors"].items()}


def reference(blob):
    try:
        items = safetensors.deserialize(blob)
    except safetensors.SafetensorError as e:
        return False, str(e)
    except BaseException as e:  # a Rust panic surfaces as pyo3's PanicException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return False, f"reference reader panicked: {type(e).__name__}: {e}"
    return True, {name: (d["dtype"], list(d["shape"]), bytes(d["data"])) for name, d in items}


def is_deliberate(umload_reason):
    return any(phrase in umload_reason for phrase in DELIBERATE)


def differences(ours, theirs):
    out = []
    for name in sorted(set(ours) | set(theirs)):
        if name not in ours or name not in theirs:
            out.append(f"tensor {name!r} read only by {'umload' if name in ours else 'the reference'}")
        elif ours[name][:2] != theirs[name][:2]:
            out.append(f"tensor {name!r}: umload reads {ours[name][:2]}, the reference {theirs[name][:2]}")
        elif ours[name][2] != theirs[name][2]:
            out.append(f"tensor {name!r}: the data bytes differ")
    return out
