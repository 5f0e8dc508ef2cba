"""Expert-parallel loading under a real torchrun (PyPI torch's launcher, gloo, CPU ranks): each
rank loads its expert slice with umload's defaults (RANK, WORLD_SIZE from torchrun), the ranks
gather their slices, and the gathered tensors equal an unsharded load bit for bit; with 2 and 4
ranks. Every address is pinned to the loopback interface (torchrun_launch.py), so a machine
whose host name does not resolve runs it as fast as any other; one test proves that by running
under a host name that cannot resolve (a UTS namespace of its own; skipped where unshare is not
permitted)."""
import glob
import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import torchrun_launch  # noqa: E402

torch = common.optional("torch")
HAVE_DIST = torch is not None and torch.distributed.is_available()

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchrun", "worker.py")
DTENSOR_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchrun", "dtensor_worker.py")
UNRESOLVABLE = "umload-no-such-host.invalid"  # RFC 6761: .invalid never resolves


def can_unshare_uts():
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run([unshare, "--uts", "hostname", UNRESOLVABLE], capture_output=True)
    return unshare if probe.returncode == 0 else None


@unittest.skipUnless(HAVE_DIST, "torch with torch.distributed is not installed")
class torchrun_ranks(common.checkpoint_case):
    def launch(self, nproc, prefix=(), **options):
        results = os.path.join(self.tmp, "results-%d-%d" % (nproc, len(prefix)))
        os.makedirs(results)
        run = torchrun_launch.run(nproc, WORKER, self.ckpt, results, prefix=prefix, **options)
        self.assertEqual(run.returncode, 0, run.stdout[-4000:])
        reports = {}
        for path in glob.glob(os.path.join(results, "rank*.json")):
            with open(path) as f:
                r = json.load(f)
            reports[r["rank"]] = r
        self.assertEqual(sorted(reports), list(range(nproc)), run.stdout[-4000:])
        return reports

    def check_gathered(self, nproc, reports):
        full = umload.load(self.ckpt, device="cpu", framework="numpy")
        for rank, r in reports.items():
            self.assertEqual(r["world_size"], nproc)
            self.assertEqual(r["tensors"], len(full))
            self.assertTrue(r["experts"], "no expert tensors on rank %d" % rank)
            for name, count in r["experts"].items():
                self.assertEqual(count, full[name].shape[0] // nproc, name)
        self.assertGreater(reports[0]["compared"], 0)
        self.assertEqual(reports[0]["mismatched"], [])

    def test_two_ranks_gather_to_the_unsharded_load(self):
        self.check_gathered(2, self.launch(2))

    def test_four_ranks_gather_to_the_unsharded_load(self):
        self.check_gathered(4, self.launch(4))

    def launch_dtensor(self, nproc, names):
        results = os.path.join(self.tmp, "dtensor-%d-%s" % (nproc, names))
        os.makedirs(results)
        run = torchrun_launch.run(nproc, DTENSOR_WORKER, self.ckpt, results, names)
        self.assertEqual(run.returncode, 0, run.stdout[-4000:])
        reports = {}
        for path in glob.glob(os.path.join(results, "rank*.json")):
            with open(path) as f:
                r = json.load(f)
            reports[r["rank"]] = r
        self.assertEqual(sorted(reports), list(range(nproc)), run.stdout[-4000:])
        whole, whole_report = umload.load(self.ckpt, device="cpu", rank=0, world_size=1, names=names,
                                          with_report=True)
        for rank, r in reports.items():
            self.assertEqual(r["names"], sorted(whole))
            for problem in ("not_dtensor", "wrong_placement", "wrong_local", "mismatched"):
                self.assertEqual(r[problem], [], "rank %d: %s" % (rank, problem))
            self.assertEqual(r["sharded"], sum(".mlp.experts." in n for n in whole))
            self.assertGreater(r["sharded"], 0)
            self.assertGreater(r["replicated"], 0)
        # Each rank read only its experts' bytes: the ranks' shares add up to the whole.
        self.assertEqual(sum(r["quantized_bytes"] for r in reports.values()), whole_report["quantized_bytes"])

    def test_device_mesh_load_gives_dtensors_on_two_ranks(self):
        self.launch_dtensor(2, "hf")

    def test_device_mesh_load_gives_nemo_named_dtensors_on_four_ranks(self):
        self.launch_dtensor(4, "nemo")

    def test_a_host_name_that_does_not_resolve_changes_nothing(self):
        unshare = can_unshare_uts()
        if unshare is None:
            self.skipTest("cannot give a process a host name of its own here (unshare --uts)")
        prefix = (unshare, "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', UNRESOLVABLE)
        check = subprocess.run([*prefix, sys.executable, "-c",
                                "import socket; socket.getaddrinfo(socket.gethostname(), None)"],
                               capture_output=True, text=True)
        self.assertNotEqual(check.returncode, 0, "the host name resolved after all")
        # An unpinned rendezvous waits out timeouts of minutes here; a LaunchError after the
        # rendezvous timeout says it hung.
        self.check_gathered(2, self.launch(2, prefix=prefix, timeout=4 * torchrun_launch.RENDEZVOUS_TIMEOUT_S))

    def test_a_rendezvous_that_cannot_complete_fails_with_torchruns_reason(self):
        # Two nodes asked for, one started: the rendezvous times out after join_timeout and
        # torchrun exits non-zero naming it, instead of waiting (LaunchError if it waits on).
        run = torchrun_launch.run(1, WORKER, self.ckpt, self.tmp, nnodes=2, join_timeout=3, timeout=60)
        self.assertNotEqual(run.returncode, 0, run.stdout[-4000:])
        self.assertIn("RendezvousTimeoutError", run.stdout)

    def test_a_run_past_its_time_is_killed_with_a_clear_message(self):
        sleeper = os.path.join(self.tmp, "sleeper.py")
        with open(sleeper, "w") as f:
            f.write("import time\ntime.sleep(600)\n")
        with self.assertRaises(torchrun_launch.LaunchError) as caught:
            torchrun_launch.run(1, sleeper, timeout=10)
        self.assertIn("did not finish within 10 s", str(caught.exception))


import umload  # noqa: E402

if __name__ == "__main__":
    unittest.main(verbosity=2)
