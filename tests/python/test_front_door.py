"""One front door: the same request through umload.load and through `umload load` gives the same
load (device, plan, digest). The C++ side of the comparison is tests/core/test_front_door.cpp."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import umload  # noqa: E402


class same_request_same_load(common.checkpoint_case):
    KEYS = ("digest", "device", "memory_model", "platform", "strategy", "tensors_loaded",
            "bytes_produced", "slots", "slot_bytes")

    def cli(self, *flags):
        out = subprocess.run([common.CLI, "load", self.ckpt, "--json", "--digest", *flags],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    def python(self, **kw):
        _, report = umload.load(self.ckpt, digest=True, with_report=True, framework="numpy", **kw)
        return report

    def test_requests(self):
        cases = [
            (("--device", "auto"), dict(device="auto")),
            # "auto" with a host-only plan (a fixed GPU for it: tests/core/test_front_door.cpp).
            (("--device", "auto", "--profile", "host"), dict(device="auto", profile="host")),
            (("--device", "cpu", "--dtype", "f32", "--layout", "native"),
             dict(device="cpu", dtype="f32", layout="native")),
            (("--device", "auto", "--profile", "gh200", "--rank", "1", "--world-size", "2"),
             dict(device="auto", profile="gh200", rank=1, world_size=2)),
            (("--device", "cpu", "--dtype", "keep"), dict(device="cpu", dtype="keep")),
        ]
        for flags, kw in cases:
            with self.subTest(flags=flags):
                cli, py = self.cli(*flags), self.python(**kw)
                for key in self.KEYS:
                    self.assertEqual(cli[key], py[key], key)


if __name__ == "__main__":
    unittest.main()
