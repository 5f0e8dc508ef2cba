#!/usr/bin/env python3
"""The GPU peers: one checkpoint loaded onto one GPU the ways people load it, each in a process of
its own (a fresh CUDA context each), timed and measured the same way.

    peers.py CKPT --umload BIN --json FILE [--runs 2] [--timeout S] [--budget S] [--bench FILE]
    peers.py [CKPT] --check-imports [--json FILE]     # no GPU needed: can the cases run here?

Cases, what a user of each writes:
  umload-cli     `umload load CKPT --device cuda --io buffered --keep-cache --json`
  umload.hf      `umload.hf.from_pretrained(CKPT, device="cuda")`: a GptOssForCausalLM
  transformers   `AutoModelForCausalLM.from_pretrained(CKPT, quantization_config=
                 Mxfp4Config(dequantize=True), dtype=torch.bfloat16, device_map="cuda")`

Every case runs --runs times, the rounds interleaved (each case once, then each again), with the
same page-cache state before each run: the shards are read through once unless they live on a
tmpfs (/dev/shm), whose pages are the page cache already. For each run:
  seconds          the load itself. The Python cases time the call after their imports (the lazy
                   ones too) up to torch.cuda.synchronize(); the process has no CUDA context
                   before the call, so the call creates it, as the CLI's backend does. The CLI's
                   is its report's timing.total_seconds (from backend creation, allocations
                   included) where the report has it, else its `seconds` (named in
                   seconds_source).
  process_seconds  the child process, start to exit, as the parent sees it.
  peak_device_bytes  the GPU's used memory polled through NVML (else nvidia-smi) every 20 ms while
                   the child runs, less what was used before it started (its CUDA context
                   included; a peak shorter than the interval can be missed); where neither
                   answers, torch.cuda.max_memory_allocated() for the Python cases (for
                   umload.hf that is PyTorch's allocator alone: umload allocates its own) and
                   the report's peak_device_bytes for the CLI. peak_device_source says which.
                   The torch and report figures are kept beside it.
  peak_host_bytes  ru_maxrss of the child (os.wait4), the interpreter and its imports included.
Each case's summary gives every run and the best (the lowest seconds of the runs that passed).
The pinned host-to-device limit the load is held against is umload_gpu_bench's pinned_h2d row
(bench.txt); --bench FILE copies it in. The JSON is rewritten after every run, so a run cut off
still leaves what it measured.

--device cpu runs the same harness on the CPU (no device memory), to check it where there is no
GPU. transformers and the Hub run offline (HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

CASES = ("umload-cli", "umload.hf", "transformers")
POLL_SECONDS = 0.02
T0 = time.perf_counter()


# ---------------------------------------------------------------------------------------------
# The page cache, the same before every run (reference_gpu.py uses these too).

def shards(ckpt):
    return sorted(glob.glob(os.path.join(ckpt, "*.safetensors")))


def filesystem_type(path):
    """The type of the filesystem `path` is on, from the longest matching /proc/mounts entry."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1].replace("\\040", " ")
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def warm_page_cache(files):
    """Reads every file through once so that the run after finds it in the page cache; nothing to
    do on a tmpfs. Returns what was done, for the JSON."""
    if files and all(filesystem_type(f) == "tmpfs" for f in files):
        return "tmpfs: the shards' pages are the page cache"
    t0 = time.perf_counter()
    total = 0
    buf = bytearray(16 << 20)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                total += n
    return f"read through before the run: {total} B in {time.perf_counter() - t0:.2f} s"


# ---------------------------------------------------------------------------------------------
# Device memory, polled from outside the process that loads.

class nvml_probe:
    """NVML's used bytes of one GPU, through libnvidia-ml itself (no Python package needed)."""
    source = "NVML nvmlDeviceGetMemoryInfo, device 0"

    class _memory(ctypes.Structure):
        _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                    ("used", ctypes.c_ulonglong)]

    def __init__(self, index=0):
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        if self.lib.nvmlInit_v2() != 0:
            raise OSError("nvmlInit_v2 failed")
        self.handle = ctypes.c_void_p()
        if self.lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(self.handle)) != 0:
            raise OSError(f"nvmlDeviceGetHandleByIndex_v2({index}) failed")
        self.used()

    def used(self):
        m = self._memory()
        if self.lib.nvmlDeviceGetMemoryInfo(self.handle, ctypes.byref(m)) != 0:
            raise OSError("nvmlDeviceGetMemoryInfo failed")
        return m.used


class nvidia_smi_probe:
    """nvidia-smi's memory.used of GPU 0, in MiB (slower than NVML: each poll is a process)."""
    source = "nvidia-smi --query-gpu=memory.used, GPU 0 (MiB)"

    def __init__(self):
        self.used()

    def used(self):
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                              "-i", "0"], capture_output=True, text=True, timeout=10, check=True).stdout
        return int(float(out.split()[0]) * (1 << 20))


def device_probe():
    """The first probe that answers, or None (with why) where the machine has neither."""
    why = []
    for probe in (nvml_probe, nvidia_smi_probe):
        try:
            return probe(), None
        except (OSError, subprocess.SubprocessError, ValueError, IndexError, AttributeError) as e:
            why.append(f"{probe.__name__}: {e}")
    return None, "; ".join(why)


# ---------------------------------------------------------------------------------------------
# One run: a child process, polled while it runs.

def run_child(cmd, timeout, probe, env=None):
    """Runs `cmd` in a session of its own; returns (rc, stdout, stderr, wall seconds, ru_maxrss
    bytes, peak used device bytes above the start or None, timed_out)."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    baseline = peak = None
    if probe is not None:
        try:
            baseline = peak = probe.used()
        except (OSError, subprocess.SubprocessError, ValueError):
            probe = None
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True, env=env)
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - t0 > timeout:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended meanwhile; wait4 reaps it
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        if probe is not None:
            try:
                peak = max(peak, probe.used())
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    out.close()
    err.close()
    grown = None if baseline is None else max(0, peak - baseline)
    return proc.returncode, stdout, stderr, wall, usage.ru_maxrss * 1024, grown, timed_out


def last_json(text):
    """The last line of `text` that parses as a JSON object, or the whole text as one, or None."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except ValueError:
        return None


def cli_command(umload, ckpt, device):
    return [umload, "load", ckpt, "--device", device, "--io", "buffered", "--keep-cache", "--json"]


def cli_seconds(report):
    """(seconds, source) from a `load --json` report: timing.total_seconds where it is there."""
    timing = report.get("timing")
    if isinstance(timing, dict) and timing.get("total_seconds") is not None:
        return float(timing["total_seconds"]), "timing.total_seconds (from backend creation)"
    return float(report["seconds"]), "seconds (the report has no timing: it starts after backend creation and allocations)"


def measure(case, args, probe, run_index, timeout):
    row = {"case": case, "run": run_index, "ok": False}
    row["page_cache"] = warm_page_cache(shards(args.checkpoint))
    if case == "umload-cli":
        cmd = cli_command(args.umload, args.checkpoint, args.device)
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", case, args.checkpoint,
               "--device", args.device]
    row["command"] = " ".join(cmd)
    rc, stdout, stderr, wall, maxrss, device_grown, timed_out = run_child(cmd, timeout, probe)
    row.update(rc=rc, process_seconds=round(wall, 3), peak_host_bytes=maxrss, timed_out=timed_out)
    result = last_json(stdout)
    if timed_out:
        row["error"] = f"timed out after {timeout:.0f} s"
    elif rc != 0 or result is None:
        row["error"] = (stderr.strip() or stdout.strip() or f"exit {rc}")[-600:]
    else:
        row["ok"] = True
        if case == "umload-cli":
            row["seconds"], row["seconds_source"] = cli_seconds(result)
            row["report_peak_device_bytes"] = result.get("peak_device_bytes")
            row["report_peak_rss_bytes"] = result.get("peak_rss_bytes")
            row["bytes"] = result.get("bytes_produced")
            row["tensors"] = result.get("tensors_loaded")
            if isinstance(result.get("timing"), dict):
                row["timing"] = result["timing"]
            for part in ("read_seconds", "copy_seconds", "decode_seconds"):
                row[part] = result.get(part)
        else:
            row["seconds"] = result["seconds"]
            row["seconds_source"] = "the call" + ("" if args.device == "cpu" else ", to torch.cuda.synchronize()")
            for key in ("torch_max_allocated_bytes", "bytes", "tensors", "import_seconds", "versions"):
                row[key] = result.get(key)
    if device_grown is not None:
        row["peak_device_bytes"] = device_grown
        row["peak_device_source"] = probe.source + ", less what was used before the process started"
    elif row.get("torch_max_allocated_bytes") is not None and args.device != "cpu":
        row["peak_device_bytes"] = row["torch_max_allocated_bytes"]
        row["peak_device_source"] = "torch.cuda.max_memory_allocated (no NVML or nvidia-smi)" + (
            ": PyTorch's allocator only, without umload's own allocations" if case == "umload.hf" else "")
    elif row.get("report_peak_device_bytes") is not None and args.device != "cpu":
        row["peak_device_bytes"] = row["report_peak_device_bytes"]
        row["peak_device_source"] = "the report's peak_device_bytes (no NVML or nvidia-smi)"
    else:
        row["peak_device_bytes"], row["peak_device_source"] = None, "not measured"
    return row


def summarize(runs):
    """Per case: every run's seconds and the best run that passed."""
    out = {}
    for case in CASES:
        mine = [r for r in runs if r["case"] == case]
        if not mine:
            continue
        good = [r for r in mine if r["ok"]]
        best = min(good, key=lambda r: r["seconds"]) if good else None
        out[case] = {
            "runs": len(mine),
            "passed": len(good),
            "seconds": [r.get("seconds") for r in mine],
            "best_seconds": best["seconds"] if best else None,
            "best_run": best["run"] if best else None,
            "peak_device_bytes": best["peak_device_bytes"] if best else None,
            "peak_host_bytes": best["peak_host_bytes"] if best else None,
        }
    return out


def h2d_from_bench(path):
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"result name=pinned_h2d bytes=\S+ ms=\S+ gbps=(\S+)", line)
                if m:
                    return float(m.group(1))
    except OSError:
        pass
    return None


def write_json(path, doc):
    """Whole-file rewrite through a rename, so a reader never sees half a file."""
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def card_name():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader", "-i", "0"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_peers(args):
    probe, no_probe = (None, "the CPU") if args.device == "cpu" else device_probe()
    deadline = time.perf_counter() + args.budget if args.budget else None
    files = shards(args.checkpoint)
    doc = {
        "checkpoint": os.path.realpath(args.checkpoint),
        "checkpoint_bytes": sum(os.path.getsize(f) for f in files),
        "shards": len(files),
        "filesystem": filesystem_type(files[0]) if files else None,
        "device": args.device,
        "card": card_name() if args.device != "cpu" else None,
        "device_memory_probe": probe.source if probe else f"none ({no_probe})",
        "statistic": f"every run, and the best (lowest seconds) of {args.runs}",
        "order": "interleaved rounds: " + ", ".join(CASES) + ", then again",
        "python": sys.executable,
        "h2d": {"source": "umload_gpu_bench's pinned_h2d row (bench.txt; the table reads it)",
                "gbps": h2d_from_bench(args.bench) if args.bench else None},
        "runs": [],
        "complete": False,
    }
    write_json(args.json, doc)
    for run_index in range(1, args.runs + 1):
        for case in CASES:
            timeout = args.timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.perf_counter())
            if timeout < 5:
                doc["runs"].append({"case": case, "run": run_index, "ok": False, "error": "skipped: out of time"})
            else:
                row = measure(case, args, probe, run_index, timeout)
                doc["runs"].append(row)
                shown = f"{row['seconds']:.2f} s" if row["ok"] else "FAILED: " + row["error"].splitlines()[-1][:160]
                dev = row.get("peak_device_bytes")
                print(f"{case} run {run_index}: {shown}, process {row['process_seconds']:.2f} s, peak host "
                      f"{row['peak_host_bytes'] / 2**30:.2f} GiB, peak device "
                      f"{'n/a' if dev is None else f'{dev / 2**30:.2f} GiB'}", flush=True)
            doc["summary"] = summarize(doc["runs"])
            write_json(args.json, doc)
    doc["complete"] = True
    write_json(args.json, doc)
    return 0 if all(r["ok"] for r in doc["runs"]) else 1


# ---------------------------------------------------------------------------------------------
# A child: one Python case, one JSON line.

def model_summary(model):
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    return len(tensors), sum(t.numel() * t.element_size() for t in tensors.values())


def child(case, ckpt, device):
    import importlib
    import resource
    from importlib.metadata import version

    import torch
    import transformers
    # What each call would import lazily, imported before the timer.
    importlib.import_module("transformers.models.gpt_oss.modeling_gpt_oss")
    if case == "umload.hf":
        import umload
        importlib.import_module("umload.hf")
        versions = {"umload": umload.__version__}
    else:
        importlib.import_module("transformers.quantizers.quantizer_mxfp4")
        versions = {}
    versions.update(torch=torch.__version__, transformers=transformers.__version__)
    if device != "cpu":
        try:
            versions["accelerate"] = version("accelerate")
        except Exception:
            versions["accelerate"] = None
    gpu = device != "cpu"
    t1 = time.perf_counter()
    if case == "umload.hf":
        model = umload.hf.from_pretrained(ckpt, device=device)
    else:
        kwargs = {"device_map": device} if gpu else {}  # on the CPU: its default, no accelerate
        model = transformers.AutoModelForCausalLM.from_pretrained(
            ckpt, quantization_config=transformers.Mxfp4Config(dequantize=True), dtype=torch.bfloat16,
            **kwargs)
    if gpu:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    tensors, produced = model_summary(model)
    print(json.dumps({
        "case": case,
        "seconds": round(t2 - t1, 3),
        "import_seconds": round(t1 - T0, 3),
        "torch_max_allocated_bytes": torch.cuda.max_memory_allocated() if gpu else None,
        "child_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "devices": sorted({str(p.device) for p in model.parameters()}),
        "tensors": tensors,
        "bytes": produced,
        "versions": versions,
    }))
    return 0


# ---------------------------------------------------------------------------------------------
# --check-imports: can the cases run under this interpreter?

def check_imports(args):
    checks = {}

    def check(name, fn, required=True):
        try:
            value = fn()
            checks[name] = {"ok": True, "value": value, "required": required}
        except Exception as e:  # an import can fail with more than ImportError
            checks[name] = {"ok": False, "value": f"{type(e).__name__}: {e}"[:300], "required": required}
        c = checks[name]
        print(f"{'ok  ' if c['ok'] else ('FAIL' if required else 'miss')} {name}: {c['value']}")

    def torch_version():
        import torch
        return f"{torch.__version__} (CUDA {torch.version.cuda})"

    def transformers_names():
        import transformers
        names = ("AutoModelForCausalLM", "Mxfp4Config")
        for name in names:
            getattr(transformers, name)  # transformers imports its names when first asked
        return f"{transformers.__version__}, " + " and ".join(names)

    def accelerate_version():
        import accelerate
        return accelerate.__version__

    def umload_module():
        import importlib

        import umload
        importlib.import_module("umload.hf")
        return f"{umload.__version__} from {umload.__file__}, umload.hf"

    check("torch", torch_version)
    check("transformers", transformers_names)
    check("accelerate", accelerate_version, required=False)
    check("umload", umload_module)
    if args.umload:
        ok = os.access(args.umload, os.X_OK)
        checks["umload CLI"] = {"ok": ok, "value": args.umload + ("" if ok else ": not executable"),
                                "required": False}
        print(f"{'ok  ' if ok else 'miss'} umload CLI: {checks['umload CLI']['value']}")
    write_json(args.json, {"mode": "check-imports", "python": sys.executable, "checks": checks,
                           "offline": {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}})
    return 0 if all(c["ok"] for c in checks.values() if c["required"]) else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--umload", help="the umload CLI")
    parser.add_argument("--json", help="write the results here (rewritten after every run)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each case (default 2)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds one run may take (default 240)")
    parser.add_argument("--budget", type=float, help="seconds for all runs; later runs are skipped")
    parser.add_argument("--bench", help="umload_gpu_bench's output, for the pinned H2D limit")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (the harness's own check)")
    parser.add_argument("--check-imports", action="store_true", help="only check that the cases can import")
    parser.add_argument("--child", choices=CASES[1:], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.checkpoint, args.device)
    if args.check_imports:
        return check_imports(args)
    if not args.checkpoint or not args.umload or args.runs < 1:
        parser.error("CKPT, --umload and --runs >= 1 are needed to measure")
    if not shards(args.checkpoint):
        parser.error(f"{args.checkpoint}: no *.safetensors")
    return run_peers(args)


if __name__ == "__main__":
    sys.exit(main())
