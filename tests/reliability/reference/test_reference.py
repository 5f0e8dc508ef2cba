"""umload's safetensors reader against the reference reader (the `safetensors` package, 0.8.0),
case by case: every case of cases.py, alone as a .safetensors file and placed inside a valid
GPT-OSS checkpoint made with `umload synth`. For each, the verdicts must agree: umload's reader
(through the probe), `umload inspect` on the file and on the checkpoint (exit 0 or 3), and the
reference on the file and on every shard of the checkpoint. Where both read a file, they must
read the same tensors (dtype, shape, bytes) and the same metadata. The few files umload refuses
on purpose (cases.py `stricter`) must be refused by umload and read by the reference, so that a
change on either side shows. Findings of the differential fuzzer (fuzz_reference.py) are added
to cases.py. Prints one line per case and exits 1 on any disagreement, 77 (skip) without the
reference package.

    test_reference.py --probe libumload_reference_probe.so --cli build/umload [--keep DIR]
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import safetensors
    from safetensors import safe_open
except ImportError:
    print("SKIP: the safetensors package is not installed in", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402
import readers  # noqa: E402

REFERENCE_VERSION = "0.8.0"
INDEX = "model.safetensors.index.json"


def split(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def reference_metadata(path):
    try:
        with safe_open(path, framework="numpy") as f:
            return f.metadata() or {}
    except ImportError:
        return None  # numpy missing: metadata not compared


class Checkpoint:
    """The base checkpoint, and a copy of it with one case placed in its last shard."""

    def __init__(self, cli, work):
        self.cli = cli
        self.base = os.path.join(work, "base")
        subprocess.run([cli, "synth", "--preset", "tiny", "--layers", "1", "--experts", "1", "--hidden", "32",
                        "--intermediate", "32", "--vocab", "8", "--out", self.base], check=True,
                       stdout=subprocess.DEVNULL)
        with open(os.path.join(self.base, INDEX)) as f:
            self.index = json.load(f)
        self.shard = sorted(set(self.index["weight_map"].values()))[-1]
        self.header, self.data = split(os.path.join(self.base, self.shard))

    def with_case(self, case, names, where):
        """`names`: {tensor: bytes} the case adds, as the reader that accepts it reads them."""
        target = os.path.join(where, case.name)
        shutil.copytree(self.base, target)
        shift = len(case.data)
        members = []
        own_metadata = any(m.lstrip().startswith('"__metadata') for m in case.members)
        for name, e in self.header.items():
            if name == "__metadata__":
                if not own_metadata:
                    members.append(json.dumps(name) + ":" + json.dumps(e, separators=(",", ":")))
                continue
            moved = dict(e, data_offsets=[e["data_offsets"][0] + shift, e["data_offsets"][1] + shift])
            members.append(json.dumps(name) + ":" + json.dumps(moved, separators=(",", ":")))
        with open(os.path.join(target, self.shard), "wb") as f:
            f.write(case.file(members, self.data))
        index = json.loads(json.dumps(self.index))
        for name, size in names.items():
            index["weight_map"][name] = self.shard
            index["metadata"]["total_size"] += size
        with open(os.path.join(target, INDEX), "w") as f:
            json.dump(index, f)
        return target

    def reference_reads(self, folder):
        shards = sorted(set(json.load(open(os.path.join(folder, INDEX)))["weight_map"].values()))
        for s in shards:
            with open(os.path.join(folder, s), "rb") as f:
                ok, why = readers.reference(f.read())
            if not ok:
                return False, f"{s}: {why}"
        return True, None


def inspect(cli, path):
    r = subprocess.run([cli, "inspect", path, "--json"], capture_output=True, text=True)
    if r.returncode not in (0, 3):
        raise RuntimeError(f"umload inspect {path}: exit {r.returncode}: {r.stderr.strip()}")
    return r.returncode == 0, r.stderr.strip()


def verdict(ok):
    return "reads" if ok else "refuses"


def check_case(case, umload, ckpt, work):
    """Returns the problems with one case ([] when all agree)."""
    problems = []
    blob = case.file()
    path = os.path.join(work, case.name + ".safetensors")
    with open(path, "wb") as f:
        f.write(blob)
    ours_ok, ours = umload.read(blob)
    theirs_ok, theirs = readers.reference(blob)
    cli_ok, cli_why = inspect(ckpt.cli, path)

    if case.stricter:
        if ours_ok or not theirs_ok or not readers.is_deliberate(ours):
            problems.append(f"deliberately stricter: umload {verdict(ours_ok)} ({ours if not ours_ok else ''}), "
                            f"the reference {verdict(theirs_ok)}; expected umload to refuse on purpose and "
                            "the reference to read it")
    elif ours_ok != theirs_ok:
        problems.append(f"file: umload {verdict(ours_ok)}, the reference {verdict(theirs_ok)} "
                        f"({ours if not ours_ok else theirs})")
    elif ours_ok:
        problems += ["file: " + d for d in readers.differences(ours, theirs)]
        meta_ours, meta_theirs = umload.metadata, reference_metadata(path)
        if meta_theirs is not None and meta_ours != meta_theirs:
            problems.append(f"file: metadata differs: umload {meta_ours}, the reference {meta_theirs}")
    if cli_ok != ours_ok:
        problems.append(f"umload inspect on the file {verdict(cli_ok)} ({cli_why}) but its reader "
                        f"{verdict(ours_ok)}")

    # The same case inside a valid GPT-OSS checkpoint.
    names = {}
    reading = theirs if theirs_ok else ours if ours_ok else {}
    for name, (_, _, data) in reading.items():
        names[name] = len(data)
    folder = ckpt.with_case(case, names, work)
    ckpt_theirs_ok, ckpt_why = ckpt.reference_reads(folder)
    ckpt_ours_ok, ckpt_ours_why = inspect(ckpt.cli, folder)
    if case.stricter:
        if ckpt_ours_ok or not ckpt_theirs_ok:
            problems.append(f"checkpoint: umload inspect {verdict(ckpt_ours_ok)}, the reference "
                            f"{verdict(ckpt_theirs_ok)}; expected a deliberate refusal")
    elif ckpt_ours_ok != ckpt_theirs_ok:
        problems.append(f"checkpoint: umload inspect {verdict(ckpt_ours_ok)} ({ckpt_ours_why}), the reference "
                        f"{verdict(ckpt_theirs_ok)} ({ckpt_why})")
    if ckpt_theirs_ok != theirs_ok and not case.stricter:
        problems.append(f"the case reads differently inside a checkpoint: the reference {verdict(theirs_ok)} "
                        f"the file, {verdict(ckpt_theirs_ok)} the checkpoint ({ckpt_why})")
    return problems, ours_ok, theirs_ok, ckpt_ours_ok, ckpt_theirs_ok


def check_fnuz_convert(cli, ckpt, work):
    """The FNUZ FP8 tensors are copied through by convert, byte for byte, as the reference reads
    them before and after."""
    case = next(c for c in cases.cases() if c.name == "fnuz_dtypes")
    ok, theirs = readers.reference(case.file())
    assert ok, theirs
    folder = ckpt.with_case(case, {n: len(d) for n, (_, _, d) in theirs.items()}, os.path.join(work, "convert"))
    out = os.path.join(work, "convert", "out")
    r = subprocess.run([cli, "convert", folder, "--out", out, "--device", "cpu"], capture_output=True, text=True)
    if r.returncode != 0:
        return [f"convert of a checkpoint holding FNUZ tensors: exit {r.returncode}: {r.stderr.strip()}"]
    found = {}
    for name in os.listdir(out):
        if name.endswith(".safetensors"):
            with open(os.path.join(out, name), "rb") as f:
                ok, reading = readers.reference(f.read())
            if not ok:
                return [f"convert wrote {name}, which the reference refuses: {reading}"]
            found.update({k: v for k, v in reading.items() if k in theirs})
    return [f"convert output: {d}" for d in readers.differences(found, theirs)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--keep", help="write the corpus here and keep it")
    args = ap.parse_args()
    if safetensors.__version__ != REFERENCE_VERSION:
        print(f"note: comparing against safetensors {safetensors.__version__}, not {REFERENCE_VERSION}")
    umload = readers.Umload(args.probe)
    work = args.keep or tempfile.mkdtemp(prefix="umload-reference-")
    os.makedirs(work, exist_ok=True)
    failures = 0
    try:
        ckpt = Checkpoint(args.cli, work)
        all_cases = cases.cases()
        names = [c.name for c in all_cases]
        assert len(names) == len(set(names)), "case names repeat"
        for case in all_cases:
            problems, ours, theirs, ckpt_ours, ckpt_theirs = check_case(case, umload, ckpt, work)
            tag = "stricter" if case.stricter else ("agree" if not problems else "DIFFER")
            print(f"{tag:8s} {case.name:40s} file: umload {verdict(ours):7s} reference {verdict(theirs):7s}  "
                  f"checkpoint: umload {verdict(ckpt_ours):7s} reference {verdict(ckpt_theirs)}")
            for p in problems:
                print("         " + p)
            failures += bool(problems)
        for p in check_fnuz_convert(args.cli, ckpt, work):
            print("DIFFER   " + p)
            failures += 1
        print(f"{len(all_cases)} cases against safetensors {safetensors.__version__}: "
              f"{len(all_cases) - failures} agree (or differ only on purpose), {failures} disagree")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
