"""`umload matrix run` and `umload matrix compare` on a tiny checkpoint.

  matrix_test.py UMLOAD SOURCE_DIR          run, JSON lines, JUnit, compare, --expect, bad input
  matrix_test.py UMLOAD SOURCE_DIR --html   the HTML report as headless Chromium renders it

Every profile on every device of this machine must give one digest; a second machine's file
doctored in one run must make compare fail naming that machine, profile and the first tensor
that differs; the JUnit file must parse and count every run; the HTML page must hold the chart
(checked in the DOM Chromium built, not in pixels).
"""
import copy
import html.parser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

UMLOAD, SOURCE_DIR = sys.argv[1], sys.argv[2]
HTML_ONLY = "--html" in sys.argv[3:]
SKIP = 77  # ctest SKIP_RETURN_CODE


def umload(*args, expect=0):
    p = subprocess.run([UMLOAD, *map(str, args)], capture_output=True, text=True)
    assert p.returncode == expect, f"umload {' '.join(map(str, args))}: exit {p.returncode}, wanted {expect}\n{p.stdout}\n{p.stderr}"
    return p


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def git_head():
    p = subprocess.run(["git", "-C", SOURCE_DIR, "rev-parse", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "unknown"


def doctored_machine(rows, host, profile):
    """A copy of `rows` as if from machine `host`, whose `profile` run loaded one tensor wrong."""
    out = copy.deepcopy(rows)
    victim = None
    for r in out:
        r["machine"]["host"] = host
        if r["run"]["profile"] == profile and r["run"]["status"] == "ok" and victim is None:
            names = sorted(r["run"]["tensors"])
            victim = names[3]
            r["run"]["tensors"][victim] = "sha256:" + "0" * 64
            r["run"]["digest"] = "sha256:" + "f" * 64
    assert victim, f"no ok run of {profile} to doctor"
    return out, victim


def check_run_and_compare(work):
    ckpt = os.path.join(work, "tiny")
    umload("synth", "--preset", "tiny", "--out", ckpt)
    runs = os.path.join(work, "runs.jsonl")
    junit = os.path.join(work, "junit.xml")
    p = umload("matrix", "run", ckpt, "--out", runs, "--junit", junit)
    print(p.stdout)

    # Every built-in profile and the live machine, on every device here.
    rows = read_jsonl(runs)
    platform = json.loads(umload("platform", "--json").stdout)
    devices = 1 + (platform["device"]["device_count"] if platform["device"]["present"] else 0)
    built_in = {r["run"]["profile"] for r in rows} - {"live"}
    assert {"h100-sxm", "h200", "gh200", "dgx-spark", "host"} <= built_in, built_in
    assert len(rows) == devices * (1 + len(built_in)), (len(rows), devices, built_in)
    ok = [r for r in rows if r["run"]["status"] == "ok"]
    cpu_ok = [r for r in ok if r["run"]["device"] == "cpu"]
    assert len(cpu_ok) == 1 + len(built_in), "every profile loads the tiny checkpoint on the CPU"
    assert len({r["run"]["digest"] for r in ok}) == 1, {r["run"]["profile"]: r["run"]["digest"] for r in ok}
    assert len({json.dumps(r["run"]["tensors"], sort_keys=True) for r in ok}) == 1
    head = git_head()
    for r in rows:
        assert r["format"] == "umload-matrix/1"
        m = r["machine"]
        assert m["host"] == os.uname().nodename, m
        assert m["cpu"] and m["cpus"] >= 1 and m["umload_version"], m
        assert m["umload_commit"] == head, (m["umload_commit"], head)
        assert (m["gpu"] is None) == (not platform["device"]["present"]), m
    for r in ok:
        run = r["run"]
        assert run["memory_model"] and run["strategy"] and run["loaded_on"], run
        assert run["seconds"]["total"] > 0 and run["bytes"]["produced"] > 0, run
        assert run["peaks"]["host"] > 0 and run["peaks"]["predicted_host"] > 0, run
        assert run["tensors"] and all(d.startswith("sha256:") for d in run["tensors"].values())
        assert "page_cache_bytes_after" in run
    models = {r["run"]["profile"]: r["run"]["memory_model"] for r in cpu_ok}
    assert models["gh200"] == "coherent" and models["dgx-spark"] == "integrated" and models["host"] == "host", models
    print(f"matrix run: {len(rows)} runs, one digest")

    # JUnit: a real parse, one test case per run, no failures.
    suites = ET.parse(junit).getroot()
    assert suites.tag == "testsuites" and int(suites.get("tests")) == len(rows), suites.attrib
    cases = suites.findall("./testsuite/testcase")
    assert len(cases) == len(rows), (len(cases), len(rows))
    assert int(suites.get("failures")) == 0 and not suites.findall(".//failure")
    assert {c.get("name") for c in cases} == {f'{r["run"]["profile"]} on {r["run"]["device"]}' for r in rows}
    print(f"junit: {len(cases)} test cases parsed")

    # The same bytes on a second machine agree; --expect from a plain load agrees.
    other = copy.deepcopy(rows)
    for r in other:
        r["machine"]["host"] = "second-machine"
    second = os.path.join(work, "second.jsonl")
    write_jsonl(second, other)
    p = umload("matrix", "compare", runs, second)
    assert "every digest agrees" in p.stdout and "second-machine" in p.stdout, p.stdout
    expect = os.path.join(work, "expect.json")
    with open(expect, "w") as f:
        f.write(umload("load", ckpt, "--digest", "--json", "--progress", "none").stdout)
    umload("matrix", "compare", runs, second, "--expect", expect)

    # A doctored second machine: compare fails naming it, the profile and the first tensor.
    bad, victim = doctored_machine(rows, "doctored-gh200-box", "gh200")
    doctored = os.path.join(work, "doctored.jsonl")
    write_jsonl(doctored, bad)
    p = umload("matrix", "compare", runs, doctored, expect=8)
    message = [line for line in p.stderr.splitlines() if "differs" in line]
    assert len(message) == 1, p.stderr
    assert "doctored-gh200-box / gh200 / cpu" in message[0] and f"first differing tensor {victim}" in message[0], message
    assert f"1 of {2 * len(ok)} digests DIFFER" in p.stdout, p.stdout
    judged = json.loads(umload("matrix", "compare", runs, doctored, "--json", expect=8).stdout)
    assert judged["agree"] is False and judged["counts"]["differs"] == 1, judged["counts"]
    [differs] = [r for r in judged["runs"] if r["agreement"] == "DIFFERS"]
    assert differs["machine"] == "doctored-gh200-box" and differs["run"]["profile"] == "gh200"
    assert differs["first_differing_tensor"] == victim
    junit_bad = os.path.join(work, "junit-bad.xml")
    umload("matrix", "compare", runs, doctored, "--junit", junit_bad, expect=8)
    suites = ET.parse(junit_bad).getroot()
    assert int(suites.get("tests")) == 2 * len(rows) and int(suites.get("failures")) == 1, suites.attrib
    [failure] = suites.findall(".//failure")
    assert victim in failure.get("message") and "doctored-gh200-box" in failure.get("message")
    # Against --expect, every run of the doctored file is held to the expected digest.
    p = umload("matrix", "compare", doctored, "--expect", expect, expect=8)
    assert f"first differing tensor {victim}" in p.stderr and "the expected sha256:" in p.stderr, p.stderr
    print(f"compare: the doctored machine is named, first differing tensor {victim}")

    # Bad input: a record that is not one names file and line (exit 3); a missing file exit 4;
    # an unknown profile exit 2, before anything runs.
    broken = os.path.join(work, "broken.jsonl")
    with open(runs) as f, open(broken, "w") as g:
        g.write(f.readline())
        g.write('{"format": "umload-matrix/1", "machine": {"host": "x"}, "run": {"profile": "h200"}}\n')
    p = umload("matrix", "compare", broken, expect=3)
    assert f"{broken}:2" in p.stderr and '"device"' in p.stderr, p.stderr
    umload("matrix", "compare", os.path.join(work, "absent.jsonl"), expect=4)
    out = os.path.join(work, "never.jsonl")
    p = umload("matrix", "run", ckpt, "--profiles", "live,no-such-machine", "--out", out, expect=2)
    assert "no-such-machine" in p.stderr and not os.path.exists(out), p.stderr
    p = umload("matrix", "run", os.path.join(work, "absent"), "--profiles", "live", "--devices", "cpu",
               "--out", out, expect=4)
    assert read_jsonl(out)[0]["run"]["status"] == "failed", "a failed load is recorded"
    print("bad input: clear errors")
    return runs, doctored


class dom(html.parser.HTMLParser):
    """Elements of the page Chromium serialized, with their attributes and text."""

    def __init__(self):
        super().__init__()
        self.elements, self.stack = [], []

    def handle_starttag(self, tag, attrs):
        e = {"tag": tag, "attrs": dict(attrs), "text": "", "parents": [p["tag"] for p in self.stack]}
        e["classes"] = set((e["attrs"].get("class") or "").split())
        self.elements.append(e)
        if tag not in ("meta", "line", "br", "img", "input", "link"):
            self.stack.append(e)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if self.stack and self.stack[-1]["tag"] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        if self.stack:
            self.stack[-1]["text"] += data

    def find(self, tag, cls=None):
        return [e for e in self.elements if e["tag"] == tag and (cls is None or cls in e["classes"])]


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def check_html(work, runs, doctored):
    browser = chromium()
    if not browser:
        print("SKIP: no chromium on PATH (make deps installs Debian's chromium package)")
        sys.exit(SKIP)
    page = os.path.join(work, "matrix.html")
    umload("matrix", "compare", runs, doctored, "--html", page, expect=8)
    text = open(page).read()
    for forbidden in ("<script", "http://", "https://", "@import", "url("):
        allowed = forbidden == "http://" and text.count("http://") == text.count("http://www.w3.org/2000/svg")
        assert forbidden not in text or allowed, f"the page is not self-contained: {forbidden}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={work}/profile"]
    p = subprocess.run([browser, *flags, "--dump-dom", "file://" + page], capture_output=True, text=True, timeout=120)
    if p.returncode != 0 or "<html" not in p.stdout:
        print(f"SKIP: chromium could not start (exit {p.returncode}): {p.stderr[-400:]}")
        sys.exit(SKIP)
    d = dom()
    d.feed(p.stdout)
    rows = read_jsonl(runs) + read_jsonl(doctored)
    ok = [r for r in rows if r["run"]["status"] == "ok"]
    [svg] = [e for e in d.find("svg") if e["attrs"].get("id") == "matrix-chart"]
    width, height = float(svg["attrs"]["width"]), float(svg["attrs"]["height"])
    assert width >= 800 and height >= 200, svg["attrs"]
    groups = d.find("g", "run")
    assert len(groups) == len(rows), (len(groups), len(rows))
    assert {e["attrs"]["data-machine"] for e in d.find("g", "machine")} == {os.uname().nodename, "doctored-gh200-box"}
    bars = {kind: d.find("rect", kind) for kind in ("time", "measured-host", "predicted-host")}
    for kind, found in bars.items():
        assert len(found) == len(ok), (kind, len(found), len(ok))
        for b in found:
            w = float(b["attrs"]["width"])
            assert 0 < w and float(b["attrs"]["x"]) + w <= width, (kind, b["attrs"])
    [bad] = [g for g in groups if "differs" in g["classes"]]
    assert bad["attrs"]["data-machine"] == "doctored-gh200-box" and bad["attrs"]["data-profile"] == "gh200"
    titles = {e["text"].strip() for e in d.find("text", "axis-title")}
    assert "load time (s)" in titles and any(t.startswith("peak memory (") for t in titles), titles
    legend = {e["text"].strip() for e in d.find("text", "legend-label")}
    assert {"load time, measured", "host peak, measured (RSS)", "host peak, predicted by the plan"} <= legend, legend
    assert len(d.find("text", "tick")) >= 4
    cells = [e for e in d.elements if e["tag"] == "tr" and "differs" in e["classes"]]
    assert len(cells) == 1, "the table marks the differing run"
    print(f"html: chart with {len(groups)} runs, {len(bars['time'])} time bars, measured and predicted peaks")

    shot = os.path.join(work, "matrix.png")
    p = subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,900", "file://" + page],
                       capture_output=True, text=True, timeout=120)
    with open(shot, "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "a PNG screenshot"
    assert int.from_bytes(png[16:20], "big") == 1200 and int.from_bytes(png[20:24], "big") == 900
    if os.environ.get("UMLOAD_MATRIX_KEEP"):
        shutil.copy(page, os.environ["UMLOAD_MATRIX_KEEP"] + ".html")
        shutil.copy(shot, os.environ["UMLOAD_MATRIX_KEEP"] + ".png")
    print("html: screenshot taken")


def main():
    work = tempfile.mkdtemp(prefix="umload-matrix-test.")
    try:
        runs, doctored = check_run_and_compare(work)
        if HTML_ONLY:
            check_html(work, runs, doctored)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
