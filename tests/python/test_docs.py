"""The examples of docs/python.md and docs/distributed.md, run as written, in document order,
in a folder where `gpt-oss-20b` is a tiny synthetic checkpoint.

Conventions in the docs: a ```python block runs (all blocks of a page share one namespace); a
```sh block runs under bash with `umload` and this interpreter first on PATH; a block after
`<!-- file: NAME -->` is written to NAME instead; a block after `<!-- not run: reason -->` is
skipped; a ```text block after `<!-- output -->` is what the block before it must print."""
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BLOCK = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```\n", re.S)


def blocks(path):
    with open(path) as f:
        text = f.read()
    for m in BLOCK.finditer(text):
        yield (m.group("marker") or "", m.group("lang"), m.group("body"),
               text.count("\n", 0, m.start()) + 1)


class doc_examples(unittest.TestCase):
    def run_page(self, page):
        path = os.path.join(common.SOURCE_DIR, "docs", page)
        with tempfile.TemporaryDirectory(prefix="umload-docs-") as work:
            common.synth(os.path.join(work, "gpt-oss-20b"))
            env = dict(os.environ)
            env["PATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(common.CLI)),
                                           os.path.dirname(sys.executable), env.get("PATH", "")])
            namespace = {"__name__": "__doc_example__"}
            last_output = None
            ran = 0
            old = os.getcwd()
            os.chdir(work)
            try:
                for marker, lang, body, line in blocks(path):
                    where = f"{page}:{line}"
                    if marker.startswith("not run"):
                        continue
                    if marker.startswith("file: "):
                        with open(marker[len("file: "):], "w") as f:
                            f.write(body)
                        continue
                    if marker == "output":
                        self.assertIsNotNone(last_output, f"{where}: output block without a block before it")
                        self.assertEqual(last_output.strip(), body.strip(), where)
                        last_output = None
                        continue
                    if lang == "python":
                        out = io.StringIO()
                        with contextlib.redirect_stdout(out):
                            try:
                                exec(compile(body, where, "exec"), namespace)
                            except Exception as e:  # name the block that failed
                                raise AssertionError(f"{where}: {type(e).__name__}: {e}") from e
                        last_output = out.getvalue()
                        ran += 1
                    elif lang == "sh":
                        r = subprocess.run(["bash", "-e", "-c", body], env=env, capture_output=True, text=True)
                        self.assertEqual(r.returncode, 0, f"{where}:\n{body}\n{r.stdout}\n{r.stderr}")
                        last_output = r.stdout
                        ran += 1
            finally:
                os.chdir(old)
            self.assertGreater(ran, 0, page)

    def test_python_md(self):
        self.run_page("python.md")

    def test_distributed_md(self):
        self.run_page("distributed.md")


if __name__ == "__main__":
    unittest.main(verbosity=2)
