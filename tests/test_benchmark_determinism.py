"""Smoke test of benchmarks/determinism.py at its tiniest settings: both forms timed, the
section well formed, the docs' section kept by run_all. Timings are never compared."""

import math
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import determinism  # noqa: E402
import run_all  # noqa: E402


def test_determinism_benchmark_times_both_forms_and_restores_the_switch():
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    section = determinism.main(["--repeats", "1", "--set", "builtin_images_per_class=20"])
    assert tf_config.is_op_determinism_enabled() == before
    assert [row["form"] for row in section.rows] == ["not deterministic", "deterministic"]
    assert all(math.isfinite(row["epoch_s"]) and row["epoch_s"] > 0 for row in section.rows)
    assert section.command == ("python benchmarks/determinism.py --repeats 1 --set "
                               "builtin_images_per_class=20")
    assert "| form | epoch s | every round (s) |" in section.body
    assert "Deterministic / not (median of the paired rounds)" in section.body
    assert run_all.DETERMINISM_TITLE == f"## {determinism.TITLE}"
