"""Training speed of the precision switches: --mixed-precision and --jit-compile.

The built-in recipe's phase (the layers it unfreezes, with its learning rate) is
trained one epoch at a time in four forms, alternating: float32, mixed precision
(``mixed_bfloat16`` on a CPU, ``mixed_float16`` on a GPU: what ``--mixed-precision``
chooses), XLA (``jit_compile``), and both. Each form's model is built under its own dtype
policy, as the recipe builds it.

Usage:
    python benchmarks/precision.py                    # 64x64, 3 alternating epochs each
    python benchmarks/precision.py --image-size 32 --repeats 1 --forms "mixed precision" \
        --set data.builtin_images_per_class=8                 # a smoke run
"""

from __future__ import annotations

import dataclasses

import common
import keras
from finetune_speed import compiled, epoch_clock

from keras_vgg.finetune import data as data_lib
from keras_vgg.precision import training_scope
from keras_vgg.finetune.config import load_recipe
from keras_vgg.finetune.model import bn_training, build_finetune_model, freeze
from keras_vgg.finetune.train import preprocessing_mode

FORMS = {"float32": (False, False), "mixed precision": (True, False), "XLA": (False, True),
         "mixed precision + XLA": (True, True)}


def clock_for(recipe, splits, mixed, jit):
    """An epoch clock of the recipe's last phase for one form, and the dtype policy its base
    computes in."""
    recipe = recipe.but({"mixed_precision": mixed, "jit_compile": jit})
    keras.utils.set_random_seed(recipe.seed)
    with training_scope(mixed):
        model = build_finetune_model(recipe, len(splits.class_names))
        policy = model.get_layer("base").layers[1].dtype_policy.name
    freeze(model, recipe.phases[-1].freeze, freeze_bn=not bn_training(recipe))
    compiled(model, recipe, -1)
    pipeline = data_lib.train_pipeline(splits.train, recipe, preprocessing_mode(recipe, model))
    return epoch_clock(model, pipeline), policy


TITLE = "Fine-tuning: mixed precision and XLA"


def rows_of(policies, seconds) -> list[dict]:
    """One row per form (float32 first) from the seconds of its epochs: the median epoch and
    the median per-round speed-up over float32."""
    return [{"form": name, "policy": policies[name], "epoch_s": common.median(seconds[name]),
             "speedup": common.paired(seconds["float32"], seconds[name])} for name in seconds]


def section(args, command, recipe, images, rows) -> common.Section:
    """The docs section from the rows (:func:`rows_of`) of ``recipe``'s last phase on
    ``images`` training images."""
    body = (f"Recipe `builtin`'s phase ({recipe.model.name}, {args.image_size}x{args.image_size}, "
            f"batch {recipe.data.batch_size}, {images} training images, freeze "
            f"{recipe.phases[-1].freeze}), one epoch per round, {args.repeats} alternating rounds "
            "after a warm-up epoch (which also holds XLA's compilation); medians.\n\n"
            + common.table(("form", "base computes in", "epoch s", "float32 / this (speed-up)"),
                           [(r["form"], r["policy"], f"{r['epoch_s']:.2f}",
                             f"{r['speedup']:.2f}") for r in rows], left=2)
            + "\n\nOn this CPU these are the only precision figures: no GPU was lent to "
            "measure `mixed_float16` where it is meant to pay.")
    return common.Section(TITLE, command, body, rows=rows)


def arguments(argv=None):
    """``(args, recipe, command)``: the parsed arguments, the builtin recipe with their
    overrides, and the command line that reproduces them."""
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--image-size", type=common.positive_int, default=64)
    arg_parser.add_argument("--repeats", type=common.positive_int, default=3)
    arg_parser.add_argument("--forms", nargs="+", choices=list(FORMS), default=list(FORMS),
                            help="float32 always runs: it is the baseline")
    arg_parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                            help="overrides of the builtin recipe")
    args = arg_parser.parse_args(argv)
    recipe = load_recipe("builtin", [f"model.image_size={args.image_size}", *args.set])
    return args, recipe, common.command("precision.py", args, arg_parser)


def main(argv=None) -> common.Section:
    """Times the four forms side by side; prints and returns the docs section."""
    args, recipe, command = arguments(argv)
    forms = ["float32"] + [name for name in args.forms if name != "float32"]
    splits = data_lib.load_data(recipe)
    clocks, policies = {}, {}
    for name in forms:
        clocks[name], policies[name] = clock_for(recipe, splits, *FORMS[name])
    seconds = common.alternate(clocks, args.repeats)
    rows = rows_of(policies, seconds)
    keras.backend.clear_session()
    return common.report(section(args, command, recipe, len(splits.train_labels), rows))


if __name__ == "__main__":
    main()
