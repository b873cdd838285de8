"""LoRA phases against full fine-tuning: trainable parameters, peak memory, epoch time, test
accuracy.

Two runs of the recipe code itself (keras_vgg.finetune.finetune), each in a fresh process
(memory.py's launcher: a run's peak RSS is its own), from the same seed and the same data:
the recipe as given (phases [freeze none]) and the same with ``phases.0.lora_rank`` set. Each
run's trainable parameters are what its phase trains (lora.json's figure for the LoRA run,
Keras's count for the full one), its epoch time the median wall time of its epochs after the
first (which traces), its accuracy the test split's (metrics.json), its peak RSS the
process's (ru_maxrss), shown with what the process held once its imports were done. The
merged best.keras's max abs diff from the adapted model is shown too. Ratios are LoRA / full.

Usage:
    python benchmarks/lora.py                    # VGG11-BN 32x32, 120 images a class, rank 8
    python benchmarks/lora.py --rank 4 --epochs 4 --set data.builtin_images_per_class=40
    python benchmarks/lora.py --write            # also puts the section into docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import common
import keras
import memory
import numpy as np

from keras_vgg.finetune import Recipe, finetune, load_recipe

TITLE = "Fine-tuning: LoRA phases against full fine-tuning"
BASE = ["model.name=vgg11_bn", "model.image_size=32", "data.builtin_images_per_class=120",
        "data.test_split=0.3", "tensorboard=false", "early_stopping_patience=0",
        "reduce_lr_patience=0"]


class EpochSeconds(keras.callbacks.Callback):
    """Each epoch's wall time, and the parameters the fit trains."""

    def __init__(self):
        super().__init__()
        self.seconds, self.trainable = [], None

    def on_train_begin(self, logs=None):
        self.trainable = sum(int(np.prod(v.shape)) for v in self.model.trainable_weights)

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def measure(recipe, name) -> dict:
    """One run's row: trainable parameters, median epoch seconds after the first, test
    accuracy, and (LoRA) the merged model's max abs diff."""
    clock = EpochSeconds()
    with tempfile.TemporaryDirectory() as root:
        result = finetune(recipe, run_dir=Path(root) / name, callbacks=[clock], verbose=0)
    final, figures = result.metrics["final"], result.metrics.get("lora", {}).get("phase1", {})
    return {"run": name, "rank": recipe.phases[0].lora_rank,
            "trainable": figures.get("trainable_params", clock.trainable),
            "epoch_s": common.median(clock.seconds[1:] or clock.seconds),
            "test_accuracy": final["test_accuracy"], "test": final["test"],
            "max_abs_diff": figures.get("max_abs_diff")}


def measured_alone(recipe, name) -> dict:
    """:func:`measure` in a fresh process: its row, with ``import_mb`` (the process's RSS
    after its imports) and ``peak_mb`` (its peak)."""
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "recipe.json"
        path.write_text(json.dumps(recipe.to_dict()))
        lines, peak = memory.launched(__file__, "--child", path, "--name", name)
    return {**json.loads(lines[-1]), "peak_mb": peak}


def child(recipe_path, name):
    """In the child: the run measured, printed as JSON."""
    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * memory.MB
    recipe = Recipe.from_dict(json.loads(Path(recipe_path).read_text()))
    print(json.dumps({**measure(recipe, name), "import_mb": imported}), flush=True)


def body(args, recipe, rows) -> str:
    full, lora = rows
    table = common.table(
        ("run", "trainable parameters", "peak RSS MB (after imports)", "epoch s (median)",
         "test accuracy", "merged vs adapted max abs diff"),
        [(r["run"], f"{r['trainable']:,}", f"{r['peak_mb']:.0f} ({r['import_mb']:.0f})",
          f"{r['epoch_s']:.2f}",
          f"{r['test_accuracy']:.3f} ({r['test']['correct']}/{r['test']['count']})",
          "" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}") for r in rows]
        + [("LoRA / full", f"{lora['trainable'] / full['trainable']:.3f}",
            f"{lora['peak_mb'] / full['peak_mb']:.2f} ("
            f"{(lora['peak_mb'] - lora['import_mb']) / (full['peak_mb'] - full['import_mb']):.2f}"
            " over the imports)",
            f"{lora['epoch_s'] / full['epoch_s']:.2f}",
            f"{lora['test_accuracy'] - full['test_accuracy']:+.3f} (difference)", "")])
    phase = recipe.phases[0]
    return (f"{recipe.model.name} at {recipe.model.image_size}x{recipe.model.image_size}, "
            f"weights {recipe.model.weights}, built-in shapes "
            f"({recipe.data.builtin_images_per_class} images a class, test share "
            f"{recipe.data.test_split}), one phase of {phase.epochs} epochs at lr {phase.lr}, "
            f"freeze {phase.freeze}, seed {recipe.seed}, mixed_precision "
            f"{recipe.mixed_precision}; LoRA rank {args.rank} on every conv of the base (the "
            "head and BN train fully in both). Each run in a fresh process, the full run first.\n\n"
            + table)


def arguments(argv=None):
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--rank", type=common.positive_int, default=8)
    arg_parser.add_argument("--epochs", type=common.positive_int, default=6)
    arg_parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                            help="recipe overrides, as keras-vgg finetune takes them")
    arg_parser.add_argument("--write", action="store_true",
                            help="put the section into docs/benchmarks.md")
    arg_parser.add_argument("--child", help=argparse.SUPPRESS)
    arg_parser.add_argument("--name", help=argparse.SUPPRESS)
    args = arg_parser.parse_args(argv)
    if args.child:
        return args, (None, None), ""
    try:
        full = load_recipe("builtin", [*BASE, f"phases.0.epochs={args.epochs}",
                                       "phases.0.freeze=none", *args.set])
        lora = full.but({"phases.0.lora_rank": args.rank})
    except ValueError as error:
        arg_parser.error(str(error))
    return args, (full, lora), common.command("lora.py", args, arg_parser)


def main(argv=None) -> common.Section:
    """Measures both runs, prints the table; returns the section (written with --write)."""
    args, (full, lora), command = arguments(argv)
    if args.child:
        return child(args.child, args.name)
    rows = [measured_alone(full, "full"), measured_alone(lora, f"LoRA rank {args.rank}")]
    section = common.report(common.Section(TITLE, command, body(args, full, rows), rows=rows))
    if args.write:
        common.write_section(section)
    return section


if __name__ == "__main__":
    main()
