"""Expert-parallel loading under a real torchrun: two CPU ranks, each loading with umload's
defaults from torchrun's variables, gather their slices over gloo, and the gathered tensors
equal an unsharded load bit for bit. Skips where torch or its launcher is missing.

Debian's torch 1.13 on Python 3.11 needs `--redirects 1 --tee 1`: its launcher's default "0"
does not parse as a stream choice there (Python 3.11 no longer lists the zero flag of an IntFlag
when iterating it). Both flags are accepted by later torch versions too."""
import glob
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

try:
    import torch.distributed as dist  # noqa: F401
    HAVE_TORCH = dist.is_available()
except ImportError:
    HAVE_TORCH = False

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchrun", "worker.py")


@unittest.skipUnless(HAVE_TORCH, "torch with torch.distributed is not installed")
class torchrun_ranks(common.checkpoint_case):
    def test_two_ranks_gather_to_the_unsharded_load(self):
        results = os.path.join(self.tmp, "results")
        os.makedirs(results)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        run = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
             "--nproc_per_node", "2", "--redirects", "1", "--tee", "1", WORKER, self.ckpt, results],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        self.assertEqual(run.returncode, 0, run.stdout[-4000:])
        reports = {}
        for path in glob.glob(os.path.join(results, "rank*.json")):
            with open(path) as f:
                r = json.load(f)
            reports[r["rank"]] = r
        self.assertEqual(sorted(reports), [0, 1], run.stdout[-4000:])
        full = umload.load(self.ckpt, device="cpu", framework="numpy")
        for rank, r in reports.items():
            self.assertEqual(r["world_size"], 2)
            self.assertEqual(r["tensors"], len(full))
            self.assertTrue(r["experts"], "no expert tensors on rank %d" % rank)
            for name, count in r["experts"].items():
                self.assertEqual(count, full[name].shape[0] // 2, name)
        self.assertEqual(reports[0]["mismatched"], [])


import umload  # noqa: E402

if __name__ == "__main__":
    unittest.main(verbosity=2)
