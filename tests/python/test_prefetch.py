"""WeightSet.prefetch from Python: on a coherent plan whose device memory holds only the dense
tensors, the experts spill to host-managed memory, and prefetch walks those of the asked layers
in the plan's order (simulated here: the host stands in for the GPU). The C++ side is
tests/core/test_orders.cpp."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from umload import _core  # noqa: E402

# The device reserve (1 GiB) and room for the dense tensors of the tiny model only.
DEVICE_MEMORY = str((1 << 30) + (256 << 10))


class prefetch_in_plan_order(common.checkpoint_case):
    synth_args = ("--layers", "3", "--experts", "8")

    def load_and_prefetch(self, layers):
        # The device memory figure is the environment's (read once per process): a fresh one.
        code = ("import json, sys; from umload import _core; "
                "state, weights = _core.load(sys.argv[1], device='cpu', profile='gh200', "
                "framework='numpy', with_weights=True); "
                "print(json.dumps([sorted(state), weights.prefetch(json.loads(sys.argv[2]))]))")
        env = dict(os.environ, UMLOAD_DEVICE_MEMORY=DEVICE_MEMORY)
        out = subprocess.run([sys.executable, "-c", code, self.ckpt, json.dumps(layers)],
                             check=True, capture_output=True, text=True, env=env).stdout
        return json.loads(out)

    def test_spilled_tensors_of_the_asked_layers(self):
        plan = _core.plan(self.ckpt, profile="gh200", device_memory=DEVICE_MEMORY)
        spilled = [p for p in plan["placements"] if p["location"] == "host-managed"]
        self.assertTrue(spilled, "nothing spilled")
        expected = [p["tensor"] + ": simulated: no device (host backend)"
                    for p in spilled if p["layer"] in (1, 2)]
        self.assertTrue(expected)
        names, issued = self.load_and_prefetch([1, 2])
        self.assertEqual(issued, expected)
        self.assertTrue(all(p["tensor"] in names for p in spilled))
        self.assertEqual(self.load_and_prefetch([])[1], [])

    def test_weights_come_last_after_the_report(self):
        state, report, weights = _core.load(self.ckpt, device="cpu", framework="numpy",
                                            with_report=True, with_weights=True)
        self.assertIsInstance(weights, _core.WeightSet)
        self.assertEqual(report["tensors_loaded"], len(state))
        self.assertEqual(weights.prefetch([0]), [])  # a host plan spills nothing


if __name__ == "__main__":
    unittest.main()
