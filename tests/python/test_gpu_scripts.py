"""The GPU check's Python scripts, run here where there is no GPU, so that the first lent card does
not find them broken (issue 21): bench/gpu/python_check.py --cpu-only (its non-GPU half, and that
it fails when the CLI's digest differs), bench/gpu/peers.py --check-imports (and that it fails
without the module), and the timing and measuring code of peers.py and reference_gpu.py run with
--device cpu on a tiny checkpoint."""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU route even where a GPU is visible

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

torch = common.optional("torch")
transformers = common.optional("transformers")
HAVE = torch is not None and transformers is not None

GPU_DIR = os.path.join(common.SOURCE_DIR, "bench", "gpu")
TINY = ("--hidden", "64", "--intermediate", "96", "--experts", "4", "--layers", "2")


def script(name, *args, env=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, os.path.join(GPU_DIR, name), *args], env=full,
                          capture_output=True, text=True, timeout=600)


def read_json(path):
    with open(path) as f:
        return json.load(f)


@unittest.skipUnless(HAVE, "torch and transformers are not installed")
class gpu_scripts(common.checkpoint_case):
    synth_args = TINY

    def explain(self, r):
        return f"exit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"

    def test_python_check_cpu_only_passes(self):
        out = os.path.join(self.tmp, "python.json")
        r = script("python_check.py", "--umload", common.CLI, "--work", os.path.join(self.tmp, "pc"),
                   "--json", out, "--cpu-only")
        self.assertEqual(r.returncode, 0, self.explain(r))
        doc = read_json(out)
        self.assertEqual(doc["mode"], "cpu-only")
        self.assertEqual(doc["offline"], {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        self.assertEqual(sorted(doc["checks"]), sorted([
            "module imports", "CPU load digest = CLI digest",
            "umload.hf logits = transformers' MXFP4 load (cpu)"]))
        for name, c in doc["checks"].items():
            self.assertTrue(c["ok"], f"{name}: {c}")
        self.assertIn("6 of 6 equal", doc["checks"]["CPU load digest = CLI digest"]["value"])

    def test_python_check_fails_when_the_cli_digest_differs(self):
        # A CLI whose `load` reports another digest: the check must see it and exit 1.
        fake = os.path.join(self.tmp, "fake-umload")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\n"
                    f"if [ \"$1\" = load ]; then '{common.CLI}' \"$@\" | "
                    "sed 's/\"digest\": *\"sha256:[0-9a-f]/\"digest\": \"sha256:X/'; "
                    f"else exec '{common.CLI}' \"$@\"; fi\n")
        os.chmod(fake, os.stat(fake).st_mode | stat.S_IXUSR)
        out = os.path.join(self.tmp, "python-bad.json")
        r = script("python_check.py", "--umload", fake, "--work", os.path.join(self.tmp, "pc-bad"),
                   "--json", out, "--cpu-only")
        self.assertEqual(r.returncode, 1, self.explain(r))
        digest = read_json(out)["checks"]["CPU load digest = CLI digest"]
        self.assertFalse(digest["ok"])
        self.assertIn("0 of 6 equal", digest["value"])

    def test_peers_check_imports(self):
        out = os.path.join(self.tmp, "imports.json")
        r = script("peers.py", self.ckpt, "--umload", common.CLI, "--json", out, "--check-imports")
        self.assertEqual(r.returncode, 0, self.explain(r))
        checks = read_json(out)["checks"]
        for name in ("torch", "transformers", "umload"):
            self.assertTrue(checks[name]["ok"], f"{name}: {checks[name]}")
            self.assertTrue(checks[name]["required"])
        self.assertIn("Mxfp4Config", checks["transformers"]["value"])
        self.assertFalse(checks["accelerate"]["required"])  # reported either way, never fatal

    def test_peers_check_imports_fails_without_the_module(self):
        out = os.path.join(self.tmp, "imports-bad.json")
        r = script("peers.py", "--check-imports", "--json", out, env={"PYTHONPATH": ""})
        self.assertEqual(r.returncode, 1, self.explain(r))
        checks = read_json(out)["checks"]
        self.assertFalse(checks["umload"]["ok"])
        self.assertTrue(checks["torch"]["ok"])

    def test_peers_measure_every_case_on_the_cpu(self):
        out = os.path.join(self.tmp, "peers.json")
        r = script("peers.py", self.ckpt, "--umload", common.CLI, "--json", out, "--runs", "1",
                   "--device", "cpu", "--timeout", "300")
        self.assertEqual(r.returncode, 0, self.explain(r))
        doc = read_json(out)
        self.assertTrue(doc["complete"])
        self.assertEqual(doc["checkpoint_bytes"], sum(os.path.getsize(os.path.join(self.ckpt, f))
                                                      for f in os.listdir(self.ckpt) if f.endswith(".safetensors")))
        self.assertEqual([(row["case"], row["run"]) for row in doc["runs"]],
                         [("umload-cli", 1), ("umload.hf", 1), ("transformers", 1)])
        produced = {}
        for row in doc["runs"]:
            self.assertTrue(row["ok"], row)
            self.assertGreater(row["seconds"], 0)
            self.assertGreaterEqual(row["process_seconds"], row["seconds"])
            self.assertGreater(row["peak_host_bytes"], 0)
            self.assertIsNone(row["peak_device_bytes"])  # no device memory on the CPU
            self.assertTrue(row["page_cache"])
            produced[row["case"]] = row["bytes"]
        # The CLI's report says which clock it used; the two models hold the same bytes.
        self.assertTrue(doc["runs"][0]["seconds_source"].startswith(("timing.total_seconds", "seconds")))
        self.assertEqual(produced["umload.hf"], produced["transformers"])
        for case, s in doc["summary"].items():
            self.assertEqual(s["best_seconds"], min(s["seconds"]), case)
        # The GPU check's table reads this file as peers.py wrote it: one row per case.
        res = os.path.join(self.tmp, "table")
        os.makedirs(res)
        shutil.copy(out, os.path.join(res, "peers.json"))
        with open(os.path.join(res, "steps.tsv"), "w") as f:
            f.write("peers\tok\t9\t\n")
        t = subprocess.run([sys.executable, os.path.join(GPU_DIR, "table.py"), res], capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, MODE="run", CARD="none"))
        self.assertEqual(t.returncode, 0, t.stderr)
        for case in ("umload-cli", "umload.hf", "transformers"):
            best = doc["summary"][case]["best_seconds"]
            self.assertRegex(t.stdout, rf"peer: {case} +{best:.2f} s \(best of 1\)")

    def test_peers_record_what_the_budget_skips(self):
        out = os.path.join(self.tmp, "peers-skipped.json")
        r = script("peers.py", self.ckpt, "--umload", common.CLI, "--json", out, "--runs", "2",
                   "--device", "cpu", "--budget", "1")
        self.assertEqual(r.returncode, 1, self.explain(r))
        doc = read_json(out)
        self.assertTrue(doc["complete"])
        self.assertEqual(len(doc["runs"]), 6)
        for row in doc["runs"]:
            self.assertFalse(row["ok"])
            self.assertEqual(row["error"], "skipped: out of time")

    def test_reference_times_every_run_on_the_cpu(self):
        out = os.path.join(self.tmp, "reference.json")
        r = script("reference_gpu.py", self.ckpt, "--device", "cpu", "--runs", "2", "--json", out)
        self.assertEqual(r.returncode, 0, self.explain(r))
        doc = read_json(out)
        self.assertEqual([row["run"] for row in doc["runs"]], [1, 2])
        best = min(doc["runs"], key=lambda row: row["seconds"])
        self.assertEqual(doc["seconds"], best["seconds"])
        self.assertEqual(doc["best_run"], best["run"])
        import umload
        state = umload.load(self.ckpt, device="cpu")
        for row in doc["runs"]:
            for part in ("read_seconds", "copy_seconds", "dequant_seconds"):
                self.assertGreaterEqual(row[part], 0, part)
            self.assertLessEqual(row["read_seconds"] + row["dequant_seconds"], row["seconds"])
            # The reference holds what umload's BF16 load holds.
            self.assertEqual(row["tensors"], len(state))
            self.assertEqual(row["bytes_produced"], sum(t.numel() * t.element_size() for t in state.values()))
        self.assertGreater(doc["kernel_gbps"], 0)
        self.assertEqual(doc["reader"], "safetensors.safe_open")

    def test_reference_reads_the_same_without_safetensors(self):
        # The GPU machine's PyTorch may come without the safetensors package: its own reader.
        runs = {}
        for reader in ("auto", "pread"):
            out = os.path.join(self.tmp, f"reference-{reader}.json")
            r = script("reference_gpu.py", self.ckpt, "--device", "cpu", "--runs", "1", "--reader", reader,
                       "--json", out)
            self.assertEqual(r.returncode, 0, self.explain(r))
            runs[reader] = read_json(out)
        self.assertEqual(runs["pread"]["reader"], "os.pread (--reader pread)")
        for key in ("tensors", "bytes_produced", "kernel_shape"):
            self.assertEqual(runs["pread"][key], runs["auto"][key], key)


# A libnvidia-ml.so.1 with the three calls peers.py makes: device 0's used memory grows by 1 MiB
# at every query, so a poll that runs shows a peak above the first value.
FAKE_NVML = r"""
typedef struct { unsigned long long total, free, used; } memory;
static unsigned long long queries;
int nvmlInit_v2(void) { return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** handle) {
  *handle = (void*)0x1;
  return index == 0 ? 0 : 2;
}
int nvmlDeviceGetMemoryInfo(void* handle, memory* m) {
  if (handle != (void*)0x1) return 1;
  ++queries;
  m->total = 80ull << 30;
  m->used = (1ull << 30) + queries * (1ull << 20);
  m->free = m->total - m->used;
  return 0;
}
"""

HARNESS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import peers
probe = peers.nvml_probe()
first = probe.used()
rc, out, err, wall, maxrss, grown, timed_out = peers.run_child(
    [sys.executable, "-c", "import time; time.sleep(0.5); print('{\"x\": 1}')"], 30, probe)
cut = peers.run_child(["sleep", "30"], 1, None)
print(json.dumps({"first": first, "second": probe.used(), "rc": rc, "out": peers.last_json(out),
                  "wall": wall, "maxrss": maxrss, "grown": grown, "timed_out": timed_out,
                  "cut_rc": cut[0], "cut_wall": cut[3], "cut_timed_out": cut[6], "cut_grown": cut[5]}))
"""


class peers_harness(unittest.TestCase):
    """peers.py's measuring parts without a GPU: NVML through ctypes (against a stand-in
    library), the polled peak, ru_maxrss of the child, the per-run timeout."""

    @unittest.skipUnless(shutil.which("cc"), "no C compiler for the stand-in libnvidia-ml")
    def test_polls_nvml_and_cuts_a_run_at_its_timeout(self):
        with tempfile.TemporaryDirectory(prefix="umload-nvml-") as tmp:
            with open(os.path.join(tmp, "nvml.c"), "w") as f:
                f.write(FAKE_NVML)
            subprocess.run(["cc", "-shared", "-fPIC", "-o", os.path.join(tmp, "libnvidia-ml.so.1"),
                            os.path.join(tmp, "nvml.c")], check=True)
            env = dict(os.environ, LD_LIBRARY_PATH=tmp)
            r = subprocess.run([sys.executable, "-c", HARNESS, GPU_DIR], env=env, capture_output=True,
                               text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(got["first"], (1 << 30) + (2 << 20))  # the probe's own first query was 1
        self.assertGreater(got["second"], got["first"])
        self.assertEqual(got["rc"], 0)
        self.assertEqual(got["out"], {"x": 1})
        self.assertGreaterEqual(got["wall"], 0.5)
        self.assertGreater(got["maxrss"], 1 << 20)
        # Polled every 20 ms for half a second: many queries above the one before the start.
        self.assertGreaterEqual(got["grown"], 5 << 20)
        self.assertTrue(got["cut_timed_out"])
        self.assertLess(got["cut_wall"], 10)
        self.assertNotEqual(got["cut_rc"], 0)
        self.assertIsNone(got["cut_grown"])  # no probe: not measured


if __name__ == "__main__":
    unittest.main()
