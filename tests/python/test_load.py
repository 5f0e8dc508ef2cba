"""umload.load against an independent decode of the checkpoint's raw bytes: every layout and
dtype, torch and numpy results, progress callbacks, and the GIL left free during a load."""
import os
import sys
import threading
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import umload  # noqa: E402

torch = common.optional("torch")


class load_equals_decode(common.checkpoint_case):
    # Scales cycle through every byte 0..254: subnormals, -0.0, overflow to inf all appear.
    synth_args = ("--edge-scales",)

    def check(self, state, **kw):
        want = common.expected_state(self.ckpt, **kw)
        self.assertEqual(sorted(state), sorted(want))
        for name, expected in want.items():
            got = common.as_numpy_bits(state[name])
            self.assertEqual(got.shape, expected.shape, name)
            self.assertEqual(got.dtype, expected.dtype, name)
            np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8), err_msg=name)

    @unittest.skipIf(torch is None, "torch is not installed")
    def test_torch_every_layout_and_dtype(self):
        for layout in ("hf", "native"):
            for dtype in ("bf16", "f32"):
                with self.subTest(layout=layout, dtype=dtype):
                    state = umload.load(self.ckpt, device="cpu", layout=layout, dtype=dtype)
                    for name, t in state.items():
                        self.assertIsInstance(t, torch.Tensor)
                        self.assertEqual(t.device.type, "cpu")
                        self.assertTrue(t.is_contiguous(), name)
                    experts = state["model.layers.0.mlp.experts.gate_up_proj"]
                    self.assertEqual(experts.dtype, torch.bfloat16 if dtype == "bf16" else torch.float32)
                    self.check(state, layout=layout, dtype=dtype)

    @unittest.skipIf(torch is None, "torch is not installed")
    def test_keep_gives_blocks_and_scales(self):
        state = umload.load(self.ckpt, device="cpu", dtype="keep")
        self.assertEqual(state["model.layers.0.mlp.experts.down_proj_blocks"].dtype, torch.uint8)
        self.check(state, dtype="keep")

    @unittest.skipIf(torch is None, "torch is not installed")
    def test_hf_shapes(self):
        state = umload.load(self.ckpt, device="cpu")
        # tiny: E=4, H=I=64
        self.assertEqual(tuple(state["model.layers.1.mlp.experts.gate_up_proj"].shape), (4, 64, 128))
        self.assertEqual(tuple(state["model.layers.1.mlp.experts.down_proj"].shape), (4, 64, 64))
        self.assertEqual(tuple(state["model.layers.1.mlp.experts.gate_up_proj_bias"].shape), (4, 128))

    def test_numpy_arrays_bf16_as_uint16(self):
        state = umload.load(self.ckpt, device="cpu", framework="numpy")
        for name, a in state.items():
            self.assertIsInstance(a, np.ndarray, name)
        self.assertEqual(state["model.norm.weight"].dtype, np.uint16)
        self.check(state)

    def test_numpy_when_torch_cannot_be_imported(self):
        code = (
            "import sys; sys.modules['torch'] = None\n"
            "import numpy as np, umload\n"
            f"sd = umload.load({self.ckpt!r}, device='cpu')\n"
            "assert all(type(v) is np.ndarray for v in sd.values())\n"
            "print(sd['model.layers.0.mlp.experts.down_proj'].dtype, len(sd))\n"
        )
        r = common.run_python(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["uint16", "37"])

    def test_framework_torch_required_raises_import_error(self):
        r = common.run_python("import sys; sys.modules['torch'] = None\nimport umload\n"
                              "try:\n"
                              f"    umload.load({self.ckpt!r}, device='cpu', framework='torch')\n"
                              "except ImportError:\n"
                              "    print('import error')\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "import error")

    def test_report_and_digest(self):
        state, report = umload.load(self.ckpt, device="cpu", digest=True, with_report=True)
        self.assertEqual(report["tensors_loaded"], len(state))
        self.assertTrue(report["digest"].startswith("sha256:"))
        self.assertEqual(report["device"], "cpu")
        again = umload.load(self.ckpt, device="cpu", digest=True, with_report=True, layout="hf")[1]
        self.assertEqual(again["digest"], report["digest"])


class progress(common.checkpoint_case):
    def test_callback_sees_every_tensor(self):
        events = []
        state = umload.load(self.ckpt, device="cpu", framework="numpy",
                            progress=lambda *e: events.append(e))
        self.assertTrue(events)
        for e in events:
            self.assertEqual(len(e), 4)
        bytes_done = [e[0] for e in events]
        self.assertEqual(bytes_done, sorted(bytes_done))
        last = events[-1]
        self.assertEqual(last[0], last[1])
        self.assertEqual(last[2], last[3])
        self.assertEqual(last[3], len(state))
        self.assertEqual(last[1], sum(a.nbytes for a in state.values()))

    def test_exception_in_callback_stops_the_load(self):
        class stop_here(Exception):
            pass

        calls = []

        def cb(*e):
            calls.append(e)
            if len(calls) == 3:
                raise stop_here("enough")

        with self.assertRaises(stop_here):
            umload.load(self.ckpt, device="cpu", progress=cb)
        self.assertEqual(len(calls), 3)
        # The module still works afterwards.
        self.assertEqual(len(umload.load(self.ckpt, device="cpu", framework="numpy")), 37)

    def test_not_callable_is_usage_error(self):
        with self.assertRaises(umload.UsageError):
            umload.load(self.ckpt, device="cpu", progress=42)

    def test_gil_released_during_load(self):
        # With a long switch interval a second thread runs only if the load lets go of the GIL.
        bigger = common.synth(os.path.join(self.tmp, "bigger"), "--hidden", "512", "--intermediate", "512")
        count = [0]
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                count[0] += 1

        old = sys.getswitchinterval()
        sys.setswitchinterval(2.0)
        worker = threading.Thread(target=spin)
        during = 0
        try:
            worker.start()
            # On a busy machine the spinner may not be scheduled within one short load; a few
            # tries make "never ran" mean the GIL was held.
            for _ in range(5):
                before = count[0]
                umload.load(bigger, device="cpu", framework="numpy")
                during += count[0] - before
                if during:
                    break
        finally:
            stop.set()
            worker.join()
            sys.setswitchinterval(old)
        self.assertGreater(during, 0)

    def test_callback_from_loading_thread_with_gil(self):
        # The callback may use any Python API (it runs with the GIL held).
        seen = []
        umload.load(self.ckpt, device="cpu", framework="numpy",
                    progress=lambda b, bt, t, tt: seen.append(threading.current_thread().name))
        self.assertTrue(seen)
        self.assertEqual(set(seen), {threading.current_thread().name})


if __name__ == "__main__":
    unittest.main(verbosity=2)
