"""umload.platform, profiles, plan, inspect and convert from Python: dicts as the CLI's JSON,
and a converted checkpoint that loads to the same tensors."""
import json
import os
import subprocess
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import umload  # noqa: E402


class platform_and_plan(common.checkpoint_case):
    def test_platform_matches_cli(self):
        info = umload.platform()
        cli = json.loads(subprocess.run([common.CLI, "platform", "--json"], check=True,
                                        capture_output=True, text=True).stdout)
        self.assertEqual(info["memory_model"], cli["memory_model"])
        self.assertEqual(sorted(info), sorted(cli))

    def test_profiles(self):
        names = umload.profiles()
        self.assertIn("h100-sxm", names)
        for name in names:
            self.assertEqual(umload.platform(name)["profile"], name)

    def test_plan_matches_cli(self):
        plan = umload.plan(self.ckpt, profile="gh200")
        cli = json.loads(subprocess.run([common.CLI, "plan", self.ckpt, "--profile", "gh200", "--json"],
                                        check=True, capture_output=True, text=True).stdout)
        self.assertTrue(plan["fits"])
        self.assertEqual(plan["memory_model"], "coherent")
        self.assertEqual(plan["peak_device_bytes"], cli["peak_device_bytes"])
        self.assertEqual(len(plan["placements"]), len(cli["placements"]))

    def test_plan_memory_override(self):
        self.assertFalse(umload.plan(self.ckpt, profile="h100-sxm", device_memory="1K")["fits"])
        self.assertFalse(umload.plan(self.ckpt, profile="h100-sxm", device_memory=1024)["fits"])

    def test_120b_in_bf16_fits_four_h100_sxm(self):
        big = os.path.join(self.tmp, "gpt-oss-120b")
        subprocess.run([common.CLI, "synth", "--preset", "gpt-oss-120b", "--holes", "--out", big],
                       check=True, stdout=subprocess.DEVNULL)
        self.assertFalse(umload.plan(big, profile="h100-sxm")["fits"])
        for rank in range(4):
            plan = umload.plan(big, profile="h100-sxm", rank=rank, world_size=4)
            self.assertTrue(plan["fits"], plan.get("message"))

    def test_inspect(self):
        info = umload.inspect(self.ckpt)
        self.assertEqual(info["config"]["num_local_experts"], 4)
        self.assertEqual(info["expert_pairs"], 4)
        t = info["tensors"]["model.layers.0.mlp.experts.gate_up_proj_blocks"]
        self.assertEqual((t["dtype"], t["shape"]), ("U8", [4, 128, 2, 16]))


class convert(common.checkpoint_case):
    def test_converted_checkpoint_loads_the_same(self):
        out = os.path.join(self.tmp, "bf16")
        events = []
        report = umload.convert(self.ckpt, out, progress=lambda *e: events.append(e))
        self.assertEqual(report["tensors"], 37)
        self.assertTrue(events)
        a = umload.load(self.ckpt, device="cpu", framework="numpy")
        b = umload.load(out, device="cpu", framework="numpy")
        self.assertEqual(sorted(a), sorted(b))
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)

    def test_device_is_reported_and_cpu_and_auto_write_the_same_files(self):
        cpu = umload.convert(self.ckpt, os.path.join(self.tmp, "cpu"), device="cpu")
        self.assertEqual(cpu["device"], "cpu")
        auto = umload.convert(self.ckpt, os.path.join(self.tmp, "auto"))
        self.assertTrue(auto["device"] == "cpu" or auto["device"].startswith("cuda:"), auto["device"])
        names = sorted(os.listdir(os.path.join(self.tmp, "cpu")))
        self.assertEqual(names, sorted(os.listdir(os.path.join(self.tmp, "auto"))))
        for name in names:
            with open(os.path.join(self.tmp, "cpu", name), "rb") as f, open(os.path.join(self.tmp, "auto", name), "rb") as g:
                self.assertEqual(f.read(), g.read(), name)
        with self.assertRaises(umload.UsageError):
            umload.convert(self.ckpt, os.path.join(self.tmp, "bad"), device="gpu0")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "bad")))

    def test_rank_slice_conversion(self):
        out = os.path.join(self.tmp, "rank1")
        umload.convert(self.ckpt, out, rank=1, world_size=2)
        b = umload.load(out, device="cpu", framework="numpy")
        want = common.expected_state(self.ckpt, rank=1, world_size=2)
        for name, expected in want.items():
            np.testing.assert_array_equal(b[name], expected, err_msg=name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
