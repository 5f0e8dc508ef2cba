"""umload's block-FP8 decode (kernels/fp8.hpp, through the test-only umload_fp8_decode_tool)
against the three Python references from PyPI, bit for bit, calling their own dequant code:

- transformers' `Fp8Dequantize` (integrations/finegrained_fp8.py, what
  `FineGrainedFP8Config(dequantize=True)` runs on each weight and its `weight_scale_inv`),
- torch's `QuantizedHuggingFaceStorageReader` (distributed/checkpoint/quantized_hf_storage.py)
  through `dcp.load` of a small safetensors checkpoint written here, `target_dtype` BF16 or F32,
- NeMo Automodel's `dequantize_from_fp8` (components/models/deepseek_v3/state_dict_adapter.py),
  run in NeMo's interpreter (UMLOAD_NEMO_PYTHON, build/venv-nemo).

Each reference runs in a worker process (this file with --worker), so that it can run both under
torch's vectorised CPU kernels (the default) and under ATEN_CPU_CAPABILITY=default (c10's scalar
conversions). What the tests show, as observed in the pinned versions:
- every finite and infinite value, BF16 and F32, is the same bits in umload and all three;
- a NaN is NaN in all of them, but its bits differ: umload writes 0x7FC0 (BF16) and 0x7FC00000
  (F32); torch's scalar float-to-BF16 conversion also writes 0x7FC0, its vectorised one 0xFFFF,
  and its F32 products keep the NaN operand's payload (a NaN code widens to 0x7FF00000);
- partial edge blocks: torch's reader and NeMo use the block size with a ceiling grid, as umload
  does; transformers derives the block from the grid (rows // grid_rows), so a 160-row weight with
  a 2-row grid is decoded with 80-row blocks (48 of its 160 rows take the wrong scale), and
  DeepSeek-V3's kv_a_proj_with_mqa shape (576 rows, grid 5) is refused.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TOOL = os.environ.get("UMLOAD_FP8_DECODE_TOOL", "")
NEMO_PYTHON = os.environ.get("UMLOAD_NEMO_PYTHON", "")

# Scales at the edges: zeros, infinities, NaNs (quiet, negative, signalling), subnormals, the
# normal range's ends, powers of two and ordinary block scales.
EDGE_SCALE_BITS = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000,
                   0x7F800001, 0x00000001, 0x007FFFFF, 0x80000001, 0x00800000, 0x7F7FFFFF,
                   0x3F800000, 0xBF800000, 0x40000000, 0x3F000000, 0x3A800000, 0x71000000,
                   0x7E800000, 0x0B800000, 0x03800000, 0x3A83126F, 0x39A3D70A, 0x3F7FFFFF]


# ---------------------------------------------------------------------------------------------
# The worker: runs one reference over the tasks in DIR/tasks.json, writes DIR/<name>.out.npy
# (the output's bits) or DIR/<name>.error.txt.

def _as_bits(t):
    import torch
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(np.uint16)
    return t.contiguous().view(torch.int32).numpy().view(np.uint32)


def _transformers(w, s, task, torch_dtype):
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize
    # Without a model, convert() takes its output dtype from the F32 scales; from_pretrained
    # passes the parameter's dtype, as output_dtype does here.
    return Fp8Dequantize(None)._dequantize_one(w, s, output_dtype=torch_dtype)


def _torch_reader(w, s, task, torch_dtype):
    import torch
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.quantized_hf_storage import QuantizedHuggingFaceStorageReader
    block = task["block"]
    if block[0] != block[1]:
        raise ValueError("the reader takes one square block_size")
    with tempfile.TemporaryDirectory() as d:
        save_file({"w.weight": w, "w.weight_scale_inv": s}, os.path.join(d, "model.safetensors"))
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": {"w.weight": "model.safetensors",
                                                       "w.weight_scale_inv": "model.safetensors"}}, f)
        state = {"w.weight": torch.empty(tuple(w.shape), dtype=torch_dtype)}
        dcp.load(state, storage_reader=QuantizedHuggingFaceStorageReader(
            d, target_dtype=torch_dtype, block_size=block[0]))
        return state["w.weight"]


def _nemo(w, s, task, torch_dtype):
    from nemo_automodel.components.models.deepseek_v3.state_dict_adapter import dequantize_from_fp8
    block = task["block"]
    if block[0] != block[1]:
        raise ValueError("dequantize_from_fp8 takes one square BLOCK_SIZE")
    return dequantize_from_fp8(w, s, dtype=torch_dtype, BLOCK_SIZE=block[0])


def worker(directory):
    import warnings
    warnings.simplefilter("ignore")
    import torch
    with open(os.path.join(directory, "tasks.json")) as f:
        tasks = json.load(f)
    references = {"transformers": _transformers, "torch_reader": _torch_reader, "nemo": _nemo}
    info = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}
    for task in tasks:
        codes = np.load(os.path.join(directory, task["input"] + ".codes.npy"))
        scales = np.load(os.path.join(directory, task["input"] + ".scales.npy"))
        w = torch.from_numpy(codes).view(torch.float8_e4m3fn)
        s = torch.from_numpy(scales)
        torch_dtype = torch.bfloat16 if task["dtype"] == "bf16" else torch.float32
        name = task["name"]
        try:
            out = references[task["reference"]](w, s, task, torch_dtype)
            if out.dtype != torch_dtype:
                raise TypeError("returned %s" % out.dtype)
            np.save(os.path.join(directory, name + ".out.npy"), _as_bits(out))
        except Exception as e:  # the refusal is an observed fact the tests assert
            with open(os.path.join(directory, name + ".error.txt"), "w") as f:
                f.write("%s: %s" % (type(e).__name__, e))
    with open(os.path.join(directory, "info.json"), "w") as f:
        json.dump(info, f)


# ---------------------------------------------------------------------------------------------
# The tests.

def umload_decode(codes, scales, block, dtype, path="best"):
    """umload's decode of `codes` (uint8 [rows, cols]) with F32 `scales` through the tool; None
    where this CPU lacks `path`."""
    rows, cols = codes.shape
    with tempfile.TemporaryDirectory() as d:
        c, s, o = (os.path.join(d, n) for n in ("codes", "scales", "out"))
        np.ascontiguousarray(codes).tofile(c)
        np.ascontiguousarray(scales, dtype=np.float32).tofile(s)
        run = subprocess.run([TOOL, "1", str(rows), str(cols), str(block[0]), str(block[1]), c, s,
                              o, dtype, path], capture_output=True, text=True)
        if run.returncode == 2 and "not supported by this CPU" in run.stderr:
            return None
        if run.returncode != 0:
            raise AssertionError("umload_fp8_decode_tool failed: " + run.stderr)
        return np.fromfile(o, dtype=np.uint16 if dtype == "bf16" else np.uint32).reshape(rows, cols)


def is_nan(bits, dtype):
    if dtype == "bf16":
        return (bits & 0x7FFF) > 0x7F80
    return (bits & 0x7FFFFFFF) > 0x7F800000


def all_codes_input():
    """384 x 1024, 128 x 128 blocks: value (r, c) holds code (r + c) % 256, so each of the 24
    blocks holds all 256 codes 64 times, under one edge scale each."""
    rows, cols = 384, 1024
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    codes = ((r + c) % 256).astype(np.uint8)
    scales = np.array(EDGE_SCALE_BITS, dtype=np.uint32).view(np.float32).reshape(3, 8)
    return codes, scales, (128, 128)


def random_input(rows, cols, block, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(rows, cols), dtype=np.uint8)
    grid = (-(-rows // block[0]), -(-cols // block[1]))
    # Ordinary block scales (2^-12 .. 2^-6), all different, so that a wrong block shows.
    scales = np.ldexp(1.0 + rng.random(grid), rng.integers(-12, -6, size=grid)).astype(np.float32)
    return codes, scales, block


@unittest.skipUnless(TOOL, "UMLOAD_FP8_DECODE_TOOL is not set (ctest sets it)")
class fp8_references(unittest.TestCase):
    runs = {}  # (interpreter, capability) -> {name: bits or error text}, info

    @classmethod
    def setUpClass(cls):
        cls.torch = common.optional("torch")
        cls.transformers = common.optional("transformers")
        if cls.torch is None or cls.transformers is None:
            raise unittest.SkipTest("torch and transformers are needed (build/venv has them)")
        if not NEMO_PYTHON and common.REQUIRE_STACK:
            raise AssertionError("UMLOAD_NEMO_PYTHON is not set, and the stack is required")
        cls.inputs = {
            "all_codes": all_codes_input(),
            "partial_160": random_input(160, 256, (128, 128), 1),
            "kv_a_576": random_input(576, 7168, (128, 128), 2),
            "square_64": random_input(192, 320, (64, 64), 3),
            "rect_64x32": random_input(192, 320, (64, 32), 4),
        }
        cls.tmp = tempfile.TemporaryDirectory()
        for name, (codes, scales, _) in cls.inputs.items():
            np.save(os.path.join(cls.tmp.name, name + ".codes.npy"), codes)
            np.save(os.path.join(cls.tmp.name, name + ".scales.npy"), scales)
        main = [("transformers", name) for name in cls.inputs] + \
               [("torch_reader", name) for name in cls.inputs]
        nemo = [("nemo", name) for name in cls.inputs]
        interpreters = [(sys.executable, main)]
        if NEMO_PYTHON:
            interpreters.append((NEMO_PYTHON, nemo))
        for python, jobs in interpreters:
            for capability in ("vectorised", "default"):
                cls.runs[(python, capability)] = cls._run(python, capability, jobs)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def _run(cls, python, capability, jobs):
        directory = tempfile.mkdtemp(dir=cls.tmp.name)
        tasks = []
        for reference, name in jobs:
            for dtype in ("bf16", "f32"):
                tasks.append({"reference": reference, "name": "%s.%s.%s" % (reference, name, dtype),
                              "input": os.path.join("..", name), "dtype": dtype,
                              "block": list(cls.inputs[name][2])})
        with open(os.path.join(directory, "tasks.json"), "w") as f:
            json.dump(tasks, f)
        env = dict(os.environ)
        env.pop("ATEN_CPU_CAPABILITY", None)
        if capability == "default":
            env["ATEN_CPU_CAPABILITY"] = "default"
        subprocess.run([python, os.path.abspath(__file__), "--worker", directory], check=True, env=env)
        results = {}
        for task in tasks:
            out = os.path.join(directory, task["name"] + ".out.npy")
            if os.path.exists(out):
                results[task["name"]] = np.load(out)
            else:
                with open(os.path.join(directory, task["name"] + ".error.txt")) as f:
                    results[task["name"]] = f.read()
        with open(os.path.join(directory, "info.json")) as f:
            return results, json.load(f)

    def reference(self, reference, name, dtype, capability):
        python = NEMO_PYTHON if reference == "nemo" else sys.executable
        if (python, capability) not in self.runs:
            self.skipTest("no NeMo interpreter (UMLOAD_NEMO_PYTHON)")
        results, info = self.runs[(python, capability)]
        return results["%s.%s.%s" % (reference, name, dtype)], info

    def ours(self, name, dtype, block=None):
        codes, scales, config_block = self.inputs[name]
        return umload_decode(codes, scales, block or config_block, dtype)

    def assert_same_values(self, theirs, ours, dtype, nan_bits=None):
        """Every non-NaN value the same bits, NaN where the other has NaN; `nan_bits`, where
        given, the reference's NaN bits."""
        self.assertIsInstance(theirs, np.ndarray, theirs)
        self.assertEqual(theirs.shape, ours.shape)
        nan_theirs, nan_ours = is_nan(theirs, dtype), is_nan(ours, dtype)
        np.testing.assert_array_equal(nan_theirs, nan_ours)
        np.testing.assert_array_equal(theirs[~nan_ours], ours[~nan_ours])
        if nan_bits is not None and nan_ours.any():
            self.assertEqual(set(np.unique(theirs[nan_theirs]).tolist()), {nan_bits})

    # -- where they all agree --

    def test_umload_paths_agree_and_write_one_nan(self):
        codes, scales, block = self.inputs["all_codes"]
        for dtype, nan in (("bf16", 0x7FC0), ("f32", 0x7FC00000)):
            ours = umload_decode(codes, scales, block, dtype, "scalar")
            for path in ("portable", "avx2", "avx512"):
                theirs = umload_decode(codes, scales, block, dtype, path)
                if theirs is not None:  # None: a path this CPU lacks
                    np.testing.assert_array_equal(theirs, ours)
            nans = is_nan(ours, dtype)
            self.assertGreater(int(nans.sum()), 0)
            self.assertEqual(set(np.unique(ours[nans]).tolist()), {nan})

    def test_all_codes_edge_scales_bf16_bit_for_bit_under_scalar_torch(self):
        ours = self.ours("all_codes", "bf16")
        for reference in ("transformers", "torch_reader", "nemo"):
            with self.subTest(reference=reference):
                theirs, info = self.reference(reference, "all_codes", "bf16", "default")
                self.assertEqual(info["cpu_capability"], "DEFAULT")
                np.testing.assert_array_equal(theirs, ours)  # NaN included: 0x7FC0 in both

    def test_all_codes_edge_scales_under_vectorised_torch(self):
        for reference in ("transformers", "torch_reader", "nemo"):
            for dtype in ("bf16", "f32"):
                with self.subTest(reference=reference, dtype=dtype):
                    theirs, info = self.reference(reference, "all_codes", dtype, "vectorised")
                    # torch 2.11's AVX2/AVX-512 float-to-BF16 conversion writes NaN as 0xFFFF.
                    nan_bits = 0xFFFF if dtype == "bf16" and info["cpu_capability"] != "DEFAULT" else None
                    self.assert_same_values(theirs, self.ours("all_codes", dtype), dtype, nan_bits)

    def test_f32_nan_payloads_are_torchs_operands(self):
        ours = self.ours("all_codes", "f32")
        theirs, _ = self.reference("transformers", "all_codes", "f32", "default")
        self.assert_same_values(theirs, ours, "f32")
        codes = self.inputs["all_codes"][0]
        scales = self.inputs["all_codes"][1].view(np.uint32)
        # A NaN code under a finite, non-NaN scale: torch keeps the code's widened NaN, 0x7FF00000.
        finite = np.repeat(np.repeat((scales & 0x7F800000) != 0x7F800000, 128, 0), 128, 1)
        nan_code = (codes & 0x7F) == 0x7F
        sel = finite & nan_code & (codes == 0x7F)
        self.assertTrue(sel.any())
        self.assertEqual(set(np.unique(theirs[sel]).tolist()), {0x7FF00000})
        self.assertEqual(set(np.unique(ours[sel]).tolist()), {0x7FC00000})

    def test_other_block_sizes(self):
        for dtype in ("bf16", "f32"):
            for reference in ("transformers", "torch_reader", "nemo"):
                with self.subTest(reference=reference, dtype=dtype, block="64x64"):
                    theirs, _ = self.reference(reference, "square_64", dtype, "default")
                    self.assert_same_values(theirs, self.ours("square_64", dtype), dtype)
            with self.subTest(reference="transformers", dtype=dtype, block="64x32"):
                theirs, _ = self.reference("transformers", "rect_64x32", dtype, "default")
                self.assert_same_values(theirs, self.ours("rect_64x32", dtype), dtype)

    def test_single_scale(self):
        # One scale for the whole tensor: transformers reads a [1, 1] grid as one block.
        from transformers.integrations.finegrained_fp8 import Fp8Dequantize
        torch = self.torch
        codes = random_input(50, 77, (50, 77), 5)[0]
        scale = np.array([[0.0123]], dtype=np.float32)
        w = torch.from_numpy(codes).view(torch.float8_e4m3fn)
        for dtype, torch_dtype in (("bf16", torch.bfloat16), ("f32", torch.float32)):
            theirs = _as_bits(Fp8Dequantize(None)._dequantize_one(w, torch.from_numpy(scale),
                                                                  output_dtype=torch_dtype))
            self.assert_same_values(theirs, umload_decode(codes, scale, (50, 77), dtype), dtype)

    # -- where they part: partial edge blocks --

    def test_partial_edge_block_160_rows(self):
        for dtype in ("bf16", "f32"):
            ours = self.ours("partial_160", dtype)
            for reference in ("torch_reader", "nemo"):
                with self.subTest(reference=reference, dtype=dtype):
                    theirs, _ = self.reference(reference, "partial_160", dtype, "default")
                    self.assert_same_values(theirs, ours, dtype)
            with self.subTest(reference="transformers", dtype=dtype):
                theirs, _ = self.reference("transformers", "partial_160", dtype, "default")
                # transformers uses rows // grid_rows = 80-row blocks: exactly umload's decode with
                # an 80 x 128 block ...
                self.assert_same_values(theirs, self.ours("partial_160", dtype, block=(80, 128)), dtype)
                # ... which gives rows 80..127 the second row of scales: 48 x 256 = 12,288 of the
                # 40,960 values differ from the config's 128-row blocks.
                nans = is_nan(ours, dtype) | is_nan(theirs, dtype)
                differ = (theirs != ours) & ~nans
                rows_differing = np.nonzero(differ.any(axis=1))[0]
                self.assertEqual(rows_differing.min(), 80)
                self.assertEqual(rows_differing.max(), 127)
                self.assert_same_values(theirs[:80], ours[:80], dtype)
                self.assert_same_values(theirs[128:], ours[128:], dtype)
                # Only zeros (and values that round alike under both scales) agree there.
                self.assertGreater(float(differ[80:128].mean()), 0.9)

    def test_kv_a_projection_576_rows(self):
        for dtype in ("bf16", "f32"):
            ours = self.ours("kv_a_576", dtype)
            for reference in ("torch_reader", "nemo"):
                with self.subTest(reference=reference, dtype=dtype):
                    theirs, _ = self.reference(reference, "kv_a_576", dtype, "vectorised")
                    self.assert_same_values(theirs, ours, dtype)
            with self.subTest(reference="transformers", dtype=dtype):
                theirs, _ = self.reference("transformers", "kv_a_576", dtype, "default")
                self.assertIsInstance(theirs, str)
                self.assertIn("not divisible by scale grid (5, 56)", theirs)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        unittest.main()
