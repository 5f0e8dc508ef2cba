"""One case of the peer comparison (bench/peer_bench.sh runs each in a process of its own):
loads CHECKPOINT on the CPU the way one loader does and prints one JSON line.

    python bench/peer_bench.py CASE CHECKPOINT

Cases, each what a user of that loader writes:
  umload.load            umload.load(path, device="cpu"): the state dict, experts decoded to BF16
  umload.load-keep       umload.load(path, device="cpu", dtype="keep"): tensors as stored (raw read)
  umload.hf              umload.hf.from_pretrained(path, device="cpu"): a GptOssForCausalLM
  transformers           AutoModelForCausalLM.from_pretrained(path, quantization_config=
                         Mxfp4Config(dequantize=True), dtype=torch.bfloat16), on the CPU
                         (device_map="cpu" would need accelerate; the CPU is the default)
  nemo                   NeMo Automodel's GPTOSSStateDictAdapter.from_hf on every shard read by
                         safetensors.torch.load_file (run it in NeMo's venv)
  safetensors            safetensors.torch.load_file of every shard (raw read, no decode)
  fastsafetensors        fastsafe_open(shards, nogds=True, device="cpu"), get_tensor of every name
  runai                  runai-model-streamer's SafetensorsStreamer.stream_files, get_tensors

The JSON: seconds (the load itself, after the imports), import_seconds, rss_before_bytes (VmRSS
after the imports), peak_rss_bytes (ru_maxrss: the whole process, imports included), tensors and
bytes (what the load produced; a model counts its parameters and buffers), versions.
"""
import glob
import json
import os
import resource
import sys
import time

T0 = time.perf_counter()


def vm_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def preload(*modules):
    """Imports what a loader imports lazily at its first call, so that the timing leaves it out."""
    import importlib
    for module in modules:
        importlib.import_module(module)


def shards(path):
    return sorted(glob.glob(os.path.join(path, "*.safetensors")))


def state_summary(state):
    return len(state), sum(t.numel() * t.element_size() for t in state.values())


def model_summary(model):
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    return state_summary(tensors)


def case_umload_load(path, dtype="bf16"):
    preload("torch")
    import umload
    yield ["umload", "torch"]
    state = umload.load(path, device="cpu", dtype=dtype)
    yield state_summary(state)


def case_umload_load_keep(path):
    yield from case_umload_load(path, dtype="keep")


def case_umload_hf(path):
    preload("torch", "transformers", "umload.hf")
    import umload
    yield ["umload", "torch", "transformers"]
    model = umload.hf.from_pretrained(path, device="cpu")
    yield model_summary(model)


def case_transformers(path):
    import torch
    import transformers
    yield ["torch", "transformers"]
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path, quantization_config=transformers.Mxfp4Config(dequantize=True), dtype=torch.bfloat16)
    yield model_summary(model)


def case_nemo(path):
    from unittest import mock

    import safetensors.torch
    import torch
    from nemo_automodel.components.models.common import BackendConfig
    from nemo_automodel.components.models.gpt_oss.state_dict_adapter import GPTOSSStateDictAdapter
    from nemo_automodel.components.moe.config import MoEConfig
    from transformers import AutoConfig
    yield ["nemo_automodel", "torch", "transformers", "safetensors"]
    state = {}
    for shard in shards(path):
        state.update(safetensors.torch.load_file(shard))
    # from_hf reads neither the MoE nor the backend config, except the attention backend (not TE:
    # the sinks keep transformers' name), as NeMo's own unit tests build the adapter.
    backend = mock.Mock(spec=BackendConfig)
    backend.attn = "sdpa"
    adapter = GPTOSSStateDictAdapter(AutoConfig.from_pretrained(path), mock.Mock(spec=MoEConfig), backend,
                                     dtype=torch.bfloat16)
    state = adapter.from_hf(state)
    yield state_summary(state)


def case_safetensors(path):
    import safetensors.torch
    yield ["safetensors", "torch"]
    state = {}
    for shard in shards(path):
        state.update(safetensors.torch.load_file(shard))
    yield state_summary(state)


def case_fastsafetensors(path):
    preload("torch")
    from fastsafetensors import fastsafe_open
    yield ["fastsafetensors", "torch"]
    state = {}
    # Tensors keep their buffer alive after the context closes (fastsafetensors 0.5's
    # fastsafe_open docstring), so none is cloned.
    with fastsafe_open(filenames=shards(path), nogds=True, device="cpu") as f:
        for name in f.keys():
            state[name] = f.get_tensor(name)
    yield state_summary(state)


def case_runai(path):
    from runai_model_streamer import SafetensorsStreamer
    yield ["runai-model-streamer", "torch"]
    state = {}
    # owned=True (the default in 0.17) gives each tensor to the caller: none is cloned.
    with SafetensorsStreamer() as streamer:
        streamer.stream_files(shards(path))
        for name, tensor in streamer.get_tensors():
            state[name] = tensor
    yield state_summary(state)


CASES = {
    "umload.load": case_umload_load,
    "umload.load-keep": case_umload_load_keep,
    "umload.hf": case_umload_hf,
    "transformers": case_transformers,
    "nemo": case_nemo,
    "safetensors": case_safetensors,
    "fastsafetensors": case_fastsafetensors,
    "runai": case_runai,
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CASES:
        sys.exit("usage: peer_bench.py {%s} CHECKPOINT" % ",".join(CASES))
    name, path = sys.argv[1], sys.argv[2]
    from importlib.metadata import version
    steps = CASES[name](path)
    packages = next(steps)  # the imports are done
    t1 = time.perf_counter()
    rss_before = vm_rss_bytes()
    tensors, produced = next(steps)
    t2 = time.perf_counter()
    print(json.dumps({
        "case": name,
        "seconds": round(t2 - t1, 3),
        "import_seconds": round(t1 - T0, 3),
        "rss_before_bytes": rss_before,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "tensors": tensors,
        "bytes": produced,
        "python": sys.executable,
        "versions": {p: version(p) for p in packages if p != "umload"} | (
            {"umload": __import__("umload").__version__} if "umload" in packages else {}),
    }))


if __name__ == "__main__":
    main()
