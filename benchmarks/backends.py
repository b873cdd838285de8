"""Keras backends side by side: VGG16 inference at 224 and one fine-tune epoch, each backend
against TensorFlow in the same script.

A process holds one Keras backend, so the script starts one worker process per backend
(``KERAS_BACKEND`` set, nothing else changed) and gathers what each measured; with
``--rounds`` above 1 the workers run again in rotated order and the medians are taken, so that
drift in the machine's speed hits every backend alike. Each worker measures:

1. Inference: ``VGG16`` with its top (138M parameters) at 224x224, random weights,
   ``predict_on_batch`` on a batch of ``--batch`` images, ``--repeats`` times after a warm-up,
   in float32 and in bfloat16 (``precision=`` of the builder).
2. Fine-tuning: one epoch of the shipped builtin recipe's one phase (every block trains, the
   recipe's pipeline with augmentation), through the recipe's own code (load_data,
   train_pipeline, build_finetune_model, freeze, compile as run_phase does), after a warm-up
   epoch, in float32 and in what ``mixed_precision=auto`` picks on that backend.

Usage:
    python benchmarks/backends.py                       # the three backends, about 6 minutes
    python benchmarks/backends.py --backends tensorflow jax --batch 4 --repeats 3 --rounds 2
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("float32", "bfloat16")
MARK = "BACKENDS-RESULT "


def inference(precision: str, size: int, batch: int, repeats: int) -> float:
    """Images/s of VGG16 with its top at ``size`` in ``precision``: the median of ``repeats``."""
    import keras
    import numpy as np

    import keras_vgg

    keras.backend.clear_session()
    model = keras_vgg.VGG16(input_shape=(size, size, 3), precision=precision)
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    clock = common.wall(lambda: model.predict_on_batch(x))
    clock()  # warm-up: traces and compiles
    return batch / common.median([clock() for _ in range(repeats)])


def finetune_epoch(mixed_precision: str, images_per_class: int, repeats: int) -> dict:
    """Seconds of one epoch of the builtin recipe's phase (median of ``repeats``)."""
    import finetune_speed

    from keras_vgg.finetune import data as data_lib
    from keras_vgg.precision import training_precision, training_scope
    from keras_vgg.finetune.config import load_recipe
    from keras_vgg.finetune.phase import class_weights

    recipe = load_recipe("builtin", [f"mixed_precision={mixed_precision}",
                                     f"data.builtin_images_per_class={images_per_class}"])
    splits = data_lib.load_data(recipe)
    trained_in = training_precision(recipe.mixed_precision)
    with training_scope(recipe.mixed_precision):
        model, mode = finetune_speed.fresh_model(recipe, splits, -1)
        pipeline = data_lib.train_pipeline(splits.train, recipe, mode)
        weights = class_weights(recipe, splits.train_labels, len(splits.class_names))
        clock = finetune_speed.epoch_clock(model, pipeline, class_weight=weights)
        clock()  # warm-up: compiles, fills the decoded-image cache
        seconds = common.median([clock() for _ in range(repeats)])
    return {"precision": trained_in, "epoch_s": seconds,
            "images": len(splits.train_labels), "model": recipe.model.name,
            "image_size": recipe.model.image_size, "batch_size": recipe.data.batch_size}


def worker(args) -> dict:
    """What this process's backend measures (run with KERAS_BACKEND set)."""
    import keras

    backend = keras.backend.backend()
    result = {"backend": backend, "version": common._version(backend),  # the package's name
              "inference": {p: inference(p, args.size, args.batch, args.repeats)
                            for p in PRECISIONS},
              "finetune": {m: finetune_epoch(m, args.images_per_class, args.epochs)
                           for m in ("false", "auto")}}
    print(MARK + json.dumps(result), flush=True)
    return result


def run_worker(backend: str, argv) -> dict:
    """One worker process under ``KERAS_BACKEND=backend``; its result, or an error with its
    output's tail."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *argv],
                          env=env, capture_output=True, text=True, cwd=common.ROOT,
                          timeout=common.CHILD_TIMEOUT_S)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"the {backend} worker failed (exit {done.returncode}):\n"
                       f"{(done.stdout + done.stderr)[-3000:]}")


def combine(rounds: list[list[dict]]) -> dict:
    """Per backend: the median over rounds of every figure."""
    by_backend = {}
    for results in rounds:
        for result in results:
            by_backend.setdefault(result["backend"], []).append(result)
    combined = {}
    for backend, results in by_backend.items():
        first = results[0]
        combined[backend] = {
            "version": first["version"],
            "inference": {p: statistics.median(r["inference"][p] for r in results)
                          for p in first["inference"]},
            "finetune": {m: dict(first["finetune"][m], epoch_s=statistics.median(
                r["finetune"][m]["epoch_s"] for r in results)) for m in first["finetune"]},
        }
    return combined


def rows_of(combined: dict) -> list[dict]:
    """One row per backend, with ratios against TensorFlow's figures of the same kind."""
    base = combined.get("tensorflow")
    rows = []
    for backend, result in combined.items():
        row = {"backend": backend, "version": result["version"]}
        for precision, images_s in result["inference"].items():
            row[f"{precision}_images_s"] = images_s
            row[f"{precision}_vs_tf"] = images_s / base["inference"][precision] if base else None
        for mixed, epoch in result["finetune"].items():
            key = "epoch_float32" if mixed == "false" else "epoch_auto"
            row[f"{key}_s"] = epoch["epoch_s"]
            row[f"{key}_precision"] = epoch["precision"]
            reference = base["finetune"][mixed]["epoch_s"] if base else None
            row[f"{key}_tf_speed"] = reference / epoch["epoch_s"] if base else None
        rows.append(row)
    return rows


def _ratio(value) -> str:
    return "" if value is None else f"{value:.2f}x"


def body(args, rows, combined) -> str:
    epoch = next(iter(combined.values()))["finetune"]["false"]
    inference_table = common.table(
        ("backend", "float32 img/s", "vs tensorflow", "bfloat16 img/s", "vs tensorflow",
         "bfloat16 / float32"),
        [(f"{r['backend']} {r['version']}", f"{r['float32_images_s']:.2f}",
          _ratio(r["float32_vs_tf"]), f"{r['bfloat16_images_s']:.2f}",
          _ratio(r["bfloat16_vs_tf"]), _ratio(r["bfloat16_images_s"] / r["float32_images_s"]))
         for r in rows])
    finetune_table = common.table(
        ("backend", "float32 epoch s", "speed vs tensorflow", "auto trains in", "auto epoch s",
         "speed vs tensorflow's auto"),
        [(r["backend"], f"{r['epoch_float32_s']:.2f}", _ratio(r["epoch_float32_tf_speed"]),
          r["epoch_auto_precision"], f"{r['epoch_auto_s']:.2f}", _ratio(r["epoch_auto_tf_speed"]))
         for r in rows])
    return (f"Each backend in its own worker process, {args.rounds} round(s) in rotated order, "
            "medians. Speeds are against TensorFlow measured by the same script (above 1x: "
            "faster than TensorFlow).\n\n"
            f"Inference: VGG16 with its top at {args.size}x{args.size}, batch {args.batch}, "
            f"`predict_on_batch`, median of {args.repeats} after a warm-up.\n\n"
            f"{inference_table}\n\n"
            f"Fine-tuning: one epoch of the builtin recipe's phase ({epoch['model']}, "
            f"{epoch['image_size']}x{epoch['image_size']}, batch {epoch['batch_size']}, "
            f"{epoch['images']} training images, every block training, the recipe's pipeline "
            f"with augmentation), median of {args.epochs} epochs after a warm-up epoch; "
            "`mixed_precision=false` (float32) and the shipped `auto`.\n\n" + finetune_table)


TITLE = "Backends: TensorFlow, JAX and PyTorch"


def section(args, command, rounds) -> common.Section:
    """The docs section from every round's worker results (``[[result, ...], ...]``, as
    :func:`worker` prints them), the backends in ``args.backends``'s order."""
    combined = combine(rounds)
    combined = {b: combined[b] for b in args.backends if b in combined}
    rows = rows_of(combined)
    return common.Section(TITLE, command, body(args, rows, combined), rows=rows)


def arguments(argv=None):
    """``(args, in_worker, command)``: the parsed, checked arguments, whether this process
    is a worker (``--worker``, set by :func:`run_worker`), and the command line that
    reproduces them."""
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    arg_parser.add_argument("--size", type=common.positive_int, default=224)
    arg_parser.add_argument("--batch", type=common.positive_int, default=8)
    arg_parser.add_argument("--repeats", type=common.positive_int, default=3)
    arg_parser.add_argument("--epochs", type=common.positive_int, default=2,
                            help="timed fine-tune epochs after the warm-up one")
    arg_parser.add_argument("--images-per-class", type=common.positive_int, default=120,
                            help="the builtin dataset's size (the shipped recipe: 120)")
    arg_parser.add_argument("--rounds", type=common.positive_int, default=1)
    argv = list(sys.argv[1:] if argv is None else argv)
    in_worker = "--worker" in argv  # set by run_worker: measure this backend and print
    args = arg_parser.parse_args([a for a in argv if a != "--worker"])
    if args.size < 32:
        arg_parser.error(f"--size {args.size} is below VGG16's minimum input size 32")
    return args, in_worker, common.command("backends.py", args, arg_parser)


def main(argv=None) -> common.Section:
    """Runs the workers, prints the tables; returns the section for the docs."""
    args, in_worker, command = arguments(argv)
    if in_worker:
        worker(args)
        return None
    forwarded = [f"--{k}={v}" for k, v in (("size", args.size), ("batch", args.batch),
                                            ("repeats", args.repeats), ("epochs", args.epochs),
                                            ("images-per-class", args.images_per_class))]
    rounds = []
    for round_ in range(args.rounds):
        order = args.backends[round_ % len(args.backends):] + \
            args.backends[:round_ % len(args.backends)]
        results = []
        for backend in order:
            began = time.perf_counter()
            results.append(run_worker(backend, forwarded))
            print(f"[{backend}: {time.perf_counter() - began:.0f} s]", flush=True)
        rounds.append(results)
    return common.report(section(args, command, rounds))


if __name__ == "__main__":
    main()
