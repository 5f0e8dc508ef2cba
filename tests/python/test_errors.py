"""Every umload failure reaches Python as a umload.Error subclass carrying the error kind and
the CLI's exit code for it; corrupt inputs are made here, one defect per case."""
import json
import os
import shutil
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import umload  # noqa: E402


class error_kinds(common.checkpoint_case):
    def fresh_copy(self, name):
        path = os.path.join(self.tmp, name)
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(self.ckpt, path)
        return path

    def first_shard(self, directory):
        with open(os.path.join(directory, "model.safetensors.index.json")) as f:
            return os.path.join(directory, sorted(set(json.load(f)["weight_map"].values()))[0])

    def test_hierarchy(self):
        expected = {"FormatError": ("format", 3), "IoError": ("io", 4), "CudaError": ("device", 6),
                    "BudgetError": ("budget", 5), "UsageError": ("usage", 2),
                    "ConflictError": ("conflict", 7), "MismatchError": ("mismatch", 8)}
        for name, (kind, code) in expected.items():
            cls = getattr(umload, name)
            self.assertTrue(issubclass(cls, umload.Error), name)
            self.assertEqual((cls.kind, cls.exit_code), (kind, code), name)
        self.assertTrue(issubclass(umload.Error, Exception))
        self.assertTrue(issubclass(umload.UsageError, ValueError))
        self.assertTrue(issubclass(umload.IoError, OSError))

    def test_missing_path_is_io_error_with_errno(self):
        with self.assertRaises(umload.IoError) as caught:
            umload.load(os.path.join(self.tmp, "absent"), device="cpu")
        self.assertEqual(caught.exception.errno, 2)
        self.assertIn("absent", str(caught.exception))

    def test_header_length_past_end_is_format_error(self):
        broken = self.fresh_copy("long-header")
        shard = self.first_shard(broken)
        with open(shard, "r+b") as f:
            f.write(struct.pack("<Q", os.path.getsize(shard) + 1))
        with self.assertRaises(umload.FormatError) as caught:
            umload.load(broken, device="cpu")
        self.assertEqual(caught.exception.kind, "format")
        self.assertIn(os.path.basename(shard), str(caught.exception))

    def test_blocks_without_scales_is_format_error(self):
        broken = self.fresh_copy("no-scales")
        index = os.path.join(broken, "model.safetensors.index.json")
        with open(index) as f:
            doc = json.load(f)
        del doc["weight_map"]["model.layers.0.mlp.experts.down_proj_scales"]
        with open(index, "w") as f:
            json.dump(doc, f)
        with self.assertRaises(umload.FormatError):
            umload.inspect(broken)

    def test_bad_arguments_are_usage_errors(self):
        for kwargs in ({"layout": "sideways"}, {"dtype": "fp8"}, {"device": "tpu"},
                       {"device": "cuda:x"}, {"rank": 4, "world_size": 4}, {"world_size": 3},
                       {"framework": "jax"}, {"profile": "no-such-machine"}):
            with self.subTest(**kwargs):
                with self.assertRaises(umload.UsageError) as caught:
                    umload.load(self.ckpt, **{"device": "cpu", **kwargs})
                self.assertEqual(caught.exception.exit_code, 2)

    def test_cuda_without_gpu_is_cuda_error(self):
        if umload.platform()["device"]["present"]:
            self.skipTest("this machine has a GPU")
        with self.assertRaises(umload.CudaError) as caught:
            umload.load(self.ckpt, device="cuda:0")
        self.assertEqual(caught.exception.kind, "device")

    def test_plan_that_cannot_fit_is_budget_error(self):
        code = ("import umload\n"
                "try:\n"
                f"    umload.load({self.ckpt!r}, device='cpu', profile='h100-sxm')\n"
                "except umload.BudgetError as e:\n"
                "    print(e.kind, e.exit_code, 'available' in str(e))\n")
        r = common.run_python(code, env={"UMLOAD_DEVICE_MEMORY": "1K"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["budget", "5", "True"])

    def test_convert_over_another_model_is_conflict_error(self):
        out = os.path.join(self.tmp, "converted")
        umload.convert(self.ckpt, out)
        other = common.synth(os.path.join(self.tmp, "other"), "--seed", "9", "--layers", "1")
        with self.assertRaises(umload.ConflictError):
            umload.convert(other, out)
        umload.convert(other, out, force=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
