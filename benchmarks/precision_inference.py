"""Inference in float32 and bfloat16: every variant, each against its own GEMM peak.

Part 1 times every variant of keras_vgg.list_models() (with its top, random weights) in
float32 and as ``keras_vgg.precision.with_precision(model, "bfloat16")``, in alternating
rounds with a square ``tf.matmul`` in float32 and one in bfloat16 (--gemm x --gemm: each
precision's measured peak), so each precision's GFLOP/s is read against its own peak.
Part 2 times the recipe's feature-cache extraction (``keras_vgg.finetune.train.
cached_features``, the code a run uses) with ``mixed_precision`` false (float32) and auto.
Part 3 times one epoch of the built-in recipe's phase in float32 and with
``mixed_precision: auto`` (benchmarks/precision.py's clock).

Usage:
    python benchmarks/precision_inference.py          # 224x224, batch 8, every variant
    python benchmarks/precision_inference.py --size 64 --batch 2 --repeats 1 --variants vgg11 \
        --cache-size 64 --cache-images 2 --gemm 512
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
import tempfile
from pathlib import Path

import common
import keras
import numpy as np

import keras_vgg
from keras_vgg.precision import detect_precision, with_precision

DOCS = common.ROOT / "docs"


def gemm(side, dtype):
    """``(run, flops)``: a square ``tf.matmul`` in ``dtype``."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((side, side), seed=1), dtype)
    b = tf.cast(tf.random.normal((side, side), seed=2), dtype)
    return (lambda: tf.matmul(a, b).numpy()), 2 * side ** 3


def variant_row(name, size, batch, repeats, gemms) -> dict:
    """One variant in both precisions, timed in rounds with both GEMMs."""
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    model = keras_vgg.get_model(name, input_shape=(size, size, 3), adaptive_pool=None)
    fast = with_precision(model, "bfloat16", inference=True)
    diff = float(np.max(np.abs(model.predict_on_batch(x) - fast.predict_on_batch(x))))
    clocks = {"float32": common.wall(lambda: model.predict_on_batch(x)),
              "bfloat16": common.wall(lambda: fast.predict_on_batch(x)),
              **{f"gemm {dtype}": common.wall(run) for dtype, (run, _) in gemms.items()}}
    seconds = common.alternate(clocks, repeats)
    row = timed_row(name, size, batch, seconds, {d: f for d, (_, f) in gemms.items()}, diff)
    clocks.clear()  # the models go with their clocks
    keras.backend.clear_session()
    gc.collect()
    return row


def timed_row(name, size, batch, seconds, gemm_flops, diff) -> dict:
    """A variant's row from the seconds of every round (``{"float32": [...], "bfloat16":
    [...], "gemm float32": [...], "gemm bfloat16": [...]}``), each GEMM's FLOPs (``{dtype:
    flops}``) and the largest difference of the two precisions' outputs."""
    gflops = keras_vgg.describe(name, input_shape=(size, size, 3)).gflops
    row = {"model": name, "gflops_per_image": gflops, "max_abs_diff": diff,
           "speedup": common.paired(seconds["float32"], seconds["bfloat16"])}
    for dtype, flops in gemm_flops.items():
        row[f"{dtype}_images_s"] = batch / common.median(seconds[dtype])
        row[f"{dtype}_of_peak"] = common.paired(seconds[f"gemm {dtype}"], seconds[dtype]) \
            * batch * gflops * 1e9 / flops
        row[f"{dtype}_gemm_gflops_s"] = flops / common.median(seconds[f"gemm {dtype}"]) / 1e9
    return row


def cache_clocks(size, per_class):
    """Clocks of the recipe's feature-cache extraction (VGG16 base at ``size``) in float32
    (``mixed_precision: false``) and in ``auto``; each round extracts afresh."""
    from keras_vgg.finetune import data as data_lib
    from keras_vgg.precision import training_scope
    from keras_vgg.finetune.config import load_recipe
    from keras_vgg.finetune.model import build_finetune_model
    from keras_vgg.finetune.context import RunContext
    from keras_vgg.finetune.phase import cached_features
    from keras_vgg.finetune.train import preprocessing_mode

    recipe = load_recipe("builtin", [f"model.image_size={size}", "model.name=vgg16",
                                     "model.weights=none",
                                     f"data.builtin_images_per_class={per_class}",
                                     "data.augment=none", "data.test_split=0"])
    # (no test split: the cache holds train and val only)
    splits = data_lib.load_data(recipe)
    folder = Path(tempfile.mkdtemp())
    clocks = {}
    for name, mixed in (("float32", False), ("auto", "auto")):
        form = recipe.but({"mixed_precision": mixed})
        with training_scope(mixed):  # as a run builds its model
            model = build_finetune_model(form, len(splits.class_names))
        run = RunContext(form, folder, splits, preprocessing_mode(form, model), verbose=0)

        def extract(run=run, model=model):
            shutil.rmtree(run.folder.feature_cache, ignore_errors=True)
            cached_features(run, model)

        clocks[name] = common.wall(extract)
    return clocks, len(splits.train_labels) + len(splits.val_labels)


def epoch_clocks():
    """One epoch of the built-in recipe's phase, float32 and ``mixed_precision: auto``."""
    from precision import clock_for

    from keras_vgg.finetune import data as data_lib
    from keras_vgg.finetune.config import load_recipe

    recipe = load_recipe("builtin")
    splits = data_lib.load_data(recipe)
    clocks, policies = {}, {}
    for name, mixed in (("float32", False), ("auto", "auto")):
        clocks[name], policies[name] = clock_for(recipe, splits, mixed, False)
    return clocks, policies, recipe


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.bar(names, [r["speedup"] for r in rows], color="tab:green")
    left.axhline(1, color="black", lw=0.8)
    left.set_ylabel("bfloat16 speed-up over float32")
    width = 0.4
    positions = np.arange(len(names))
    for offset, dtype in ((-width / 2, "float32"), (width / 2, "bfloat16")):
        right.bar(positions + offset, [100 * r[f"{dtype}_of_peak"] for r in rows], width,
                  label=dtype)
    right.set_xticks(positions, names)
    right.set_ylabel("% of the same precision's GEMM peak")
    right.legend()
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


TITLE = "Inference in bfloat16: every variant, feature cache, fine-tune epoch"


def section(args, command, rows, cache_s, images, epoch_s, policies, recipe) -> common.Section:
    """The docs section from what the three parts measured: the variants' rows
    (:func:`timed_row`), the seconds of each feature-cache extraction of ``images`` images
    and of each fine-tune epoch of ``recipe`` (``{"float32": [...], "auto": [...]}``), and
    the dtype policy each epoch's model computed in."""
    return common.Section(TITLE, command,
                          body(args, rows, cache_s, images, epoch_s, policies, recipe),
                          rows=rows, targets=targets(rows, cache_s, epoch_s))


def arguments(argv=None):
    """``(args, command)``: the parsed arguments and the command line that reproduces them."""
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--size", type=common.positive_int, default=224)
    arg_parser.add_argument("--batch", type=common.positive_int, default=8)
    arg_parser.add_argument("--repeats", type=common.positive_int, default=3)
    arg_parser.add_argument("--gemm", type=common.positive_int, default=4096)
    arg_parser.add_argument("--cache-size", type=common.positive_int, default=224)
    arg_parser.add_argument("--cache-images", type=common.positive_int, default=40,
                            help="built-in images per class for the feature cache (5 classes)")
    common.add_variants(arg_parser)
    args = arg_parser.parse_args(argv)
    return args, common.command("precision_inference.py", args, arg_parser)


def main(argv=None) -> common.Section:
    args, command = arguments(argv)
    gemms = {dtype: gemm(args.gemm, dtype) for dtype in ("float32", "bfloat16")}
    rows = [variant_row(name, args.size, args.batch, args.repeats, gemms)
            for name in args.variants]
    cache, images = cache_clocks(args.cache_size, args.cache_images)
    cache_s = common.alternate(cache, args.repeats)
    epochs, policies, recipe = epoch_clocks()
    epoch_s = common.alternate(epochs, args.repeats)
    return common.report(section(args, command, rows, cache_s, images, epoch_s, policies,
                                 recipe))


def body(args, rows, cache_s, images, epoch_s, policies, recipe) -> str:
    peaks = {d: common.median([r[f"{d}_gemm_gflops_s"] for r in rows])
             for d in ("float32", "bfloat16")}
    fastest = max(r["bfloat16_images_s"] * r["gflops_per_image"] for r in rows)
    first = common.table(
        ("variant", "GFLOP/img", "float32 img/s", "bfloat16 img/s", "speed-up",
         "float32 of its GEMM", "bfloat16 of its GEMM", "max abs diff"),
        [(r["model"], f"{r['gflops_per_image']:.2f}", f"{r['float32_images_s']:.2f}",
          f"{r['bfloat16_images_s']:.2f}", f"{r['speedup']:.2f}",
          f"{r['float32_of_peak']:.1%}", f"{r['bfloat16_of_peak']:.1%}",
          f"{r['max_abs_diff']:.1e}") for r in rows])
    second = common.table(
        ("step", "float32 s", f"auto ({detect_precision().precision}) s", "speed-up"),
        [(f"feature cache: VGG16 base, {images} images at {args.cache_size}x{args.cache_size}",
          f"{common.median(cache_s['float32']):.2f}", f"{common.median(cache_s['auto']):.2f}",
          f"{common.paired(cache_s['float32'], cache_s['auto']):.2f}"),
         (f"fine-tune epoch: builtin phase ({recipe.model.name}, {recipe.model.image_size}x"
          f"{recipe.model.image_size}, computes in {policies['auto']})",
          f"{common.median(epoch_s['float32']):.2f}", f"{common.median(epoch_s['auto']):.2f}",
          f"{common.paired(epoch_s['float32'], epoch_s['auto']):.2f}")])
    return (f"Machine: {common.machine()}. `auto` here: {detect_precision()}.\n\n"
            f"Every variant with its top (1000 classes, random weights), {args.size}x"
            f"{args.size}, batch {args.batch}, `predict_on_batch`, {args.repeats} rounds "
            f"after a warm-up, alternating with a {args.gemm}x{args.gemm} `tf.matmul` in "
            f"float32 (median {peaks['float32']:.0f} GFLOP/s) and in bfloat16 (median "
            f"{peaks['bfloat16']:.0f} GFLOP/s); \"of its GEMM\" is the median over rounds of "
            "the model's GFLOP/s over that precision's GEMM in the same round. bfloat16 is "
            "`with_precision(model, \"bfloat16\", inference=True)`, as `predict` and the "
            "SavedModel export use it: weights and compute in bfloat16, the "
            "classifier in float32. Max abs diff: of the softmax outputs, bfloat16 vs "
            "float32 (random weights: agreement on real images is tested on the built-in "
            "model, tests/test_precision.py). The bfloat16 `tf.matmul` is not this CPU's "
            f"bfloat16 limit: the fastest variant's convolutions ran at {fastest:.0f} GFLOP/s, "
            "so compare the bfloat16 column across variants rather than with 100%."
            f"\n\n{first}\n\n"
            "![bfloat16 speed-up and fraction of each precision's GEMM peak]"
            f"(precision.png)\n\nThe run's other forward passes, same rounds:\n\n{second}")


def targets(rows, cache_s, epoch_s) -> list:
    by_name = {r["model"]: r for r in rows}
    found = []
    if "vgg16" in by_name:
        found.append(common.Target("bfloat16 VGG16", "bfloat16 >= 5x float32",
                                   f"{by_name['vgg16']['speedup']:.2f}x",
                                   by_name["vgg16"]["speedup"] >= 5))
    plain = [r for r in rows if r["model"] in ("vgg11", "vgg11_lrn", "vgg13", "vgg16c",
                                                "vgg16", "vgg19")]
    if plain:
        low = min(plain, key=lambda r: r["speedup"])
        below = [r["model"] for r in plain if r["speedup"] < 4]
        found.append(common.Target("bfloat16 A-E", "every variant >= 4x",
                                   f"lowest {low['model']} {low['speedup']:.2f}x",
                                   not below, _below_reading(below)))
    cache = common.paired(cache_s["float32"], cache_s["auto"])
    found.append(common.Target("bfloat16 feature cache", ">= 4x", f"{cache:.2f}x", cache >= 4,
                               "the extraction's fixed costs (one trace, the first batch) "
                               "weigh more with few images: rerun with more --cache-images"))
    epoch = common.paired(epoch_s["float32"], epoch_s["auto"])
    found.append(common.Target(
        "bfloat16 fine-tune epoch", ">= 1.5x", f"{epoch:.2f}x", epoch >= 1.5,
        "the built-in recipe trains vgg11_bn at 32x32: convolutions too small to keep AMX "
        "busy, and BatchNormalization computes in float32 between casts; the same phase "
        "at 64x64 gains 1.65x (benchmarks/precision.py)"))
    return found


def _below_reading(below) -> str:
    parts = [f"below 4x: {', '.join(below)}."]
    if "vgg11_lrn" in below:
        parts.append("vgg11_lrn: TensorFlow's LRN kernel has no bfloat16 form on a CPU, so its "
                     "LRN runs in float32 between casts; LRN written with TFLite builtins (the "
                     "mobile issue) is where that goes (docs/precision.md).")
    if [name for name in below if name != "vgg11_lrn"]:
        parts.append("A plain form near 4x moves across it from one run to the next on this "
                     "shared 2-core machine: read the speed-up column over several runs.")
    return " ".join(parts)


if __name__ == "__main__":
    plot(main().rows, DOCS / "precision.png")
