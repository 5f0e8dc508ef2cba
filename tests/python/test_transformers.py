"""umload against HF transformers' own code (the pinned 5.x of src/python/requirements.txt), on
tiny synthetic checkpoints at sizes transformers accepts (hidden 64, intermediate 96: multiples
of 32 and different, so a transposed expert shows), all on the CPU:

- transformers' MXFP4 dequantizing load vs umload.load: every expert tensor bit for bit, every
  other tensor equal in value;
- transformers' convert_moe_packed_tensors itself on every scale byte 0..254 vs umload;
- transformers' from_pretrained on `umload convert` output: no missing, unexpected or mismatched
  keys, and logits equal to transformers' own MXFP4 load on fixed input ids;
- umload.hf.from_pretrained on the MXFP4 and on the dense checkpoint: the same logits, every
  parameter in the dtype transformers gives it, no meta tensor left, generate works;
- a checkpoint whose config lost its quantization_config: umload still decodes it, transformers
  silently loads random experts there, and `umload inspect` warns about exactly that."""
import json
import os
import shutil
import subprocess
import sys
import unittest

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # transformers' CPU route even where a GPU is visible

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import umload  # noqa: E402

torch = common.optional("torch")
transformers = common.optional("transformers")
HAVE = torch is not None and transformers is not None

TINY = ("--hidden", "64", "--intermediate", "96", "--experts", "4", "--layers", "2")
INPUT_IDS = [[1, 17, 42, 99, 3, 250, 7, 128, 64, 5, 200, 11]]
EXPERT_SUFFIXES = (".mlp.experts.gate_up_proj", ".mlp.experts.down_proj")


def bits(t):
    return common.as_numpy_bits(t)


def hf_mxfp4_load(path):
    """transformers' own dequantizing load of an MXFP4 checkpoint (its documented CPU route)."""
    return transformers.AutoModelForCausalLM.from_pretrained(
        path, quantization_config=transformers.Mxfp4Config(dequantize=True), dtype=torch.bfloat16)


def logits(model):
    with torch.no_grad():
        return model(torch.tensor(INPUT_IDS)).logits


@unittest.skipUnless(HAVE, "torch and transformers are not installed")
class transformers_parity(common.checkpoint_case):
    synth_args = TINY

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        torch.manual_seed(0)
        cls.reference = hf_mxfp4_load(cls.ckpt)
        cls.reference_logits = logits(cls.reference)
        cls.dense = os.path.join(cls.tmp, "dense")
        subprocess.run([common.CLI, "convert", cls.ckpt, "--out", cls.dense, "--device", "cpu"],
                       check=True, stdout=subprocess.DEVNULL)

    def test_the_reference_is_meaningful(self):
        self.assertTrue(torch.isfinite(self.reference_logits).all())
        self.assertGreater(float(self.reference_logits.float().std()), 0.0)

    def test_dequantizing_load_equals_umload_load(self):
        theirs = self.reference.state_dict()
        ours = umload.load(self.ckpt, device="cpu")
        self.assertEqual(sorted(theirs), sorted(ours))
        experts = 0
        for name, t in theirs.items():
            with self.subTest(name=name):
                if name.endswith(EXPERT_SUFFIXES):
                    experts += 1
                    self.assertEqual(t.dtype, ours[name].dtype)
                    np.testing.assert_array_equal(bits(ours[name]), bits(t))
                else:
                    self.assertEqual(tuple(t.shape), tuple(ours[name].shape))
                    self.assertTrue(torch.equal(t.float(), ours[name].float()))
        self.assertEqual(experts, 2 * 2)

    def test_from_pretrained_on_convert_output_loads_every_key(self):
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            self.dense, dtype=torch.bfloat16, output_loading_info=True)
        self.assertEqual(info["missing_keys"], set() if isinstance(info["missing_keys"], set) else [])
        self.assertFalse(info["unexpected_keys"])
        self.assertFalse(info["mismatched_keys"])
        self.assertTrue(torch.equal(logits(model), self.reference_logits))

    def check_hf_model(self, model):
        self.assertIsInstance(model, transformers.GptOssForCausalLM)
        self.assertFalse(model.training)
        theirs = dict(self.reference.named_parameters())
        ours = dict(model.named_parameters())
        self.assertEqual(sorted(theirs), sorted(ours))
        for name, p in ours.items():
            self.assertEqual(p.dtype, theirs[name].dtype, name)  # transformers' dtype rules
            self.assertEqual(p.device.type, "cpu", name)
        for name, b in model.named_buffers():
            self.assertFalse(b.is_meta, name)
        self.assertTrue(torch.equal(logits(model), self.reference_logits))
        out = model.generate(torch.tensor(INPUT_IDS), max_new_tokens=3, do_sample=False)
        want = self.reference.generate(torch.tensor(INPUT_IDS), max_new_tokens=3, do_sample=False)
        self.assertTrue(torch.equal(out, want))

    def test_umload_hf_from_pretrained_on_mxfp4(self):
        self.check_hf_model(umload.hf.from_pretrained(self.ckpt, device="cpu"))

    def test_umload_hf_from_pretrained_on_dense(self):
        self.check_hf_model(umload.hf.from_pretrained(self.dense, device="cpu"))

    def test_umload_hf_from_pretrained_keeps_umloads_tensors(self):
        # No second copy: each parameter is the very memory umload allocated (assign=True),
        # except where transformers wants another dtype. Equal values alone would not show it.
        from unittest import mock
        loaded = {}

        def capture(*args, **kwargs):
            state = umload.load(*args, **kwargs)
            loaded.update((k, (v.data_ptr(), v.dtype)) for k, v in state.items())
            return state

        with mock.patch.object(umload.hf, "_load", capture):
            model = umload.hf.from_pretrained(self.ckpt, device="cpu")
        same = 0
        for name, p in model.named_parameters():
            ptr, dtype = loaded[name]
            if p.dtype == dtype:
                self.assertEqual(p.data_ptr(), ptr, name)
                same += 1
        self.assertEqual(same, len(loaded))  # bf16 here: no tensor needed converting

    def test_umload_hf_refuses_a_slice_and_a_non_gpt_oss_config(self):
        with self.assertRaises(umload.UsageError):
            umload.hf.from_pretrained(self.ckpt, device="cpu", world_size=2, rank=0)
        other = os.path.join(self.tmp, "not-gpt-oss")
        shutil.copytree(self.ckpt, other)
        with open(os.path.join(other, "config.json")) as f:
            config = json.load(f)
        config["model_type"] = "llama"
        with open(os.path.join(other, "config.json"), "w") as f:
            json.dump(config, f)
        with self.assertRaises((umload.FormatError, ValueError, KeyError)):
            umload.hf.from_pretrained(other, device="cpu")


@unittest.skipUnless(HAVE, "torch and transformers are not installed")
class convert_moe_packed_tensors_parity(unittest.TestCase):
    def test_every_scale_byte_0_to_254_bit_for_bit(self):
        from transformers.integrations.mxfp4 import convert_moe_packed_tensors
        import tempfile
        with tempfile.TemporaryDirectory(prefix="umload-scales-") as tmp:
            ckpt = common.synth(os.path.join(tmp, "edge"), *TINY, "--edge-scales", "--seed", "5")
            stored = common.read_checkpoint(ckpt)
            ours = umload.load(ckpt, device="cpu")
            seen = set()
            compared = 0
            for name in stored:
                if not name.endswith("_blocks"):
                    continue
                base = name[: -len("_blocks")]
                scales = stored[base + "_scales"]
                seen.update(np.unique(scales).tolist())
                theirs = convert_moe_packed_tensors(torch.from_numpy(stored[name].copy()),
                                                    torch.from_numpy(scales.copy()))
                np.testing.assert_array_equal(bits(ours[base]), bits(theirs), err_msg=base)
                compared += 1
            self.assertEqual(compared, 4)
            self.assertEqual(seen, set(range(255)))  # every scale byte 0..254 went through both


@unittest.skipUnless(HAVE, "torch and transformers are not installed")
class lost_quantization_config(common.checkpoint_case):
    synth_args = TINY

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stripped = os.path.join(cls.tmp, "stripped")
        shutil.copytree(cls.ckpt, cls.stripped)
        with open(os.path.join(cls.stripped, "config.json")) as f:
            config = json.load(f)
        del config["quantization_config"]
        with open(os.path.join(cls.stripped, "config.json"), "w") as f:
            json.dump(config, f, indent=2)

    def test_umload_still_decodes_it(self):
        want = umload.load(self.ckpt, device="cpu", framework="numpy")
        got = umload.load(self.stripped, device="cpu", framework="numpy")
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)

    def test_transformers_silently_initializes_the_experts(self):
        # What the inspect warning is about: no error, the experts "missing" (random), the
        # blocks and scales "unexpected".
        _, info = transformers.AutoModelForCausalLM.from_pretrained(
            self.stripped, dtype=torch.bfloat16, output_loading_info=True)
        self.assertIn("model.layers.0.mlp.experts.gate_up_proj", info["missing_keys"])
        self.assertIn("model.layers.0.mlp.experts.gate_up_proj_blocks", info["unexpected_keys"])

    def test_inspect_warns_that_transformers_would_load_random_experts(self):
        run = subprocess.run([common.CLI, "inspect", self.stripped], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)  # a warning, not a problem
        report = json.loads(subprocess.run([common.CLI, "inspect", "--json", self.stripped], check=True,
                                           capture_output=True, text=True).stdout)
        pairs = report["pair_count"]
        self.assertGreater(pairs, 0)
        # Word for word what docs/cli.md shows (for gpt-oss-20b's 48 pairs).
        with open(os.path.join(common.SOURCE_DIR, "docs", "cli.md")) as f:
            documented = [line for line in f if line.startswith("umload: warning: config.json has no")]
        self.assertEqual(len(documented), 1)
        self.assertIn(documented[0].strip().replace(" 48 MXFP4 ", " %d MXFP4 " % pairs), run.stderr.splitlines())
        self.assertEqual(len(report["warnings"]), 1)
        self.assertIn("random experts", report["warnings"][0])
        clean = subprocess.run([common.CLI, "inspect", "--json", self.ckpt], capture_output=True, text=True)
        self.assertEqual(clean.returncode, 0, clean.stderr)
        self.assertEqual(json.loads(clean.stdout)["warnings"], [])
        self.assertNotIn("warning", clean.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
