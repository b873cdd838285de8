"""Inference speed: keras_vgg vs keras.applications, every variant, and the GEMM peak.

Part 1 builds keras.applications.VGG16/VGG19 (weights=None), copies their weights into
keras_vgg.VGG16/VGG19 with set_weights (same layer names and shapes; nothing downloads) and
times both with predict_on_batch, in alternating rounds with a square float32 tf.matmul
(--gemm x --gemm: the machine's measured peak) and, for reference, a GEMM shaped like
VGG16's block3_conv2 im2col at the same batch and size.
Part 2 times every variant of keras_vgg.list_models() (with its top), each alternating with
the square GEMM, and reports GFLOP/s and the fraction of the GEMM's, FLOPs from
keras_vgg.describe(name, input_shape=(S, S, 3)).gflops (multiply-adds x 2).

Usage:
    python benchmarks/inference.py      # 224x224 batch 8 vs keras.applications; sweep 224 batch 4
    python benchmarks/inference.py --size 64 --batch 2 --repeats 3 --sweep-size 64 --gemm 1024
    python benchmarks/inference.py --variants vgg16 vgg_f --sweep-repeats 5
"""

from __future__ import annotations

import gc

import common
import keras
import numpy as np

import keras_vgg

APPLICATIONS = {"vgg16": (keras_vgg.VGG16, keras.applications.VGG16),
                "vgg19": (keras_vgg.VGG19, keras.applications.VGG19)}


def images(batch, size):
    return np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def predictor(model, x):
    return common.wall(lambda: model.predict_on_batch(x))


def compared_row(name, size, batch, seconds, gemm_flops, diff) -> dict:
    """keras_vgg vs keras.applications for one model, from the seconds of every round."""
    description = keras_vgg.describe(name, input_shape=(size, size, 3))
    gflops = description.gflops
    ours, app = seconds[f"{name} keras_vgg"], seconds[f"{name} keras.applications"]
    ratios = [a / o for a, o in zip(app, ours)]  # speed ratio per round
    return {"model": name, "keras_vgg_images_s": batch / common.median(ours),
            "applications_images_s": batch / common.median(app),
            "ratio": common.median(ratios), "ratio_range": (min(ratios), max(ratios)),
            "gflops_per_image": gflops,
            "keras_vgg_gflops_s": batch * gflops / common.median(ours),
            "fraction_of_peak": common.paired(seconds["gemm"], ours)
            * batch * gflops * 1e9 / gemm_flops,
            "fc_params": sum(layer.params for layer in description.layers[-3:]),
            "max_abs_diff": diff}


def against_applications(size, batch, repeats, side):
    """Rows for VGG16/VGG19, keras_vgg and keras.applications timed side by side with the GEMMs.

    Returns ``(rows, gemm)``: ``gemm`` holds both GEMMs' median GFLOP/s.
    """
    x = images(batch, size)
    square, square_flops = common.gemm(side, side, side)
    im2col, im2col_flops = common.gemm(batch * (size // 4) ** 2, 3 * 3 * 256, 256)
    clocks = {"gemm": common.wall(square), "im2col": common.wall(im2col)}
    diffs = {}
    for name, (ours_builder, app_builder) in APPLICATIONS.items():
        app = app_builder(weights=None, input_shape=(size, size, 3))
        ours = ours_builder(input_shape=(size, size, 3))
        ours.set_weights(app.get_weights())
        diffs[name] = float(np.max(np.abs(ours.predict_on_batch(x) - app.predict_on_batch(x))))
        clocks[f"{name} keras_vgg"] = predictor(ours, x)
        clocks[f"{name} keras.applications"] = predictor(app, x)
    seconds = common.alternate(clocks, repeats)
    rows = [compared_row(name, size, batch, seconds, square_flops, diffs[name])
            for name in APPLICATIONS]
    keras.backend.clear_session()
    gemm = {"square": square_flops / common.median(seconds["gemm"]) / 1e9,
            "im2col": im2col_flops / common.median(seconds["im2col"]) / 1e9}
    return rows, gemm


def swept_row(name, size, batch, seconds, gemm_flops) -> dict:
    """One variant of the sweep, from the seconds of every round (``{name: [...], "gemm":
    [...]}``): images/s, GFLOP/s and the fraction of the GEMM's in the same rounds."""
    gflops = keras_vgg.describe(name, input_shape=(size, size, 3)).gflops
    rate = batch / common.median(seconds[name])
    return {"model": name, "paper": keras_vgg.get_config(name).paper_name,
            "gflops_per_image": gflops, "images_s": rate, "gflops_s": rate * gflops,
            "fraction_of_peak": common.paired(seconds["gemm"], seconds[name])
            * batch * gflops * 1e9 / gemm_flops}


def sweep(variants, size, batch, repeats, side):
    """Images/s and GFLOP/s of every variant (with its top), one at a time, each in
    alternating rounds with the square GEMM; returns ``(rows, that GEMM's GFLOP/s)``."""
    x = images(batch, size)
    square, square_flops = common.gemm(side, side, side)
    rows, gemm_seconds = [], []
    for name in variants:
        model = keras_vgg.get_model(name, input_shape=(size, size, 3))
        seconds = common.alternate({name: predictor(model, x), "gemm": common.wall(square)},
                                   repeats)
        rows.append(swept_row(name, size, batch, seconds, square_flops))
        gemm_seconds += seconds["gemm"]
        del model
        keras.backend.clear_session()
        gc.collect()
    return rows, square_flops / common.median(gemm_seconds) / 1e9


def body(args, compared, gemm, swept, sweep_peak) -> str:
    side = args.gemm
    gemm_text = (f"GEMM peak, timed in the same rounds: float32 `tf.matmul` of two {side}x{side} "
                 f"matrices, {gemm['square']:.1f} GFLOP/s (median). A GEMM shaped like VGG16 "
                 f"block3_conv2's im2col at this batch and size "
                 f"({args.batch * (args.size // 4) ** 2}x2304 @ 2304x256) reached "
                 f"{gemm['im2col']:.1f} GFLOP/s. \"of GEMM peak\" is the median over rounds of "
                 "the model's GFLOP/s over the square GEMM's in the same round; "
                 "keras_vgg / keras.applications is the median over rounds of the speed ratio.")
    first = common.table(
        ("model", "keras_vgg img/s", "keras.applications img/s", "keras_vgg / keras.applications",
         "GFLOP/img", "keras_vgg GFLOP/s", "of GEMM peak", "max abs diff"),
        [(r["model"], f"{r['keras_vgg_images_s']:.2f}", f"{r['applications_images_s']:.2f}",
          f"{r['ratio']:.3f}", f"{r['gflops_per_image']:.2f}", f"{r['keras_vgg_gflops_s']:.1f}",
          f"{r['fraction_of_peak']:.1%}", f"{r['max_abs_diff']:.1e}") for r in compared])
    second = common.table(
        ("variant", "paper", "GFLOP/img", "img/s", "GFLOP/s", "of GEMM peak"),
        [(r["model"], r["paper"], f"{r['gflops_per_image']:.2f}", f"{r['images_s']:.2f}",
          f"{r['gflops_s']:.1f}", f"{r['fraction_of_peak']:.1%}") for r in swept], left=2)
    return (f"Both models with their top (1000 classes), the same weights (copied with "
            f"`set_weights`), {args.size}x{args.size}, batch {args.batch}, `predict_on_batch`, "
            f"{args.repeats} alternating rounds after a warm-up, medians. FLOPs: "
            f"`keras_vgg.describe(...).gflops` (multiply-adds x 2).\n\n{first}\n\n{gemm_text}\n\n"
            f"Every variant, with its top, {args.sweep_size}x{args.sweep_size}, batch "
            f"{args.sweep_batch}, one variant at a time, each in {args.sweep_repeats} rounds "
            f"alternating with the {side}x{side} GEMM (median {sweep_peak:.1f} GFLOP/s over the "
            f"sweep). Variants run one after another, so compare them by their fraction of "
            f"the GEMM (timed beside each in the same rounds) more than by img/s.\n\n{second}\n\n"
            "![images/s and fraction of the GEMM peak per variant](throughput.png)")


def noise_reading(low, high, rounds) -> str:
    if rounds < 5:
        return f"{rounds} round(s) are too few to tell noise from a difference"
    if low <= 1 <= high:
        return "rounds on both sides of 1 read as machine noise"
    return "every round on the same side of 1: a real difference between the two graphs"


def targets(compared, batch, rounds):
    vgg16 = next(r for r in compared if r["model"] == "vgg16")
    worst = max(compared, key=lambda r: abs(r["ratio"] - 1))
    same = abs(worst["ratio"] - 1) <= 0.02
    low, high = worst["ratio_range"]
    near_peak = vgg16["fraction_of_peak"] >= 0.85
    return [
        common.Target(
            "inference vs keras.applications",
            "keras_vgg / keras.applications within 1 +/- 0.02",
            ", ".join(f"{r['model']} {r['ratio']:.3f}" for r in compared), same,
            "" if same else
            f"{worst['model']}'s per-round ratios ran {low:.3f}-{high:.3f} with identical outputs "
            f"(max abs diff {worst['max_abs_diff']:.1e}); " + noise_reading(low, high, rounds)),
        common.Target(
            "VGG16 forward vs GEMM peak", ">= 85% of the float32 GEMM peak (same rounds)",
            f"{vgg16['fraction_of_peak']:.1%}", near_peak,
            "" if near_peak else
            f"{vgg16['keras_vgg_gflops_s']:.0f} GFLOP/s: the convs are TensorFlow's oneDNN "
            f"kernels and fc1-fc3 ({vgg16['fc_params'] / 1e6:.1f}M weights) are memory-bound at "
            f"batch {batch}; neither is keras_vgg's code, and a larger batch is the lever"),
    ]


TITLE = "Inference: keras_vgg vs keras.applications, and every variant against the GEMM peak"


def section(args, command, compared, gemm, swept, sweep_peak) -> common.Section:
    """The docs section from what both parts measured (:func:`against_applications`'s rows
    and GEMMs, :func:`sweep`'s rows and peak): the tables, the targets, the command."""
    return common.Section(
        TITLE, command, body(args, compared, gemm, swept, sweep_peak),
        rows=compared + swept, targets=targets(compared, args.batch, args.repeats),
        extra={"compared": compared, "swept": swept, "gemm_gflops_s": gemm,
               "sweep_peak_gflops_s": sweep_peak,
               "sweep_settings": f"{args.sweep_size}x{args.sweep_size}, "
                                 f"batch {args.sweep_batch}"})


def arguments(argv=None):
    """``(args, command)``: the parsed, checked arguments and the command line that
    reproduces them."""
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--size", type=common.positive_int, default=224)
    arg_parser.add_argument("--batch", type=common.positive_int, default=8)
    arg_parser.add_argument("--repeats", type=common.positive_int, default=10)
    arg_parser.add_argument("--gemm", type=common.positive_int, default=4096,
                            help="side of the square float32 GEMM")
    arg_parser.add_argument("--sweep-size", type=common.positive_int, default=224)
    arg_parser.add_argument("--sweep-batch", type=common.positive_int, default=4)
    arg_parser.add_argument("--sweep-repeats", type=common.positive_int, default=5)
    common.add_variants(arg_parser)
    args = arg_parser.parse_args(argv)
    common.check_size(arg_parser, "--sweep-size", args.sweep_size, args.variants)
    common.check_size(arg_parser, "--size", args.size, APPLICATIONS)
    return args, common.command("inference.py", args, arg_parser)


def main(argv=None) -> common.Section:
    """Runs both parts and prints their tables; returns the section for the docs."""
    args, command = arguments(argv)
    compared, gemm = against_applications(args.size, args.batch, args.repeats, args.gemm)
    swept, sweep_peak = sweep(args.variants, args.sweep_size, args.sweep_batch,
                              args.sweep_repeats, args.gemm)
    return common.report(section(args, command, compared, gemm, swept, sweep_peak))


if __name__ == "__main__":
    main()
