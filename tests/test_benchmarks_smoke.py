"""Real runs of the benchmark scripts at their tiniest settings (run_all --quick): each
measures, and its figures are finite positive numbers; the real facts they print beside their
timings (the same weights in keras_vgg and keras.applications, TFLite against Keras, the BN
fold's exactness, compress's control) are bounded. Timings are never compared with anything;
the tables' formatting is tested on canned rows in tests/test_benchmarks_report.py.

Every test here is marked ``benchmark``. A plain ``pytest`` (CI) runs one script for real,
fold_bn --quick (a real model build, TFLite conversion, timing and markdown); the others are
skipped unless the marker is selected or KERAS_VGG_BENCHMARKS=1 is set:

    python -m pytest -m benchmark tests/test_benchmarks_smoke.py   # every script, for real
    KERAS_VGG_BENCHMARKS=1 python -m pytest tests/test_benchmarks_smoke.py
"""

import os
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import run_all  # noqa: E402



def real_runs(config) -> bool:
    """Whether the real runs were asked for: ``-m`` names the ``benchmark`` marker, or
    KERAS_VGG_BENCHMARKS=1."""
    return "benchmark" in (config.getoption("markexpr") or "") or \
        os.environ.get("KERAS_VGG_BENCHMARKS") == "1"


# every test but the one CI runs: marked, and skipped unless asked for
pytestmark = pytest.mark.benchmark
only_if_asked = pytest.mark.skipif(
    "not real_runs(config)",
    reason="a real benchmark run: python -m pytest -m benchmark (or KERAS_VGG_BENCHMARKS=1)")

SCRIPTS = {name: getattr(run_all, name) for name in
           ("inference", "finetune_speed", "precision", "precision_inference", "export_speed",
            "memory")}


@pytest.fixture(scope="module")
def sections():
    """Each benchmark's main at run_all's --quick settings, run once for the whole file."""
    return {name: module.main(run_all.QUICK[module]) for name, module in SCRIPTS.items()}


def assert_positive(row, keys):
    for key in keys:
        assert isinstance(row[key], (int, float)), (key, row)
        assert math.isfinite(row[key]) and row[key] > 0, (key, row)


def assert_columns(markdown, header):
    assert "| " + " | ".join(header) + " |" in markdown


@only_if_asked
def test_smoke_inference(sections):
    section = sections["inference"]
    compared, swept = section.extra["compared"], section.extra["swept"]
    assert [r["model"] for r in compared] == ["vgg16", "vgg19"]
    for row in compared:
        assert_positive(row, ("keras_vgg_images_s", "applications_images_s", "ratio",
                              "gflops_per_image", "keras_vgg_gflops_s", "fraction_of_peak"))
        assert row["max_abs_diff"] <= 1e-5  # the same weights in both: measured 0.0
    assert [r["model"] for r in swept] == ["vgg11", "vgg_f"]
    for row in swept:
        assert_positive(row, ("gflops_per_image", "images_s", "gflops_s", "fraction_of_peak"))
    assert_positive(section.extra["gemm_gflops_s"], ("square", "im2col"))
    assert_positive(section.extra, ("sweep_peak_gflops_s",))
    assert_columns(section.body, ("variant", "paper", "GFLOP/img", "img/s", "GFLOP/s",
                                  "of GEMM peak"))
    assert "keras_vgg / keras.applications" in section.body
    assert "--variants vgg11 vgg_f" in section.command


@only_if_asked
def test_smoke_finetune_speed(sections):
    section = sections["finetune_speed"]
    overheads, cache = section.rows[:-1], section.rows[-1]
    assert [r["phase"] for r in overheads] == ["phase1", "phase2"]
    for row in overheads:
        assert_positive(row, ("steps", "pipeline_steps_s", "memory_steps_s", "ratio"))
    assert_positive(cache, ("plain_epoch_s", "cached_epoch_s", "speedup", "extraction_s"))
    assert_columns(section.body, ("phase", "freeze", "epochs in recipe", "steps/epoch",
                                  "pipeline steps/s", "in-memory steps/s",
                                  "pipeline / in-memory", "overhead"))
    assert "frozen / cached" in section.body


@only_if_asked
def test_smoke_precision(sections):
    section = sections["precision"]
    assert [(r["form"], r["policy"]) for r in section.rows] == [
        ("float32", "float32"), ("mixed precision", "mixed_bfloat16")]
    for row in section.rows:
        assert_positive(row, ("epoch_s", "speedup"))
    assert_columns(section.body, ("form", "base computes in", "epoch s",
                                  "float32 / this (speed-up)"))


@only_if_asked
def test_smoke_precision_inference(sections, tmp_path):
    section = sections["precision_inference"]
    assert [r["model"] for r in section.rows] == ["vgg11", "vgg_f"]
    for row in section.rows:
        assert_positive(row, ("gflops_per_image", "float32_images_s", "bfloat16_images_s",
                              "speedup", "float32_of_peak", "bfloat16_of_peak"))
        assert row["max_abs_diff"] <= 0.05  # bfloat16 vs float32 softmax, random weights
    assert_columns(section.body, ("variant", "GFLOP/img", "float32 img/s", "bfloat16 img/s",
                                  "speed-up", "float32 of its GEMM", "bfloat16 of its GEMM",
                                  "max abs diff"))
    assert "feature cache: VGG16 base" in section.body and "fine-tune epoch" in section.body
    assert {t.name for t in section.targets} == {
        "bfloat16 A-E", "bfloat16 feature cache", "bfloat16 fine-tune epoch"}
    run_all.precision_inference.plot(section.rows, tmp_path / "precision.png")
    assert (tmp_path / "precision.png").stat().st_size > 0


@only_if_asked
def test_smoke_export_speed(sections):
    section = sections["export_speed"]
    assert [r["export"] for r in section.rows] == ["Keras", "TFLite float32", "TFLite int8"]
    for row in section.rows:
        assert_positive(row, ("size_mb", "ms", "export_ms", "keras_speedup", "size_vs_keras"))
    for row in section.rows[1:]:
        assert_positive(row, ("convert_s",))
    float32, int8 = section.rows[1:]
    assert float32["max_abs_diff"] <= 1e-4 and float32["top1_agreement"] == 1.0  # 1.6e-6
    assert int8["max_abs_diff"] <= 0.1  # measured 8.7e-3
    assert_columns(section.body, ("export", "file", "size MB", "size / Keras", "ms/image"))


@only_if_asked
def test_smoke_memory(sections):
    section = sections["memory"]
    (row,) = section.rows
    assert row["model"] == "vgg_f"
    assert_positive(row, ("weights_mb", "peak_mb", "run_mb", "x_weights"))
    assert_positive(section.extra, ("baseline_mb",))
    assert row["peak_mb"] > section.extra["baseline_mb"]
    assert_columns(section.body, ("variant", "weights MB (float32)", "peak RSS MB"))
    assert "--child" not in section.command


@only_if_asked
def test_smoke_targets_name_goal_and_measured(sections):
    targets = [t for s in sections.values() for t in s.targets]
    assert len(targets) == 7  # 4, and precision_inference's 3 (no vgg16 at --quick)
    for target in targets:
        assert target.goal and target.measured and isinstance(target.met, bool)
        assert target.met or target.reading  # a missed target says why


@only_if_asked
def test_smoke_run_all_writes_docs_keeping_the_lrn_section(sections, tmp_path):
    ordered = [sections[name] for name in SCRIPTS]
    lrn = run_all.lrn_section(BENCHMARKS.parent / "docs" / "benchmarks.md")
    assert lrn.startswith(run_all.LRN_TITLE) and "| mode |" in lrn
    doc = run_all.compose(ordered, common.machine(), 12.0, 0.1, lrn)
    assert doc.startswith("# Benchmarks\n") and doc.endswith(lrn)
    for section in ordered:
        assert f"## {section.title}" in doc and section.command in doc
    assert_columns(doc, ("target", "goal", "measured", "result"))
    run_all.plot(sections["inference"].extra["swept"], 100.0, tmp_path / "throughput.png",
                 sections["inference"].extra["sweep_settings"])
    assert (tmp_path / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@only_if_asked
def test_smoke_backends_worker_and_table():
    """One worker (tensorflow, the quick settings) through the real subprocess path; the
    ratios against tensorflow are then 1 by construction."""
    quick = run_all.QUICK[run_all.backends]
    section = run_all.backends.main(["--backends", "tensorflow", *quick])
    (row,) = section.rows
    assert row["backend"] == "tensorflow"
    assert_positive(row, ("float32_images_s", "bfloat16_images_s", "epoch_float32_s",
                          "epoch_auto_s"))
    assert row["float32_vs_tf"] == row["epoch_float32_tf_speed"] == 1.0
    assert row["epoch_float32_precision"] == "float32"
    assert_columns(section.body, ("backend", "float32 img/s", "vs tensorflow", "bfloat16 img/s",
                                  "vs tensorflow", "bfloat16 / float32"))
    assert_columns(section.body, ("backend", "float32 epoch s", "speed vs tensorflow",
                                  "auto trains in", "auto epoch s", "speed vs tensorflow's auto"))
    assert "--worker" not in section.command and "--backends tensorflow" in section.command


def test_smoke_fold_bn(tmp_path):
    """The one real run CI makes (not skipped): three serving models side by side (plain,
    BN, BN folded); the fold is exact and the TFLite files have the plain form's ops; run_all
    keeps the section verbatim."""
    fold_bn = run_all.fold_bn
    section = fold_bn.main(["--quick"])
    assert [row["pass"] for row in section.rows] == [
        "Keras float32, batch 1", "Keras float32, batch 8", "Keras bfloat16, batch 1",
        "Keras bfloat16, batch 8", "TFLite float32", "TFLite int8"]
    for row in section.rows:
        assert_positive(row, ("plain_ms", "bn_ms", "folded_ms", "bn_ratio", "folded_ratio"))
    assert section.extra["max_abs_diff"] <= 1e-4
    ops = section.extra["ops"]
    assert ops["float32", "folded"] == ops["float32", "plain"] == ops["float32", "bn"]
    assert_columns(section.body, ("pass", "vgg11 ms", "vgg11_bn ms", "vgg11_bn folded ms",
                                  "BN / plain", "folded / plain"))
    (target,) = section.targets
    assert target.goal == "within 1.05x of vgg11 (Keras and TFLite)"
    assert "--quick" not in section.command and "--size 32" in section.command
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{section.markdown()}\n## Next\n")
    assert run_all.kept_section(run_all.FOLD_TITLE, doc) == section.markdown()


@only_if_asked
def test_smoke_compress(tmp_path):
    """The built-in run at its tiniest, compressed to a quarter of its FLOPs without
    fine-tuning (--quick): the table holds both models' figures and every target; the
    control (every filter kept, no epoch) is the run's own model, so it differs from the
    pruned one exactly as the run does, image by image; run_all keeps the section verbatim."""
    import compress

    section = compress.main(["--quick"])
    report = section.extra
    assert report["flops"]["before"] / report["flops"]["after"] >= 3.9  # planned: 0.25 kept
    assert report["params"]["after"] < report["params"]["before"]
    assert (report["held_out"], report["held_out_images"], report["epochs"]) == ("test", 15, 0)
    own, control = report["before_minus_after"], report["control_minus_pruned"]
    assert control == own  # the same 15 test images, the same two sets of answers
    correct = own["first"]["correct"]
    assert report["control_accuracy"] == report["accuracy"]["before"] == correct / 15
    assert report["accuracy"]["after"] == own["second"]["correct"] / 15
    assert own["first"]["correct"] - own["second"]["correct"] == \
        own["only_first"] - own["only_second"]
    assert own["only_first"] + own["only_second"] <= own["changed"] <= 15
    assert [row["quantize"] for row in report["exports"]] == ["none", "int8"]
    for row in report["exports"]:
        assert row["size_after"] < row["size_before"]
        for key in (k for k in row if k.startswith("ms_")):
            assert all(math.isfinite(ms) and ms > 0 for ms in row[key]), (key, row)
    assert [t.name for t in section.targets] == ["pruned FLOPs", "test accuracy",
                                                "int8 file", "int8 latency",
                                                "int8 latency at 64x64"]
    # the 1-point target judged on the paired interval: met, missed, or undecided (then
    # the reading says the 15 images are too few), the same for the run and the control
    from keras_vgg.stats import PairedDifference

    judged = PairedDifference.from_json(own).judge(0.01)
    accuracy = section.targets[1]
    assert accuracy.met == (judged == "met")
    assert accuracy.reading.startswith(f"{judged}: vs the run, ") or judged == "met"
    assert accuracy.reading.count("15 images are too few to tell") == 2 * (judged == "undecided")
    for before, after in report["large"]["ms"].values():  # the same weights rebuilt at 64
        assert all(math.isfinite(ms) and ms > 0 for ms in (before, after))
    assert "| test accuracy, both fine-tuned as long |" in section.body
    assert "Accuracy: both models on the same 15 test images, paired." in section.body
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{section.markdown()}\n## Next\n")
    assert run_all.kept_section(run_all.COMPRESS_TITLE, doc) == section.markdown()


@only_if_asked
def test_smoke_determinism_times_both_forms_and_restores_the_switch():
    import determinism
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    section = determinism.main(["--repeats", "1", "--set", "data.builtin_images_per_class=20"])
    assert tf_config.is_op_determinism_enabled() == before
    assert [row["form"] for row in section.rows] == ["not deterministic", "deterministic"]
    assert all(math.isfinite(row["epoch_s"]) and row["epoch_s"] > 0 for row in section.rows)
    assert "| form | epoch s | every round (s) |" in section.body


@only_if_asked
def test_smoke_serving():
    """benchmarks/serving.py at 32x32 (VGG11, 5 shape classes): every engine and precision
    the package writes is timed and sized, its agreement is a fraction, the fastest file is
    named; no target line below 224 (timings never asserted)."""
    import serving

    section = serving.main(["--models", "vgg11", "--size", "32", "--batches", "1", "2",
                            "--repeats", "1", "--sample", "10", "--calibration", "8",
                            "--no-write"])
    (result,) = section.rows
    engines = [row["engine"] for row in result["rows"]]
    assert engines[:2] == ["Keras float32", "Keras bfloat16"]
    assert set(serving.ENGINES.values()) | {"OpenVINO float32, bf16 hint"} <= set(engines)
    for row in result["rows"]:
        assert_positive(row, ("size_bytes", "ms_1", "ms_2", "speedup_1", "speedup_2"))
        assert 0 <= row["top1_agreement"] <= 1
    assert result["fastest_in_report"]["file"] in {row["file"] for row in result["rows"]}
    assert "Fastest file here at batch 1" in section.body and section.targets == []


@only_if_asked
def test_smoke_compress_targets():
    """Issue 31 item 5's script at its tiniest (--quick, one seed): the run trained, the
    control, both distilled compresses and the distilled student paired on the same 15
    test images; every target judged."""
    import compress_targets

    section = compress_targets.main(["--quick", "--seeds", "0"])
    (seed,) = section.extra["seeds"]
    assert seed["test_count"] == 15 and seed["seed"] == 0
    for key in ("0.25", "0.125", "student"):
        assert seed[key]["count"] == 15, key
    assert seed["0.25_flops_kept"] <= 0.25 and seed["0.125_flops_kept"] <= 0.125
    assert [t.name for t in section.targets] == [
        "1/4 of the FLOPs, distilled, against the control",
        "1/8 of the FLOPs, distilled, against the control",
        "vgg_s distilled against vgg_s on the labels alone", "int8 at 64x64, 1/4 of the FLOPs"]
    for before, after in section.extra["large"]["ms"].values():
        assert all(math.isfinite(ms) and ms > 0 for ms in (before, after))
