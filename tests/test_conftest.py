"""The CI rule of tests/conftest.py: a skip because a reference package is missing fails under
``CI=true``, whether the skip happens in a test or while a module is collected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_SKIPPING = {
    "test_module_skip.py": "import pytest\n"
                           "pytest.importorskip('no_such_reference_package_r2n')\n"
                           "def test_never():\n    pass\n",
    "test_inner_skip.py": "import pytest\n"
                          "def test_skips():\n"
                          "    pytest.importorskip('no_such_reference_package_r2n')\n",
}


def _run(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(
        (Path(__file__).parent / "conftest.py").read_text())
    for name, text in _SKIPPING.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    return subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "-q", "-rA",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           "--continue-on-collection-errors"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


@pytest.mark.parametrize("ci", [False, True])
def test_skips_fail_under_ci_even_at_collection(tmp_path: Path, ci: bool) -> None:
    done = _run(tmp_path, ci)
    out = done.stdout
    if not ci:
        assert done.returncode == 0 and "2 skipped" in out, out
        return
    assert done.returncode != 0, out
    assert "test_module_skip.py" in out and "skipped while collecting under CI" in out, out
    assert "test_inner_skip.py::test_skips" in out and "skipped under CI" in out, out
    assert "skipped" not in out.strip().splitlines()[-1], out
