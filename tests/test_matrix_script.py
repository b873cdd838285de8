"""tools/test_matrix.sh, the README's test command after `.[test]` alone (issue 28): a
backend that is not installed is skipped with one line naming the extra, not a traceback
from conftest; under CI=true it is an error, so CI cannot pass without a backend."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NO_TEST = ["-k", "no_test_has_this_name", "-p", "no:cacheprovider"]


def small_tree(tmp_path, conftest="import keras  # noqa: F401\n") -> Path:
    """The real script in a copy of the repository's layout whose tests/ holds a conftest that
    imports Keras (so a backend that fails to import shows, as with the real suite) and one
    test per file of the script's second line: the script runs as in CI, without collecting
    the whole suite three more times."""
    root = tmp_path / "repo"
    (root / "tools").mkdir(parents=True)
    script = (ROOT / "tools" / "test_matrix.sh").read_text()
    (root / "tools" / "test_matrix.sh").write_text(script)
    (root / "tests").mkdir()
    (root / "tests" / "conftest.py").write_text(conftest)
    second_line = re.search(r"SECOND_LINE=\((.*?)\)", script, re.S).group(1).split()
    for name in ["tests/test_first_line.py", *second_line]:
        (root / name).write_text("def test_one():\n    pass\n")
    return root


def run_matrix(tmp_path, ci, args=NO_TEST, failing=False, **tree):
    """The script with jax made unimportable (a stand-in package on PYTHONPATH raising
    ModuleNotFoundError, as a machine without the extra would). ``tree``: small_tree's
    keywords."""
    fake = tmp_path / "without_jax" / "jax"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'jax'\")\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent), "PROGRESS_S": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    root = small_tree(tmp_path, **tree)
    if failing:
        (root / "tests" / "test_first_line.py").write_text(
            "def test_one():\n    pass\n\n\ndef test_broken():\n    assert 1 == 2\n")
    return subprocess.run(["bash", "tools/test_matrix.sh", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)


def test_no_test_collected_anywhere_is_pytests_exit_5(tmp_path):
    """-k matching no test in any run: the status is pytest's "no tests collected", which
    .ci/run reports and passes. (A conftest that imports nothing: no Keras to wait for.)"""
    done = run_matrix(tmp_path, ci=False, conftest="")
    assert done.returncode == 5, done.stdout[-2000:]
    assert "=== test matrix summary: " in done.stdout


def test_under_ci_a_missing_backend_fails_at_once(tmp_path):
    done = run_matrix(tmp_path, ci=True)
    assert done.returncode == 2
    assert done.stderr.strip() == ('test_matrix: jax is not installed: pip install -e '
                                   '".[test,jax]" (or run bash .ci/run, which installs every '
                                   'extra)')
    assert done.stdout == ""


def test_a_missing_backend_is_skipped_and_the_last_lines_name_each_result(tmp_path):
    """Outside CI a backend that is not installed is skipped with one line naming its extra.
    CI keeps the tail of a long log: the summary is printed last, after every log. (One run
    of the script for both: each run starts three pytest processes that import Keras.)"""
    done = run_matrix(tmp_path, ci=False, args=["-p", "no:cacheprovider"], failing=True)
    notices = [line for line in done.stderr.splitlines() if line.startswith("test_matrix:")]
    assert notices == ['test_matrix: jax is not installed, so its line is skipped: pip install '
                       '-e ".[test,jax,torch]" runs it (bash .ci/run installs every extra)']
    assert "ModuleNotFoundError" not in done.stdout + done.stderr
    assert "=== KERAS_BACKEND=jax: skipped, not installed" in done.stdout
    assert "=== KERAS_BACKEND=torch: python -m pytest -q -m backend tests" in done.stdout
    # the progress lines while the runs go
    assert "=== test matrix, " in done.stdout
    assert done.returncode == 1
    script = (ROOT / "tools" / "test_matrix.sh").read_text()
    second = len(re.search(r"SECOND_LINE=\((.*?)\)", script, re.S).group(1).split())
    summary = done.stdout.splitlines()[-7:]
    assert re.fullmatch(r"=== test matrix summary: \d+ s, exit status 1", summary[0])
    assert [re.sub(r"in [0-9.]+s", "in Ts", line) for line in summary[1:5]] == [
        "tensorflow (exit 1): 1 failed, 1 passed in Ts",
        "FAILED tests/test_first_line.py::test_broken - assert 1 == 2",
        f"torch (exit 5): {second + 2} deselected in Ts",  # jax is not installed: no line
        f"tensorflow-2 (exit 0): {second} passed in Ts"]
    assert re.fullmatch(r"CPU time of every run and its children: \d+ s \(user \d+ s, system "
                        r"\d+ s\) in \d+ s", summary[5])
    assert re.fullmatch(r"free disk under \S+: \S+ of \S+", summary[6])
