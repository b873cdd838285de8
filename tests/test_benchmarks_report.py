"""The benchmark scripts' reporting, on canned rows: what each script makes of its
measurements (the tables' columns and figures, the ratios against the baseline, the targets
met and missed with their readings, the command line) and what run_all makes of the
sections (the targets table, the kept sections, the docs it writes).

Nothing here builds a model or trains: the rows are written by hand with figures like those
in docs/benchmarks.md, and each script's ``section(...)`` (or the function that turns timed
seconds into a row) is fed them. The scripts' real runs are tests/test_benchmarks_smoke.py.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import backends  # noqa: E402
import common  # noqa: E402
import compress  # noqa: E402
import compress_targets  # noqa: E402
import determinism  # noqa: E402
import export_speed  # noqa: E402
import finetune_speed  # noqa: E402
import fold_bn  # noqa: E402
import inference  # noqa: E402
import memory  # noqa: E402
import precision  # noqa: E402
import precision_inference  # noqa: E402
import run_all  # noqa: E402

from keras_vgg.stats import paired_difference  # noqa: E402


def row_line(*cells) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def assert_columns(markdown, header):
    assert row_line(*header) in markdown, header


def target(section, name):
    (found,) = [t for t in section.targets if t.name == name]
    return found


# ---------------------------------------------------------------------------- inference

VGG16_FC = 123_642_856  # fc1-fc3 of VGG16 and VGG19 with their top


def compared_rows(vgg16=None, vgg19=None):
    rows = [
        {"model": "vgg16", "keras_vgg_images_s": 8.76, "applications_images_s": 8.77,
         "ratio": 1.001, "ratio_range": (0.981, 1.019), "gflops_per_image": 30.94,
         "keras_vgg_gflops_s": 271.0, "fraction_of_peak": 0.939, "fc_params": VGG16_FC,
         "max_abs_diff": 0.0},
        {"model": "vgg19", "keras_vgg_images_s": 7.02, "applications_images_s": 7.02,
         "ratio": 0.993, "ratio_range": (0.975, 1.010), "gflops_per_image": 39.26,
         "keras_vgg_gflops_s": 275.6, "fraction_of_peak": 0.947, "fc_params": VGG16_FC,
         "max_abs_diff": 0.0},
    ]
    rows[0].update(vgg16 or {})
    rows[1].update(vgg19 or {})
    return rows


SWEPT = [
    {"model": "vgg11", "paper": "A", "gflops_per_image": 15.22, "images_s": 14.98,
     "gflops_s": 228.0, "fraction_of_peak": 0.795},
    {"model": "vgg_f", "paper": "F", "gflops_per_image": 1.45, "images_s": 73.33,
     "gflops_s": 106.2, "fraction_of_peak": 0.368},
]
GEMM = {"square": 288.2, "im2col": 262.8}


def inference_section(argv=(), compared=None):
    args, command = inference.arguments(list(argv))
    return inference.section(args, command, compared or compared_rows(), GEMM, SWEPT, 286.5)


def test_inference_tables_and_targets_met():
    section = inference_section()
    assert section.command == ("python benchmarks/inference.py --size 224 --batch 8 --repeats 10 "
                               "--gemm 4096 --sweep-size 224 --sweep-batch 4 --sweep-repeats 5")
    assert_columns(section.body, ("model", "keras_vgg img/s", "keras.applications img/s",
                                  "keras_vgg / keras.applications", "GFLOP/img",
                                  "keras_vgg GFLOP/s", "of GEMM peak", "max abs diff"))
    assert row_line("vgg16", "8.76", "8.77", "1.001", "30.94", "271.0", "93.9%",
                    "0.0e+00") in section.body
    assert_columns(section.body, ("variant", "paper", "GFLOP/img", "img/s", "GFLOP/s",
                                  "of GEMM peak"))
    assert row_line("vgg_f", "F", "1.45", "73.33", "106.2", "36.8%") in section.body
    assert "two 4096x4096 matrices, 288.2 GFLOP/s" in section.body
    assert "(25088x2304 @ 2304x256) reached 262.8 GFLOP/s" in section.body
    assert "(median 286.5 GFLOP/s over the sweep)" in section.body
    assert "](throughput.png)" in section.body
    same, peak = section.targets
    assert (same.name, same.goal, same.measured, same.met, same.reading) == (
        "inference vs keras.applications", "keras_vgg / keras.applications within 1 +/- 0.02",
        "vgg16 1.001, vgg19 0.993", True, "")
    assert (peak.measured, peak.met, peak.reading) == ("93.9%", True, "")
    assert section.rows == compared_rows() + SWEPT
    assert section.extra["sweep_settings"] == "224x224, batch 4"
    assert section.markdown().startswith(f"## {inference.TITLE}\n\nCommand: `{section.command}`")


def test_inference_targets_missed_say_why():
    section = inference_section(compared=compared_rows(
        vgg16={"fraction_of_peak": 0.70, "keras_vgg_gflops_s": 202.4},
        vgg19={"ratio": 0.95, "ratio_range": (0.93, 0.97)}))
    same, peak = section.targets
    assert not same.met and same.measured == "vgg16 1.001, vgg19 0.950"
    assert same.reading == ("vgg19's per-round ratios ran 0.930-0.970 with identical outputs "
                            "(max abs diff 0.0e+00); every round on the same side of 1: a real "
                            "difference between the two graphs")
    assert not peak.met and peak.measured == "70.0%"
    assert peak.reading.startswith("202 GFLOP/s: ") and "(123.6M weights)" in peak.reading
    assert "memory-bound at batch 8" in peak.reading
    assert inference.noise_reading(0.97, 1.02, 10) == \
        "rounds on both sides of 1 read as machine noise"
    assert inference.noise_reading(0.97, 0.98, 2) == \
        "2 round(s) are too few to tell noise from a difference"


def test_inference_rows_from_the_seconds_of_each_round():
    gemm_flops = 2 * 4096 ** 3
    seconds = {"vgg16 keras_vgg": [1.0, 0.9, 1.1], "vgg16 keras.applications": [1.0, 1.0, 1.0],
               "gemm": [0.5, 0.45, 0.55]}
    row = inference.compared_row("vgg16", 224, 8, seconds, gemm_flops, 0.0)
    assert row["keras_vgg_images_s"] == 8.0 and row["applications_images_s"] == 8.0
    assert row["ratio"] == 1.0 and row["ratio_range"] == (1.0 / 1.1, 1.0 / 0.9)
    assert row["gflops_per_image"] == pytest.approx(30.94, abs=0.01)
    assert row["fc_params"] == VGG16_FC
    # every round: the GEMM took half the model's time, so the model ran at half its rate
    assert row["fraction_of_peak"] == pytest.approx(
        0.5 * 8 * row["gflops_per_image"] * 1e9 / gemm_flops)
    swept = inference.swept_row("vgg_f", 48, 1, {"vgg_f": [0.02, 0.01, 0.03],
                                                 "gemm": [0.01, 0.01, 0.01]}, 2 * 256 ** 3)
    assert (swept["model"], swept["paper"], swept["images_s"]) == ("vgg_f", "F", 50.0)
    assert swept["gflops_s"] == pytest.approx(50.0 * swept["gflops_per_image"])
    assert swept["fraction_of_peak"] == pytest.approx(
        0.5 * swept["gflops_per_image"] * 1e9 / (2 * 256 ** 3))


def test_bad_arguments_are_argparse_errors(capsys):
    with pytest.raises(SystemExit):
        inference.main(["--repeats", "0"])
    assert "expected a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_speed.main(["--model", "vgg_m", "--size", "32"])
    assert "minimum input size 41" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        backends.main(["--size", "16"])
    assert "below VGG16's minimum input size 32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compress.main(["--large-size", "16"])
    assert "expected 0 (off) or a size >= 32" in capsys.readouterr().err


# ------------------------------------------------------------------------- finetune_speed

OVERHEADS = [
    {"phase": "phase1", "freeze": "all", "epochs": 2, "steps": 15, "pipeline_steps_s": 13.07,
     "memory_steps_s": 14.34, "ratio": 0.933},
    {"phase": "phase2", "freeze": "none", "epochs": 12, "steps": 15,
     "pipeline_steps_s": 3.76, "memory_steps_s": 3.68, "ratio": 1.017},
]
CACHE = {"plain_epoch_s": 1.211, "cached_epoch_s": 0.056, "speedup": 21.8,
         "extraction_s": 1.91, "feature_shape": [1, 1, 512], "break_even_epochs": 1.65}


def finetune_section(overheads=OVERHEADS, cache=CACHE):
    args, recipe, command = finetune_speed.arguments([])
    return finetune_speed.section(args, command, recipe, "builtin shapes", 480, overheads,
                                  cache)


def test_finetune_speed_tables_and_targets_met():
    section = finetune_section()
    assert section.command == "python benchmarks/finetune_speed.py --config builtin --repeats 5"
    assert "(vgg11_bn, 32x32, batch 32, " in section.body
    assert "on builtin shapes: 480 training images" in section.body
    assert_columns(section.body, ("phase", "freeze", "epochs in recipe", "steps/epoch",
                                  "pipeline steps/s", "in-memory steps/s",
                                  "pipeline / in-memory", "overhead"))
    assert row_line("phase1", "all", 2, 15, "13.07", "14.34", "0.933", "6.7%") in section.body
    # the recipe's row weights each phase by its epochs: 12 of phase 2 outweigh 2 of phase 1
    assert row_line("recipe", "", 14, "", "", "", "1.013", "-1.3%") in section.body
    assert section.extra["recipe_ratio"] == pytest.approx(
        (2 * 15 / 14.34 + 12 * 15 / 3.68) / (2 * 15 / 14.34 / 0.933 + 12 * 15 / 3.68 / 1.017))
    assert_columns(section.body, ("per epoch", "frozen end to end s", "cached features s",
                                  "frozen / cached", "extraction once s", "break-even epochs"))
    assert row_line("training split", "1.211", "0.056", "21.8", "1.91", "1.65") in section.body
    assert "features (1, 1, 512)" in section.body
    light, fast = section.targets
    assert (light.name, light.goal, light.measured, light.met) == (
        "input pipeline overhead", "< 5% (recipe, epoch-weighted)", "-1.3%", True)
    assert (fast.measured, fast.met, fast.reading) == ("21.8x", True, "")
    assert section.rows == OVERHEADS + [CACHE]


def test_finetune_speed_targets_missed_say_why():
    slow = [dict(row, ratio=0.8) for row in OVERHEADS]
    section = finetune_section(slow, dict(CACHE, cached_epoch_s=0.3, speedup=4.0))
    light, fast = section.targets
    assert not light.met and light.measured == "20.0%"
    assert light.reading == ("largest in phase1 (freeze all): 20.0% of an epoch whose "
                             "in-memory step takes 70 ms")
    assert not fast.met and fast.measured == "4.0x"
    assert fast.reading.startswith("at 32x32 a frozen-base epoch costs only 1.21 s, and the "
                                   "head's 0.300 s is Keras's fixed per-step cost (20.0 ms")


def test_finetune_speed_rows_from_the_seconds_of_each_round():
    _, recipe, _ = finetune_speed.arguments([])
    row = finetune_speed.overhead_row(recipe, 1, 15, {"pipeline": [1.0, 1.2, 1.1],
                                                     "in-memory": [0.9, 1.0, 1.1]})
    assert (row["phase"], row["freeze"], row["epochs"], row["steps"]) == (
        "phase2", recipe.phases[1].freeze, recipe.phases[1].epochs, 15)
    assert row["pipeline_steps_s"] == 15 / 1.1 and row["memory_steps_s"] == 15 / 1.0
    assert row["ratio"] == pytest.approx(0.9)  # median of 0.9, 0.833, 1.0
    cache = finetune_speed.cache_row({"frozen end to end": [1.2, 1.3, 1.1],
                                      "cached features": [0.05, 0.05, 0.05]}, 2.3, (1, 1, 512))
    assert cache["speedup"] == pytest.approx(24.0) and cache["feature_shape"] == [1, 1, 512]
    assert cache["break_even_epochs"] == pytest.approx(2.3 / 1.15)
    never = finetune_speed.cache_row({"frozen end to end": [0.1], "cached features": [0.2]},
                                     2.3, (512,))
    assert never["break_even_epochs"] == math.inf


# ------------------------------------------------------------------------------ precision


def test_precision_rows_are_against_float32():
    policies = {"float32": "float32", "mixed precision": "mixed_bfloat16"}
    rows = precision.rows_of(policies, {"float32": [10.0, 10.4, 10.6],
                                        "mixed precision": [5.0, 6.5, 5.3]})
    assert [(r["form"], r["policy"]) for r in rows] == list(policies.items())
    assert rows[0]["speedup"] == 1.0 and rows[0]["epoch_s"] == 10.4
    assert rows[1]["speedup"] == pytest.approx(2.0)  # median of 2.0, 1.6, 2.0
    args, recipe, command = precision.arguments(["--image-size", "32", "--repeats", "1",
                                                 "--forms", "mixed precision"])
    assert recipe.model.image_size == 32
    section = precision.section(args, command, recipe, 40, rows)
    assert section.command == ("python benchmarks/precision.py --image-size 32 --repeats 1 "
                               "--forms mixed precision")
    assert f"({recipe.model.name}, 32x32, batch {recipe.data.batch_size}, 40 training images, " \
        "freeze " \
        in section.body and "1 alternating rounds" in section.body
    assert_columns(section.body, ("form", "base computes in", "epoch s",
                                  "float32 / this (speed-up)"))
    assert row_line("float32", "float32", "10.40", "1.00") in section.body
    assert row_line("mixed precision", "mixed_bfloat16", "5.30", "2.00") in section.body
    assert section.targets == [] and section.title == precision.TITLE


# -------------------------------------------------------------------- precision_inference


def bf16_row(model, gflops, float32, bfloat16, speedup, of_peak, diff):
    return {"model": model, "gflops_per_image": gflops, "max_abs_diff": diff,
            "speedup": speedup, "float32_images_s": float32, "bfloat16_images_s": bfloat16,
            "float32_of_peak": of_peak[0], "bfloat16_of_peak": of_peak[1],
            "float32_gemm_gflops_s": 278.0, "bfloat16_gemm_gflops_s": 979.0}


BF16_ROWS = [bf16_row("vgg11", 15.22, 16.00, 64.19, 3.94, (0.881, 0.970), 4.4e-3),
             bf16_row("vgg11_lrn", 15.22, 13.49, 33.43, 2.48, (0.748, 0.518), 7.6e-4),
             bf16_row("vgg16", 30.94, 8.03, 42.53, 5.17, (0.925, 1.359), 3.7e-5),
             bf16_row("vgg_f", 1.45, 94.03, 151.48, 1.61, (0.470, 0.226), 2.0e-3)]
CACHE_S = {"float32": [23.5, 23.71, 24.0], "auto": [4.5, 4.47, 4.4]}
EPOCH_S = {"float32": [4.2, 4.26, 4.3], "auto": [3.2, 3.23, 3.25]}


def precision_inference_section(rows=BF16_ROWS, argv=(), cache_s=CACHE_S):
    from keras_vgg.finetune.config import load_recipe

    args, command = precision_inference.arguments(list(argv))
    return precision_inference.section(args, command, rows, cache_s, 200, EPOCH_S,
                                       {"float32": "float32", "auto": "mixed_bfloat16"},
                                       load_recipe("builtin"))


def test_precision_inference_tables_and_targets(tmp_path):
    section = precision_inference_section()
    assert section.command == ("python benchmarks/precision_inference.py --size 224 --batch 8 "
                               "--repeats 3 --gemm 4096 --cache-size 224 --cache-images 40")
    assert_columns(section.body, ("variant", "GFLOP/img", "float32 img/s", "bfloat16 img/s",
                                  "speed-up", "float32 of its GEMM", "bfloat16 of its GEMM",
                                  "max abs diff"))
    assert row_line("vgg16", "30.94", "8.03", "42.53", "5.17", "92.5%", "135.9%",
                    "3.7e-05") in section.body
    assert "float32 (median 278 GFLOP/s) and in bfloat16 (median 979 GFLOP/s)" in section.body
    # the fastest variant's convolutions: vgg16, 42.53 img/s x 30.94 GFLOP
    assert "convolutions ran at 1316 GFLOP/s" in section.body
    assert "| feature cache: VGG16 base, 200 images at 224x224 | 23.71 | 4.47 | 5.30 |" \
        in section.body
    assert ("| fine-tune epoch: builtin phase (vgg11_bn, 32x32, computes in mixed_bfloat16) "
            "| 4.26 | 3.23 | 1.32 |") in section.body
    assert "](precision.png)" in section.body
    vgg16, plain, cache, epoch = section.targets
    assert (vgg16.name, vgg16.goal, vgg16.measured, vgg16.met) == (
        "bfloat16 VGG16", "bfloat16 >= 5x float32", "5.17x", True)
    assert (plain.name, plain.measured, plain.met) == (
        "bfloat16 A-E", "lowest vgg11_lrn 2.48x", False)
    assert plain.reading.startswith("below 4x: vgg11, vgg11_lrn. vgg11_lrn: TensorFlow's LRN")
    assert plain.reading.endswith("read the speed-up column over several runs.")
    # the speed-ups are medians of the per-round ratios, float32 seconds over auto's
    assert (cache.name, cache.measured, cache.met) == ("bfloat16 feature cache", "5.30x", True)
    assert (epoch.name, epoch.goal, epoch.measured, epoch.met) == (
        "bfloat16 fine-tune epoch", ">= 1.5x", "1.32x", False)
    assert epoch.reading.startswith("the built-in recipe trains vgg11_bn at 32x32")
    precision_inference.plot(section.rows, tmp_path / "precision.png")
    assert (tmp_path / "precision.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_precision_inference_targets_follow_the_variants():
    quick = precision_inference_section(
        [r for r in BF16_ROWS if r["model"] in ("vgg11", "vgg_f")],
        run_all.QUICK[precision_inference], {"float32": [2.0], "auto": [1.0]})
    assert "--variants vgg11 vgg_f" in quick.command
    assert [t.name for t in quick.targets] == [
        "bfloat16 A-E", "bfloat16 feature cache", "bfloat16 fine-tune epoch"]
    plain, cache = quick.targets[:2]
    assert plain.reading == ("below 4x: vgg11. A plain form near 4x moves across it from one "
                             "run to the next on this shared 2-core machine: read the speed-up "
                             "column over several runs.")
    assert (cache.measured, cache.met) == ("2.00x", False) and "--cache-images" in cache.reading
    fast = precision_inference_section([dict(BF16_ROWS[0], speedup=4.4), BF16_ROWS[3]])
    assert [(t.name, t.met) for t in fast.targets[:1]] == [("bfloat16 A-E", True)]


def test_precision_inference_row_from_the_seconds_of_each_round():
    flops = {"float32": 2 * 512 ** 3, "bfloat16": 2 * 512 ** 3}
    seconds = {"float32": [0.4, 0.5, 0.6], "bfloat16": [0.1, 0.1, 0.2],
               "gemm float32": [0.02, 0.02, 0.02], "gemm bfloat16": [0.005, 0.005, 0.005]}
    row = precision_inference.timed_row("vgg11", 48, 2, seconds, flops, 1e-3)
    assert row["speedup"] == pytest.approx(4.0) and row["max_abs_diff"] == 1e-3
    assert row["float32_images_s"] == 2 / 0.5 and row["bfloat16_images_s"] == 2 / 0.1
    assert row["float32_gemm_gflops_s"] == pytest.approx(flops["float32"] / 0.02 / 1e9)
    assert row["float32_of_peak"] == pytest.approx(
        0.04 * 2 * row["gflops_per_image"] * 1e9 / flops["float32"])


# --------------------------------------------------------------------------- export_speed

EXPORT_REPORT = {"keras": {"latency_ms": 168.6}, "exports": [
    {"quantize": "none", "file": "model_float32.tflite", "size_bytes": 58_900_000,
     "latency_ms": 150.4, "seconds": 5.8, "max_abs_diff": 3.3e-7, "top1_agreement": 1.0},
    {"quantize": "int8", "file": "model_int8.tflite", "size_bytes": 14_800_000,
     "latency_ms": 13.8, "seconds": 14.1, "max_abs_diff": 3.3e-3, "top1_agreement": 0.9375}]}


def test_export_speed_rows_against_keras_and_table():
    seconds = {"keras": [0.170, 0.168, 0.172], "none": [0.15, 0.16, 0.152],
               "int8": [0.0151, 0.0168, 0.0172]}
    rows = export_speed.rows_of("model.keras", 59_000_000, EXPORT_REPORT, seconds)
    assert [r["export"] for r in rows] == ["Keras", "TFLite float32", "TFLite int8"]
    keras_row, float32, int8 = rows
    assert keras_row["keras_speedup"] == 1.0 and keras_row["size_vs_keras"] == 1.0
    assert "convert_s" not in keras_row and "runner" not in keras_row
    assert int8["ms"] == pytest.approx(16.8) and int8["size_mb"] == 14.8
    assert int8["keras_speedup"] == pytest.approx(10.0)  # median of 11.26, 10.0, 10.0
    assert int8["size_vs_keras"] == pytest.approx(14.8 / 59.0)
    assert float32["convert_s"] == 5.8 and float32["top1_agreement"] == 1.0
    args, command = export_speed.arguments([])
    section = export_speed.section(args, command, rows)
    assert section.command == ("python benchmarks/export_speed.py --model vgg16 --size 224 "
                               "--classes 10 --repeats 20 --calibration 16")
    assert "headless `vgg16` (14,714,688 conv parameters)" in section.body
    assert_columns(section.body, ("export", "file", "size MB", "size / Keras", "ms/image",
                                  "Keras / this (speed-up)", "export() ms",
                                  "convert + check s", "max abs diff", "top-1 agreement"))
    assert row_line("Keras", "`model.keras`", "59.0", "1.000", "170.0", "1.00", "168.6", "",
                    "", "") in section.body
    assert row_line("TFLite int8", "`model_int8.tflite`", "14.8", "0.251", "16.8", "10.00",
                    "13.8", "14.1", "3.3e-03", "94%") in section.body
    assert section.targets == []


# --------------------------------------------------------------------------------- memory


def test_memory_rows_less_the_baseline_and_table():
    row = memory.row_of("vgg16", {"import": 600.0, "build": 2066.0, "params": 138_357_544,
                                  "peak": 2083.0}, 640.0)
    assert row["weights_mb"] == pytest.approx(553.43, abs=0.01)
    assert (row["build_mb"], row["run_mb"]) == (1426.0, 1443.0)
    assert row["x_weights"] == pytest.approx(1443 / row["weights_mb"])
    args, command = memory.arguments([])
    assert command == "python benchmarks/memory.py --size 224 --batch 1"
    section = memory.section(args, command, 640.0, [row])
    assert_columns(section.body, ("variant", "weights MB (float32)", "peak RSS MB",
                                  "build - baseline MB", "build + run - baseline MB",
                                  "x weights"))
    assert row_line("vgg16", "553", "2083", "1426", "1443", "2.61") in section.body
    assert "only imports Keras and keras_vgg: 640 MB" in section.body
    assert section.extra == {"baseline_mb": 640.0}
    _, quick = memory.arguments(run_all.QUICK[memory])
    assert quick == "python benchmarks/memory.py --variants vgg_f --size 48 --batch 1"


# ------------------------------------------------------------------------------- backends


def worker_result(backend, version, images_s, epoch_s, auto_in="float32"):
    epoch = {"images": 480, "model": "vgg11_bn", "image_size": 32, "batch_size": 32}
    return {"backend": backend, "version": version,
            "inference": {"float32": images_s[0], "bfloat16": images_s[1]},
            "finetune": {"false": dict(epoch, precision="float32", epoch_s=epoch_s[0]),
                         "auto": dict(epoch, precision=auto_in, epoch_s=epoch_s[1])}}


def test_backends_ratios_are_against_tensorflow():
    def result(backend, images_s, epoch_s):
        return {"backend": backend, "version": "0",
                "inference": {"float32": images_s, "bfloat16": 2 * images_s},
                "finetune": {m: {"precision": "float32", "epoch_s": epoch_s}
                             for m in ("false", "auto")}}

    rounds = [[result("tensorflow", 10.0, 2.0), result("jax", 5.0, 4.0)],
              [result("jax", 7.0, 8.0), result("tensorflow", 10.0, 2.0)]]
    tf_row, jax_row = backends.rows_of(backends.combine(rounds))
    assert jax_row["float32_images_s"] == 6.0 and jax_row["float32_vs_tf"] == 0.6
    assert jax_row["bfloat16_vs_tf"] == 0.6 and jax_row["epoch_float32_tf_speed"] == 1 / 3
    assert tf_row["float32_vs_tf"] == 1.0


def test_backends_tables_in_the_order_asked():
    args, in_worker, command = backends.arguments(["--worker", "--backends", "torch",
                                                   "tensorflow", "jax"])
    assert in_worker and "--worker" not in command
    assert command.startswith("python benchmarks/backends.py --backends torch tensorflow jax ")
    rounds = [[worker_result("jax", "0.10.2", (2.83, 2.88), (8.51, 8.52)),
               worker_result("tensorflow", "2.21.0", (9.42, 38.24), (3.82, 3.70), "bfloat16"),
               worker_result("torch", "2.13.0+cpu", (3.53, 8.38), (7.92, 8.00))]]
    section = backends.section(args, command, rounds)
    assert [r["backend"] for r in section.rows] == ["torch", "tensorflow", "jax"]
    assert_columns(section.body, ("backend", "float32 img/s", "vs tensorflow", "bfloat16 img/s",
                                  "vs tensorflow", "bfloat16 / float32"))
    assert row_line("tensorflow 2.21.0", "9.42", "1.00x", "38.24", "1.00x", "4.06x") \
        in section.body
    assert row_line("jax 0.10.2", "2.83", "0.30x", "2.88", "0.08x", "1.02x") in section.body
    assert_columns(section.body, ("backend", "float32 epoch s", "speed vs tensorflow",
                                  "auto trains in", "auto epoch s",
                                  "speed vs tensorflow's auto"))
    assert row_line("tensorflow", "3.82", "1.00x", "bfloat16", "3.70", "1.00x") in section.body
    assert row_line("jax", "8.51", "0.45x", "float32", "8.52", "0.43x") in section.body
    assert "(vgg11_bn, 32x32, batch 32, 480 training images," in section.body
    assert "1 round(s) in rotated order" in section.body
    # without tensorflow there is nothing to compare with: the ratio cells stay empty
    args, _, command = backends.arguments(["--backends", "jax"])
    alone = backends.section(args, command, [rounds[0][:1]])
    assert row_line("jax 0.10.2", "2.83", "", "2.88", "", "1.02x") in alone.body


# -------------------------------------------------------------------------------- fold_bn


def fold_measured(worst=1.043, ops_differ=False):
    plain = {"Keras float32, batch 1": 0.1737, "Keras float32, batch 8": 0.8164,
             "Keras bfloat16, batch 1": 0.0371, "Keras bfloat16, batch 8": 0.1396,
             "TFLite float32": 0.1429, "TFLite int8": 0.0139}
    seconds = {}
    for name, base in plain.items():
        folded = worst if name == "Keras bfloat16, batch 1" else 1.0
        seconds[name, "plain"] = [base, base]
        seconds[name, "bn"] = [1.5 * base, 1.5 * base]
        seconds[name, "folded"] = [folded * base, folded * base]
    float32 = {"CONV_2D": 8, "MAX_POOL_2D": 5, "MEAN": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}
    int8 = {"QUANTIZE": 2, **float32}
    ops = {(label, form): dict(counts) for label, counts in (("float32", float32),
                                                             ("int8", int8)) for form in
           fold_bn.FORMS}
    if ops_differ:
        ops["int8", "bn"]["MUL"] = 8
    return {"seconds": seconds, "ops": ops, "max_abs_diff": 1.5e-7}


def test_fold_bn_ratios_table_and_target(tmp_path):
    args, command = fold_bn.arguments(["--quick"])
    assert command == ("python benchmarks/fold_bn.py --model vgg11 --size 32 --repeats 2 "
                       "--calibration 2")
    section = fold_bn.section(args, command, fold_measured())
    assert [row["pass"] for row in section.rows] == [
        "Keras float32, batch 1", "Keras float32, batch 8", "Keras bfloat16, batch 1",
        "Keras bfloat16, batch 8", "TFLite float32", "TFLite int8"]
    assert all(row["bn_ratio"] == pytest.approx(1.5) for row in section.rows)
    assert_columns(section.body, ("pass", "vgg11 ms", "vgg11_bn ms", "vgg11_bn folded ms",
                                  "BN / plain", "folded / plain"))
    assert row_line("Keras bfloat16, batch 1", "37.1", "55.7", "38.7", "1.500", "1.043") \
        in section.body
    assert "max abs difference 1.5e-07. TFLite op counts the same in all three files" \
        in section.body
    (met,) = section.targets
    assert (met.name, met.goal, met.measured, met.met, met.reading) == (
        "vgg11_bn served", "within 1.05x of vgg11 (Keras and TFLite)",
        "1.043x at worst (Keras bfloat16, batch 1)", True, "")
    missed = fold_bn.section(args, command, fold_measured(1.2, ops_differ=True))
    (target,) = missed.targets
    assert not target.met and target.measured == "1.200x at worst (Keras bfloat16, batch 1)"
    assert target.reading == "see the reading under the table"
    assert "TFLite op counts differ per mode" in missed.body
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{section.markdown()}\n## Next\n")
    assert run_all.kept_section(run_all.FOLD_TITLE, doc) == section.markdown()


def test_fold_bn_library_speeds_against_the_plain_form():
    args, command = fold_bn.arguments(["--library"])
    assert command == "python benchmarks/fold_bn.py --model vgg16 --size 224 --repeats 10 --library"
    seconds = {}
    for batch, plain in ((1, 0.1035), (8, 0.4553)):
        seconds[batch, "plain"] = [plain] * 3
        seconds[batch, "bn unfolded"] = [plain / 0.5] * 3
        seconds[batch, "bn"] = [plain / 0.97, plain / 0.95, plain / 0.99]
    rows = fold_bn.library_rows_of(seconds)
    assert [r["batch"] for r in rows] == [1, 8]
    assert rows[0]["plain_ms"] == pytest.approx(103.5)
    assert rows[0]["bn unfolded_speed"] == pytest.approx(0.5)
    assert rows[1]["bn_speed"] == pytest.approx(0.97)
    section = fold_bn.library_section(args, command, rows, 4.9e-9)
    assert section.title == fold_bn.LIBRARY_TITLE
    assert_columns(section.body, ("batch", "vgg16 ms", "vgg16_bn unfolded ms",
                                  "vgg16_bn folded ms", "unfolded speed / plain",
                                  "folded speed / plain"))
    assert row_line(8, "455.3", "910.6", "469.4", "0.50", "0.97") in section.body
    assert "max abs difference 4.9e-09." in section.body
    (met,) = section.targets
    assert (met.name, met.goal, met.measured, met.met) == (
        "vgg16_bn in bfloat16", ">= 0.9x the speed of vgg16", "0.97x at worst", True)
    seconds[1, "bn"] = [0.2] * 3
    (missed,) = fold_bn.library_section(args, command, fold_bn.library_rows_of(seconds),
                                        0.0).targets
    assert not missed.met and missed.measured == "0.52x at worst"


# ------------------------------------------------------------------------------- compress


def paired(count, only_first=0, only_second=0, both_wrong=0):
    """A paired record (first minus second) on ``count`` images: both right but for
    ``only_first`` + ``only_second`` images and ``both_wrong`` wrong for both."""
    labels = np.zeros(count, int)
    first, second = labels.copy(), labels.copy()
    second[:only_first] = 1
    first[only_first:only_first + only_second] = 1
    wrong = slice(only_first + only_second, only_first + only_second + both_wrong)
    first[wrong] = second[wrong] = 2
    return paired_difference(labels, first, second).to_json()


def compress_report(held_out=1050, own=None, control=None, large=True):
    own = own or paired(held_out, both_wrong=5)
    report = {
        "params": {"before": 9_234_053, "after": 2_277_968},
        "flops": {"before": 305_500_000, "after": 76_300_000},
        "held_out": "test", "held_out_images": held_out,
        "before_minus_after": own, "control_minus_pruned": control or own,
        "exports": [
            {"quantize": "none", "file": "model_float32.tflite", "size_before": 36_900_000,
             "size_after": 9_100_000, "agreement_before": 1.0, "agreement_after": 1.0,
             **{f"ms_{n}": (7.34 / n, 1.955 / n) for n in compress.THREADS}},
            {"quantize": "int8", "file": "model_int8.tflite", "size_before": 9_310_000,
             "size_after": 2_320_000, "agreement_before": 0.992, "agreement_after": 0.992,
             **{f"ms_{n}": (0.69 / n, 0.255 / n) for n in compress.THREADS}}],
        "image_size": [32, 32], "widths": {"before": [64, 128], "after": [32, 64]},
        "steps": 1, "epochs": 5, "lr": 0.0001, "criterion": "auto", "compress_seconds": 39.4,
    }
    if large:
        report["large"] = {"size": 224, "ms": {n: (13.486, 6.387) for n in compress.THREADS}}
    return report


def compress_section(report, argv=()):
    args, command = compress.arguments(list(argv))
    return compress.section(args, command, report)


def test_compress_table_and_targets_met(tmp_path):
    section = compress_section(compress_report())
    assert section.command == "python benchmarks/compress.py"
    assert [t.name for t in section.targets] == ["pruned FLOPs", "test accuracy", "int8 file",
                                                "int8 latency", "int8 latency at 224x224"]
    flops, accuracy, size, latency, large = section.targets
    assert (flops.goal, flops.measured, flops.met) == (">= 3x fewer", "4.00x", True)
    # no image changed answer among 1,050: the interval of the drop lies within 1 point
    assert accuracy.met and accuracy.reading == ""
    assert accuracy.measured == ("-0.0 pts (95% CI -0.4 to +0.4) vs the run, -0.0 pts (95% CI "
                                 "-0.4 to +0.4) vs the control")
    assert (size.measured, size.met) == ("4.01x", True)
    assert latency.met and latency.measured.startswith("2.71x (1 thread)")
    assert not large.met and large.measured.startswith("2.11x (1 thread)")
    lines = section.body.splitlines()
    assert lines[:3] == ["| figure | unpruned | pruned | unpruned / pruned |",
                         "|---|---:|---:|---:|",
                         "| parameters | 9,234,053 | 2,277,968 | 4.05x |"]
    assert "| MFLOPs per image | 305.5 | 76.3 | 4.00x |" in lines
    assert "| test accuracy | 99.5% | 99.5% | -0.0 pts (95% CI -0.4 to +0.4) |" in lines
    assert "| test accuracy, both fine-tuned as long | 99.5% | 99.5% | -0.0 pts (95% CI " \
           "-0.4 to +0.4) |" in lines
    assert "| model_int8.tflite MB | 9.31 | 2.32 | 4.01x |" in lines
    assert "| model_int8.tflite ms, 1 thread | 0.690 | 0.255 | 2.71x |" in lines
    assert "| model_int8.tflite top-1 agreement with its Keras model | 99.2% | 99.2% | |" \
        in lines
    assert "| int8 at 224x224 (same weights) ms, 1 thread | 13.486 | 6.387 | 2.11x |" in lines
    assert "Accuracy: both models on the same 1,050 test images, paired." in section.body
    assert "Latency: median of 200 single-image runs at 32x32" in section.body
    assert "Compress took 39 s." in section.body
    assert "- pruned FLOPs: >= 3x fewer; measured 4.00x (met)" in lines
    assert "- int8 latency at 224x224: >= 2.5x lower at every thread count; measured 2.11x " \
           "(1 thread)" in section.body
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{section.markdown()}\n## Next\n")
    assert run_all.kept_section(run_all.COMPRESS_TITLE, doc) == section.markdown()


def seed_record(seed, quarter, eighth, student, correct=1040):
    """One seed of compress_targets' report: the three paired records as given."""
    return {"seed": seed, "test_correct": correct, "test_count": 1050, "control_correct": 1041,
            "0.25": quarter, "0.125": eighth, "student": student}


def test_compress_targets_judge_every_seed_and_print_a_row_each(tmp_path):
    """Issue 31 item 5: a target is met when every seed meets it, missed when one misses
    it, else undecided; the student's target needs the whole interval below 0 (labels only
    minus distilled)."""
    same = paired(1050, both_wrong=9)  # no image changed: within any margin
    worse = paired(1050, only_first=30)  # the pruned model 30 images (2.9 points) worse
    some = paired(1050, only_first=4, only_second=2)  # undecided within 0.5 point
    helped, unsure = paired(1050, only_second=80), paired(1050, only_first=3, only_second=5)
    report = {"seeds": [seed_record(0, same, some, helped), seed_record(1, same, worse, helped),
                        seed_record(2, same, same, unsure)],
              "student": "vgg_s", "epochs": 5,
              "large": {"size": 224, "ms": {n: (20.0, 5.0) for n in compress.THREADS}}}
    args, command = compress_targets.arguments([])
    section = compress_targets.section(args, command, report)
    assert (args.seeds, args.student, command) == ([0, 1, 2], "vgg_s",
                                                   "python benchmarks/compress_targets.py")
    quarter, eighth, student, large = section.targets
    assert (quarter.met, quarter.reading) == (True, "")
    assert quarter.measured.startswith("pruned minus control, seed 0: -0.0 pts (95% CI -0.4 "
                                       "to +0.4); seed 1: ")
    assert (eighth.met, eighth.reading) == (False, "missed")  # seed 1 lost 2.9 points
    assert (student.met, student.reading) == (False, "undecided")  # seed 2 cannot tell
    assert student.measured.startswith("distilled minus labels only, seed 0: +7.6 pts")
    assert large.met and large.goal == ">= 3x lower at every thread count"
    lines = section.body.splitlines()
    assert lines[2] == ("| 0 | 1,040/1,050 | 1,041 | +0.0 (-0.4 to +0.4), 0 changed | "
                        "+0.2 (-0.4 to +0.8), 6 changed | -7.6 (-9.4 to -6.1), 80 changed |")
    assert len([line for line in lines if line.startswith("| ") and "/1,050 |" in line]) == 3
    assert "| 1 thread | 20.00 | 5.00 | 4.00x |" in lines
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{section.markdown()}\n## Next\n")
    assert run_all.kept_section(run_all.TARGETS_TITLE, doc) == section.markdown()


def test_compress_accuracy_missed_and_too_few_images():
    # 12 of 120 images right before and wrong after: the whole interval is past 1 point
    missed = compress_section(compress_report(120, paired(120, only_first=12)))
    accuracy = missed.targets[1]
    assert not accuracy.met and accuracy.measured.startswith("-10.0 pts (95% CI ")
    assert accuracy.reading.startswith("missed: vs the run, missed (drop over 1.0 points)")
    assert "(not met: missed: vs the run" in missed.body
    # the --quick run's 15 test images: one changed answer, and the interval spans 1 point
    few = paired(15, only_first=1)
    args, command = compress.arguments(["--quick"])
    assert (args.epochs, args.repeats, args.quantize, args.large_size) == (
        0, 3, ["none", "int8"], 64)
    assert command == "python benchmarks/compress.py --quick"
    undecided = compress.section(args, command, compress_report(15, few, large=False))
    accuracy = undecided.targets[1]
    assert not accuracy.met
    assert accuracy.reading.startswith("undecided: vs the run, undecided: the interval")
    assert accuracy.reading.count("(15 images are too few to tell)") == 2
    assert [t.name for t in undecided.targets] == ["pruned FLOPs", "test accuracy",
                                                  "int8 file", "int8 latency"]
    assert "median of 3 single-image runs" in undecided.body
    # --write is left out of the command it records
    assert compress.arguments(["--quick", "--write"])[1] == command


def test_compress_without_int8_has_no_file_targets():
    report = compress_report(large=False)
    report["exports"] = report["exports"][:1]
    section = compress_section(report, ["--quantize", "none", "--large-size", "0"])
    assert [t.name for t in section.targets] == ["pruned FLOPs", "test accuracy"]
    assert section.command == "python benchmarks/compress.py --quantize none --large-size 0"
    assert "int8" not in section.body


# ---------------------------------------------------------------------------- determinism


def test_determinism_table_and_ratio():
    args, recipe, command = determinism.arguments(["--repeats", "2", "--set",
                                                   "data.builtin_images_per_class=20"])
    assert command == ("python benchmarks/determinism.py --repeats 2 --set "
                       "data.builtin_images_per_class=20")
    assert determinism.arguments(["--write"])[2] == \
        "python benchmarks/determinism.py --repeats 3 --write"
    seconds = {"not deterministic": [3.0, 3.2], "deterministic": [3.6, 3.68]}
    section = determinism.section(args, command, recipe, 80, "bfloat16", seconds)
    assert [(r["form"], r["epoch_s"]) for r in section.rows] == [
        ("not deterministic", pytest.approx(3.1)), ("deterministic", pytest.approx(3.64))]
    assert_columns(section.body, ("form", "epoch s", "every round (s)"))
    assert row_line("deterministic", "3.64", "3.60, 3.68") in section.body
    assert "Deterministic / not (median of the paired rounds): 1.17x the epoch" in section.body
    model = recipe.model
    assert f"({model.name}, {model.image_size}x{model.image_size}, batch " \
           f"{recipe.data.batch_size}, 80 training images" in section.body
    assert "trains in bfloat16), one epoch per round, 2 alternating rounds" in section.body
    assert section.title == determinism.TITLE
    assert run_all.DETERMINISM_TITLE == f"## {determinism.TITLE}"


def test_the_latency_plan_benchmark_tabulates_convs_plans_and_the_paired_difference():
    """benchmarks/latency_plan.py's section from canned figures: each conv's ms per GFLOP,
    the three models' widths, FLOPs, predicted and measured ms and test images, and the
    uniform plan minus the latency plan paired."""
    import latency_plan

    args, command = latency_plan.arguments([])
    found = {"convs": [{"conv": "block1_conv1", "gflops": 0.1734, "ms": 1.6}],
             "fraction": 0.2619, "flops": 0.25, "epochs": 5, "count": 1050,
             "unpruned": {"widths": [64, 128], "flops": 306e6, "predicted_ms": 0.75,
                          "correct": 1038},
             "plans": {"uniform": {"widths": [32, 64], "flops": 76e6, "predicted_ms": 0.2,
                                   "correct": 1043},
                       "latency": {"widths": [16, 96], "flops": 80e6, "predicted_ms": 0.19,
                                   "correct": 1045}},
             "uniform_minus_latency": paired(1050, only_first=1, only_second=3, both_wrong=4),
             "ms": {n: [1.0 / n, 0.4 / n, 0.35 / n] for n in compress.THREADS}}
    section = latency_plan.section(args, command, found)
    lines = section.body.splitlines()
    assert "| block1_conv1 | 0.173 | 1.60 | 9.2 |" in lines
    def ms(value):
        return " | ".join(f"{value / n:.3f}" for n in compress.THREADS)

    assert f"| uniform, --flops 0.25 | 32 64 | 76.0 | 0.200 | {ms(0.4)} | 1,043 |" in lines
    assert f"| --latency 0.2619 --plan sensitivity | 16 96 | 80.0 | 0.190 | {ms(0.35)} | " \
        "1,045 |" in lines
    assert "Uniform minus latency plan, paired on the 1,050 test images: -0.2 points (95% CI " \
        "-0.8 to +0.3); 4 changed answer." in " ".join(section.body.split())
    assert command == "python benchmarks/latency_plan.py"
    assert run_all.LATENCY_TITLE == f"## {latency_plan.TITLE}"


# -------------------------------------------------------------------------------- run_all


def canned_sections():
    """Each of run_all's seven sections, from canned rows, in run_all's order."""
    args, _, command = backends.arguments([])
    backends_section = backends.section(args, command, [[
        worker_result("tensorflow", "2.21.0", (9.42, 38.24), (3.82, 3.70), "bfloat16")]])
    precision_args, recipe, precision_command = precision.arguments([])
    return {
        inference: inference_section(),
        finetune_speed: finetune_section(),
        precision: precision.section(precision_args, precision_command, recipe, 480, [
            {"form": "float32", "policy": "float32", "epoch_s": 10.39, "speedup": 1.0}]),
        precision_inference: precision_inference_section(),
        export_speed: export_speed.section(*export_speed.arguments([]), export_speed.rows_of(
            "model.keras", 59_000_000, EXPORT_REPORT,
            {"keras": [0.17], "none": [0.15], "int8": [0.015]})),
        memory: memory.section(*memory.arguments([]), 640.0, [memory.row_of(
            "vgg16", {"build": 2066.0, "params": 138_357_544, "peak": 2083.0}, 640.0)]),
        backends: backends_section,
    }


def lrn_doc(path, *kept):
    path.write_text("# Benchmarks\n\nold text\n\n## Targets\n\nold targets\n\n"
                    f"{run_all.LRN_TITLE}\n\nthe LRN table\n\n"
                    + "".join(f"{title}\n\n{title[3:]}'s own text\n\n" for title in kept))
    return path


def test_run_all_composes_targets_sections_and_the_lrn_section():
    sections = list(canned_sections().values())
    lrn = f"{run_all.LRN_TITLE}\n\nthe LRN table\n"
    doc = run_all.compose(sections, "2 CPU cores", 1080.0, 1.16, lrn)
    assert doc.startswith("# Benchmarks\n\nMachine for every figure below: 2 CPU cores. ")
    assert "(18.0 minutes in all on this machine; load average 1.16 when it started)" in doc
    assert doc.endswith(lrn)
    positions = [doc.index(f"## {s.title}\n\nCommand: `{s.command}`") for s in sections]
    assert positions == sorted(positions) and doc.index("## Targets") < positions[0]
    assert_columns(doc, ("target", "goal", "measured", "result"))
    targets = [t for s in sections for t in s.targets]
    assert len(targets) == 8  # inference 2, finetune_speed 2, precision_inference 4
    for t in targets:
        assert row_line(t.name, t.goal, t.measured, common.met(t.met)) in doc
    # the missed targets, with their readings, under the table
    readings = doc[doc.index("Where not met:"):doc.index(f"## {sections[0].title}")]
    assert [line.split("**")[1] for line in readings.splitlines() if line.startswith("- ")] \
        == ["bfloat16 A-E", "bfloat16 fine-tune epoch"]


def test_run_all_kept_sections(tmp_path):
    first = lrn_doc(tmp_path / "first.md", run_all.COMPRESS_TITLE)
    second = lrn_doc(tmp_path / "second.md", run_all.FOLD_TITLE)
    # the first file holding a title gives it, verbatim, up to the next section
    assert run_all.kept_section(run_all.LRN_TITLE, first, second) == \
        f"{run_all.LRN_TITLE}\n\nthe LRN table\n"
    assert run_all.kept_section(run_all.FOLD_TITLE, first, second).startswith(
        f"{run_all.FOLD_TITLE}\n\n")
    assert run_all.kept_section(run_all.DATA_TITLE, first, tmp_path / "missing.md") == ""
    assert run_all.lrn_section(tmp_path / "missing.md", second) == \
        f"{run_all.LRN_TITLE}\n\nthe LRN table\n"
    shipped = run_all.lrn_section(BENCHMARKS.parent / "docs" / "benchmarks.md")
    assert shipped.startswith(run_all.LRN_TITLE) and "| mode |" in shipped


def test_run_all_writes_the_docs_keeping_the_written_sections(tmp_path, monkeypatch):
    """run_all.main with each script's measuring replaced by its canned section: the docs,
    the two charts, and the sections kept verbatim after the LRN one, in run_all's order."""
    canned = canned_sections()
    asked = {}

    def canned_main(module):
        def main(argv):
            asked[module] = argv
            return canned[module]

        return main

    for module in canned:
        monkeypatch.setattr(module, "main", canned_main(module))
    docs = tmp_path / "docs"
    docs.mkdir()
    lrn_doc(docs / "benchmarks.md", run_all.DETERMINISM_TITLE, run_all.FOLD_TITLE,
            run_all.COMPRESS_TITLE, run_all.LATENCY_TITLE)
    returned = run_all.main(["--quick", "--docs", str(docs)])
    assert returned == list(canned.values())
    assert asked == {module: run_all.QUICK[module] for module in canned}
    text = (docs / "benchmarks.md").read_text()
    assert "old text" not in text and "old targets" not in text
    for section in canned.values():
        assert section.markdown().rstrip() in text
    # compress, fold and determinism from --docs' file; data at scale, which it lacks, from
    # the shipped docs/benchmarks.md; in run_all's order, after the LRN section
    kept = [text.index(title) for title in (run_all.LRN_TITLE, run_all.COMPRESS_TITLE,
                                            run_all.FOLD_TITLE, run_all.DATA_TITLE,
                                            run_all.DETERMINISM_TITLE,
                                            run_all.LATENCY_TITLE)]
    assert kept == sorted(kept)
    assert f"{run_all.FOLD_TITLE[3:]}'s own text" in text
    assert run_all.kept_section(run_all.DATA_TITLE, BENCHMARKS.parent / "docs"
                                / "benchmarks.md") in text
    assert text.endswith(f"{run_all.LATENCY_TITLE[3:]}'s own text\n")
    for chart in ("throughput.png", "precision.png"):
        assert (docs / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
