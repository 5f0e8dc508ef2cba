"""Differential fuzzing of umload's safetensors reader against the reference reader (the
`safetensors` package): atheris (libFuzzer for Python) hands both the same bytes; a finding is
a file one reads and the other refuses (other than umload's deliberate refusals, readers.py
DELIBERATE), or a file both read differently. The seeds are every case of cases.py, alone and
with a second, valid tensor after it. Coverage comes from the probe library when it is built
with clang's -fsanitize=fuzzer-no-link (run.sh preloads libFuzzer for it) and from this file.
A finding is written by libFuzzer as crash-<sha1> under -artifact_prefix; add it to cases.py.

    fuzz_reference.py PROBE.so SEED_DIR [libFuzzer flags and corpus dirs]
"""
import os
import sys

try:
    import atheris
    import safetensors  # noqa: F401  (readers needs it; fail here with a clear skip)
except ImportError as e:
    print(f"SKIP: {e.name} is not installed in {sys.executable}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
with atheris.instrument_imports():
    import readers
import cases  # noqa: E402

probe_path, seed_dir, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
umload = readers.Umload(probe_path)


class Disagreement(Exception):
    pass


def one_input(data):
    ours_ok, ours = umload.read(data)
    theirs_ok, theirs = readers.reference(data)
    if ours_ok != theirs_ok:
        if not ours_ok and readers.is_deliberate(ours):
            return
        raise Disagreement(f"umload {'reads' if ours_ok else 'refuses'} the file, the reference "
                           f"{'reads' if theirs_ok else 'refuses'} it: "
                           f"{theirs if ours_ok else ours}")
    if ours_ok:
        diff = readers.differences(ours, theirs)
        if diff:
            raise Disagreement("both read the file, differently: " + "; ".join(diff))


def seeds(folder):
    valid_b = '"zz":{"dtype":"BF16","shape":[2],"data_offsets":[%d,%d]}'
    for case in cases.cases():
        with open(os.path.join(folder, case.name), "wb") as f:
            f.write(case.file())
        n = len(case.data)
        with open(os.path.join(folder, case.name + "+b"), "wb") as f:
            f.write(case.file([valid_b % (n, n + 4)], b"\x80\x3f\x00\x40"))


def main():
    os.makedirs(seed_dir, exist_ok=True)
    seeds(seed_dir)
    atheris.Setup([sys.argv[0]] + flags + [seed_dir], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
