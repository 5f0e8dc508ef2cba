"""Expert-parallel loads from Python: each rank's slice equals its share of the independent
decode, the ranks together equal the unsharded load, and RANK / WORLD_SIZE / LOCAL_RANK give
the defaults as torchrun sets them."""
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import umload  # noqa: E402


class sharded_loads(common.checkpoint_case):
    def test_union_of_ranks_is_the_whole(self):
        whole = umload.load(self.ckpt, device="cpu", framework="numpy")
        for world in (2, 4):
            parts = [umload.load(self.ckpt, device="cpu", framework="numpy", rank=r, world_size=world)
                     for r in range(world)]
            for name, full in whole.items():
                with self.subTest(world=world, name=name):
                    if ".mlp.experts." in name:
                        for r, part in enumerate(parts):
                            self.assertEqual(part[name].shape[0], full.shape[0] // world)
                        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), full)
                    else:
                        # The router and everything outside the experts: whole on every rank.
                        for part in parts:
                            np.testing.assert_array_equal(part[name], full)

    def test_slices_equal_independent_decode(self):
        for rank in range(2):
            state = umload.load(self.ckpt, device="cpu", framework="numpy", rank=rank, world_size=2)
            want = common.expected_state(self.ckpt, rank=rank, world_size=2)
            self.assertEqual(sorted(state), sorted(want))
            for name, expected in want.items():
                np.testing.assert_array_equal(state[name], expected, err_msg=name)

    def test_each_rank_reads_about_its_share(self):
        _, whole = umload.load(self.ckpt, device="cpu", framework="numpy", with_report=True)
        _, part = umload.load(self.ckpt, device="cpu", framework="numpy", rank=1, world_size=4,
                              with_report=True)
        self.assertLess(part["quantized_bytes"], whole["quantized_bytes"] / 4 + 1)
        self.assertLess(part["bytes_read"], whole["bytes_read"])

    def test_experts_must_divide(self):
        with self.assertRaises(umload.UsageError) as caught:
            umload.load(self.ckpt, device="cpu", world_size=3)
        self.assertIn("divide", str(caught.exception))

    def test_rank_below_world_size(self):
        with self.assertRaises(umload.UsageError):
            umload.load(self.ckpt, device="cpu", rank=2, world_size=2)


class torchrun_environment(common.checkpoint_case):
    probe = ("import umload\n"
             "sd = umload.load({path!r}, device='cpu', framework='numpy'{extra})\n"
             "print(sd['model.layers.0.mlp.experts.down_proj'].shape[0],"
             " sd['model.layers.0.mlp.router.weight'].shape[0])\n")

    def run_probe(self, env, extra=""):
        r = common.run_python(self.probe.format(path=self.ckpt, extra=extra), env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split()

    def test_rank_and_world_size_from_environment(self):
        self.assertEqual(self.run_probe({"RANK": "1", "WORLD_SIZE": "2"}), ["2", "4"])
        self.assertEqual(self.run_probe({"RANK": "3", "WORLD_SIZE": "4"}), ["1", "4"])
        self.assertEqual(self.run_probe({}), ["4", "4"])

    def test_rank_slice_matches_environment(self):
        code = ("import numpy as np, umload\n"
                f"a = umload.load({self.ckpt!r}, device='cpu', framework='numpy')\n"
                f"b = umload.load({self.ckpt!r}, device='cpu', framework='numpy', rank=1, world_size=2)\n"
                "n = 'model.layers.1.mlp.experts.gate_up_proj'\n"
                "assert np.array_equal(a[n], b[n]), 'env default differs from explicit'\n")
        r = common.run_python(code, env={"RANK": "1", "WORLD_SIZE": "2"})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_explicit_arguments_win(self):
        self.assertEqual(self.run_probe({"RANK": "1", "WORLD_SIZE": "2"}, ", world_size=1"), ["4", "4"])
        self.assertEqual(self.run_probe({"RANK": "1", "WORLD_SIZE": "2"}, ", rank=0"), ["2", "4"])

    def test_bad_environment_is_usage_error(self):
        r = common.run_python("import umload\n"
                              "try:\n"
                              f"    umload.load({self.ckpt!r}, device='cpu')\n"
                              "except umload.UsageError as e:\n"
                              "    print('usage', e)\n",
                              env={"WORLD_SIZE": "two"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("usage"), r.stdout)
        self.assertIn("WORLD_SIZE", r.stdout)

    def test_local_rank_picks_the_gpu(self):
        if umload.platform()["device"]["present"]:
            self.skipTest("a GPU is present; this checks the ordinal chosen on a machine without one")
        r = common.run_python("import umload\n"
                              "try:\n"
                              f"    umload.load({self.ckpt!r}, device='cuda')\n"
                              "except umload.CudaError as e:\n"
                              "    print(e)\n",
                              env={"LOCAL_RANK": "1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cuda:1", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
