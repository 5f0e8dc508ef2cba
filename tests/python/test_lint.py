"""pyflakes over the project's Python (the package, its tests, the benchmarks): no unused import,
no undefined name, no redefinition. pyflakes is Debian's python3-pyflakes (`make deps`)."""
import glob
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def pyflakes():
    """An interpreter that has pyflakes: this one, else Debian's."""
    for python in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(python) and subprocess.run([python, "-c", "import pyflakes"],
                                                     capture_output=True).returncode == 0:
            return python
    return None


PYTHON = pyflakes()


class lint(unittest.TestCase):
    @unittest.skipIf(PYTHON is None and not common.REQUIRE_STACK, "pyflakes is not installed (python3-pyflakes)")
    def test_pyflakes_finds_nothing(self):
        self.assertIsNotNone(PYTHON, "pyflakes is missing: make deps installs python3-pyflakes")
        root = common.SOURCE_DIR
        files = sorted(glob.glob(os.path.join(root, "src", "python", "**", "*.py"), recursive=True)
                       + glob.glob(os.path.join(root, "tests", "python", "**", "*.py"), recursive=True)
                       + glob.glob(os.path.join(root, "bench", "**", "*.py"), recursive=True))
        self.assertIn(os.path.join(root, "src", "python", "umload", "hf.py"), files)
        run = subprocess.run([PYTHON, "-m", "pyflakes", *files], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
