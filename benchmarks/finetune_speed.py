"""Fine-tuning speed: the recipe's input pipeline vs in-memory tensors, and the feature cache.

Uses the recipe code itself (keras_vgg.finetune): load_data, train_pipeline,
build_finetune_model, freeze, class_weights, cached_features, and compiles as run_phase
does (jit_compile and mixed_precision follow the recipe; one device).

1. Pipeline overhead, per phase of the recipe: one epoch of ``fit`` on the recipe's real
   training pipeline (cached decode, shuffle, batch, augment, preprocess, prefetch) vs one
   epoch on the same batches, taken from that pipeline once into numpy arrays, fed to the
   same compiled model. Epochs alternate; steps/s is steps over the epoch's wall time.
2. Feature cache: with data.augment=[] and phase 1 freezing the whole base (the recipe's cache
   condition), one epoch of training the head on cached features vs one epoch of the
   frozen-base model end to end, alternating; plus the one-time cost of cached_features.

Usage:
    python benchmarks/finetune_speed.py                     # the built-in recipe as shipped
    python benchmarks/finetune_speed.py --repeats 3 --set data.builtin_images_per_class=40
    python benchmarks/finetune_speed.py --config builtin --set model.image_size=64 data.batch_size=16
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import common
import keras
import numpy as np
import tensorflow as tf

from keras_vgg.finetune import data as data_lib
from keras_vgg.precision import training_scope
from keras_vgg.finetune.config import load_recipe, shipped_recipes
from keras_vgg.finetune.recipe import phase_name
from keras_vgg.finetune.model import bn_training, build_finetune_model, freeze
from keras_vgg.finetune.context import RunContext
from keras_vgg.finetune.phase import cached_features, class_weights, uses_feature_cache
from keras_vgg.finetune.train import preprocessing_mode


class EpochTimer(keras.callbacks.Callback):
    """Wall time of the last epoch, from on_epoch_begin to on_epoch_end."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def epoch_clock(model, data, **fit_kwargs):
    """A clock that fits ``model`` for one epoch and returns that epoch's seconds."""
    timer = EpochTimer()

    def clock():
        model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[timer], **fit_kwargs)
        return timer.seconds

    return clock


def compiled(model, recipe, index):
    """Compiled as the recipe's run_phase compiles phase ``index``."""
    model.compile(optimizer=keras.optimizers.Adam(recipe.phases[index].lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=recipe.jit_compile)
    return model


def fresh_model(recipe, splits, index):
    """The recipe's model, frozen and compiled as phase ``index`` does, and its
    preprocessing."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(recipe.seed)
    model = build_finetune_model(recipe, len(splits.class_names))
    freeze(model, recipe.phases[index].freeze, freeze_bn=not bn_training(recipe))
    return compiled(model, recipe, index), preprocessing_mode(recipe, model)


def pipeline_overhead(recipe, splits, index, repeats):
    """One row: steps/s on the real pipeline and on the same batches from numpy arrays."""
    model, mode = fresh_model(recipe, splits, index)
    pipeline = data_lib.train_pipeline(splits.train, recipe, mode)
    batches = list(pipeline.as_numpy_iterator())  # one epoch of the pipeline, in memory
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    weights = class_weights(recipe, splits.train_labels, len(splits.class_names))
    seconds = common.alternate({
        "pipeline": epoch_clock(model, pipeline, class_weight=weights),
        "in-memory": epoch_clock(model, x, y=y, batch_size=recipe.data.batch_size,
                                 class_weight=weights),
    }, repeats)
    return overhead_row(recipe, index, len(batches), seconds)


def overhead_row(recipe, index, steps, seconds) -> dict:
    """A phase's row from the seconds of its epochs (``{"pipeline": [...], "in-memory":
    [...]}``): steps/s of each and the median per-round ratio in-memory / pipeline."""
    return {"phase": phase_name(index), "freeze": recipe.phases[index].freeze,
            "epochs": recipe.phases[index].epochs, "steps": steps,
            "pipeline_steps_s": steps / common.median(seconds["pipeline"]),
            "memory_steps_s": steps / common.median(seconds["in-memory"]),
            "ratio": common.paired(seconds["in-memory"], seconds["pipeline"])}


def cache_recipe(recipe):
    """The recipe without augmentation, which the feature cache needs; checked to use it."""
    recipe = recipe.but({"data.augment": [], "feature_cache": "auto"})
    if not uses_feature_cache(recipe):
        first = recipe.phases[0]
        raise ValueError("Expected a recipe whose phase 0 freezes the whole base "
                         "(phases.0.freeze=all, phases.0.epochs > 0). Received: "
                         f"phases.0.freeze={first.freeze!r}, phases.0.epochs={first.epochs}")
    return recipe


def feature_cache(recipe, splits, repeats):
    """Per-epoch seconds of the head on cached features vs the frozen model end to end."""
    recipe = cache_recipe(recipe)
    model, mode = fresh_model(recipe, splits, 0)
    weights = class_weights(recipe, splits.train_labels, len(splits.class_names))
    plain = epoch_clock(model, data_lib.train_pipeline(splits.train, recipe, mode),
                        class_weight=weights)
    plain()  # warm: the decoded-image cache is full before the features are extracted
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        features = cached_features(RunContext(recipe, Path(run_dir), splits, mode, verbose=0),
                                   model)
        extraction = time.perf_counter() - start
    head = compiled(model.get_layer("head"), recipe, 0)
    cached = tf.data.Dataset.from_tensor_slices((features["train"], splits.train_labels))
    seconds = common.alternate({
        "frozen end to end": plain,
        "cached features": epoch_clock(head, data_lib.shuffle_batch(cached, recipe),
                                       class_weight=weights),
    }, repeats)
    return cache_row(seconds, extraction, features["train"].shape[1:])


def cache_row(seconds, extraction, feature_shape) -> dict:
    """The feature cache's row from the seconds of its epochs (``{"frozen end to end": [...],
    "cached features": [...]}``) and the one-time extraction's seconds."""
    plain_s, cached_s = (common.median(seconds[k]) for k in ("frozen end to end",
                                                             "cached features"))
    saved = plain_s - cached_s
    return {"plain_epoch_s": plain_s, "cached_epoch_s": cached_s,
            "speedup": common.paired(seconds["frozen end to end"], seconds["cached features"]),
            "extraction_s": extraction, "feature_shape": list(feature_shape),
            "break_even_epochs": extraction / saved if saved > 0 else float("inf")}


def body(args, recipe, source, images, overheads, total, cache) -> str:
    first = common.table(
        ("phase", "freeze", "epochs in recipe", "steps/epoch", "pipeline steps/s",
         "in-memory steps/s", "pipeline / in-memory", "overhead"),
        [(r["phase"], r["freeze"], r["epochs"], r["steps"], f"{r['pipeline_steps_s']:.2f}",
          f"{r['memory_steps_s']:.2f}", f"{r['ratio']:.3f}", f"{1 - r['ratio']:.1%}")
         for r in overheads] + [("recipe", "", sum(r["epochs"] for r in overheads), "", "", "",
                                 f"{total:.3f}", f"{1 - total:.1%}")], left=2)
    second = common.table(
        ("per epoch", "frozen end to end s", "cached features s",
         "frozen / cached", "extraction once s", "break-even epochs"),
        [("training split", f"{cache['plain_epoch_s']:.3f}", f"{cache['cached_epoch_s']:.3f}",
          f"{cache['speedup']:.1f}", f"{cache['extraction_s']:.2f}",
          f"{cache['break_even_epochs']:.2f}")])
    return (f"Recipe `{args.config}` ({recipe.model.name}, {recipe.model.image_size}x{recipe.model.image_size}, "
            f"batch {recipe.data.batch_size}, augment {recipe.data.augment}, weights {recipe.model.weights}, "
            f"jit_compile {recipe.jit_compile}, mixed_precision {recipe.mixed_precision}) on "
            f"{source}: {images} training images. Each "
            f"contestant runs {args.repeats} epochs, alternating with the other, after a "
            "warm-up epoch; steps/s and seconds are medians, ratios the median of the "
            "per-round ratios; training only (no validation).\n\n"
            "Input pipeline: the recipe's `train_pipeline` (decoded images cached in memory, "
            "shuffle, batch, augment, preprocess, prefetch) vs the same batches, read once from "
            "it into numpy arrays, fed to the same compiled model. \"recipe\" weights each "
            f"phase by its epochs.\n\n{first}\n\n"
            "Feature cache (data.augment=[], phase 1 freezing the whole base, as the recipe's cache "
            "requires): an epoch of the head on `cached_features` vs an epoch of the "
            "frozen-base model end to end on `train_pipeline`. The one-time extraction "
            f"(train + val splits, features {tuple(cache['feature_shape'])}, written and read "
            "back as .npy) includes tracing `predict`.\n\n" + second)


def targets(recipe, overheads, total, cache):
    light = 1 - total < 0.05
    fast = cache["speedup"] >= 10
    worst = min(overheads, key=lambda r: r["ratio"])
    steps = worst["steps"]
    return [
        common.Target(
            "input pipeline overhead", "< 5% (recipe, epoch-weighted)", f"{1 - total:.1%}",
            light, "" if light else
            f"largest in {worst['phase']} (freeze {worst['freeze']}): {1 - worst['ratio']:.1%} "
            f"of an epoch whose in-memory step takes {1000 / worst['memory_steps_s']:.0f} ms"),
        common.Target(
            "feature cache", ">= 10x faster per epoch than frozen training",
            f"{cache['speedup']:.1f}x", fast, "" if fast else
            f"at {recipe.model.image_size}x{recipe.model.image_size} a frozen-base epoch costs only "
            f"{cache['plain_epoch_s']:.2f} s, and the head's {cache['cached_epoch_s']:.3f} s is "
            f"Keras's fixed per-step cost ({1000 * cache['cached_epoch_s'] / steps:.1f} ms per "
            "step) more than its arithmetic"),
    ]


TITLE = "Fine-tuning: input pipeline overhead and the feature cache"


def recipe_ratio(overheads) -> float:
    """The recipe's training time on in-memory batches over its time on the pipeline: each
    phase's row (:func:`pipeline_overhead`) weighted by its epochs."""
    return (sum(r["epochs"] * r["steps"] / r["memory_steps_s"] for r in overheads)
            / sum(r["epochs"] * r["steps"] / r["memory_steps_s"] / r["ratio"]
                  for r in overheads))


def section(args, command, recipe, source, images, overheads, cache) -> common.Section:
    """The docs section from the measured rows: one per phase (:func:`pipeline_overhead`)
    and the feature cache's (:func:`feature_cache`), on ``images`` training images of
    ``source``."""
    total = recipe_ratio(overheads)
    return common.Section(
        TITLE, command, body(args, recipe, source, images, overheads, total, cache),
        rows=overheads + [cache], targets=targets(recipe, overheads, total, cache),
        extra={"recipe_ratio": total})


def arguments(argv=None):
    """``(args, recipe, command)``: the parsed arguments, the recipe they make (checked to
    use the feature cache) and the command line that reproduces them."""
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--config", default="builtin", choices=shipped_recipes())
    arg_parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                            help="recipe overrides, as keras-vgg finetune takes them")
    arg_parser.add_argument("--repeats", type=common.positive_int, default=5)
    args = arg_parser.parse_args(argv)
    # The builtin recipe trains from scratch with no head-only phase; the feature cache
    # needs one, so 2 head epochs go before its phase (the overrides apply to the file's).
    try:
        recipe = load_recipe(args.config, args.set)
        if args.config == "builtin":
            head = {"freeze": "all", "epochs": 2, "lr": 1e-3}
            recipe = recipe.but({"phases": [head, *map(dataclasses.asdict, recipe.phases)]})
        cache_recipe(recipe)
    except ValueError as error:
        arg_parser.error(str(error))
    return args, recipe, common.command("finetune_speed.py", args, arg_parser)


def main(argv=None) -> common.Section:
    """Measures both comparisons and prints their tables; returns the section for the docs."""
    args, recipe, command = arguments(argv)
    keras.utils.set_random_seed(recipe.seed)
    splits = data_lib.load_data(recipe)
    phases = [index for index, phase in enumerate(recipe.phases) if phase.epochs]
    with training_scope(recipe.mixed_precision):
        overheads = [pipeline_overhead(recipe, splits, p, args.repeats) for p in phases]
        cache = feature_cache(recipe, splits, args.repeats)
    keras.backend.clear_session()
    return common.report(section(args, command, recipe, splits.report["source"],
                                 len(splits.train_labels), overheads, cache))


if __name__ == "__main__":
    main()
