"""What deterministic runs cost: an epoch of the main job with deterministic kernels on and
off, side by side in one process.

The built-in recipe's training (its model, image size, batch, augmentation, the
epoch-seeded pipeline) is fit one epoch at a time by two copies of the same model, one with
TensorFlow's op determinism on (the recipe's ``deterministic: true``, the default), one with
it off, in alternating rounds after a warm-up epoch each. The ratio is the median over rounds
of (deterministic epoch s) / (non-deterministic epoch s).

Usage:
    python benchmarks/determinism.py                 # the main job's settings, 3 rounds
    python benchmarks/determinism.py --write         # ... and its section in docs/benchmarks.md
    python benchmarks/determinism.py --repeats 1 --set data.builtin_images_per_class=20  # smoke
"""

from __future__ import annotations

import keras
from finetune_speed import compiled
from tensorflow.python.framework import config as tf_config

import common
from keras_vgg.finetune import data as data_lib
from keras_vgg.precision import training_precision, training_scope
from keras_vgg.finetune.config import load_recipe
from keras_vgg.finetune.model import bn_training, build_finetune_model, freeze
from keras_vgg.finetune.train import preprocessing_mode

TITLE = "Fine-tuning: what deterministic kernels cost"
FORMS = {"not deterministic": False, "deterministic": True}


def clock_for(recipe, splits, deterministic: bool):
    """A clock of one training epoch of the recipe's last phase, with TensorFlow's op
    determinism set as ``deterministic`` while it runs."""
    keras.utils.set_random_seed(recipe.seed)
    with training_scope(recipe.mixed_precision):
        model = build_finetune_model(recipe, len(splits.class_names))
    freeze(model, recipe.phases[-1].freeze, freeze_bn=not bn_training(recipe))
    compiled(model, recipe, -1)
    epoch = data_lib.EpochSeed(recipe.seed)
    pipeline = data_lib.train_pipeline(splits.train, recipe, preprocessing_mode(recipe, model),
                                       epoch=epoch)
    timer = common.wall(lambda: model.fit(pipeline, epochs=1, verbose=0, shuffle=False,
                                            callbacks=[epoch]))

    def clock():
        before = tf_config.is_op_determinism_enabled()
        (tf_config.enable_op_determinism if deterministic else tf_config.disable_op_determinism)()
        try:
            with training_scope(recipe.mixed_precision):
                return timer()
        finally:
            (tf_config.enable_op_determinism if before else tf_config.disable_op_determinism)()

    return clock


def section(args, command, recipe, images, trains_in, seconds) -> common.Section:
    """The docs section from the seconds of every round (``{form: [...]}``, both forms of
    :data:`FORMS`) of ``recipe``'s epochs on ``images`` training images, trained in the
    precision ``trains_in``."""
    ratio = common.paired(seconds["deterministic"], seconds["not deterministic"])
    rows = [{"form": name, "epoch_s": common.median(seconds[name]), "rounds": seconds[name]}
            for name in FORMS]
    body = (f"Machine: {common.machine()}.\n\n"
            f"Recipe `builtin` ({recipe.model.name}, {recipe.model.image_size}x{recipe.model.image_size}, batch "
            f"{recipe.data.batch_size}, {images:,} training images, augment "
            f"{recipe.data.augment}, trains in {trains_in}"
            f"), one epoch per round, {args.repeats} alternating rounds after a warm-up epoch "
            "each; medians.\n\n"
            + common.table(("form", "epoch s", "every round (s)"),
                           [(r["form"], f"{r['epoch_s']:.2f}",
                             ", ".join(f"{s:.2f}" for s in r["rounds"])) for r in rows], left=1)
            + f"\n\nDeterministic / not (median of the paired rounds): {ratio:.2f}x the epoch "
            "time. Both forms draw the same data order and augmentation from (seed, epoch); "
            "what the switch changes is TensorFlow's choice of kernels.")
    return common.Section(TITLE, command, body, rows=rows)


def arguments(argv=None):
    """``(args, recipe, command)``: the parsed arguments, the builtin recipe with their
    overrides, and the command line that reproduces them."""
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--repeats", type=common.positive_int, default=3)
    arg_parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                            help="overrides of the builtin recipe")
    arg_parser.add_argument("--write", action="store_true",
                            help="put the section into docs/benchmarks.md")
    args = arg_parser.parse_args(argv)
    recipe = load_recipe("builtin", args.set)
    return args, recipe, common.command("determinism.py", args, arg_parser)


def main(argv=None) -> common.Section:
    """Times both forms side by side; prints (and with --write, writes) the docs section."""
    args, recipe, command = arguments(argv)
    splits = data_lib.decode_once(data_lib.load_data(recipe))
    clocks = {name: clock_for(recipe, splits, on) for name, on in FORMS.items()}
    seconds = common.alternate(clocks, args.repeats)
    keras.backend.clear_session()
    result = common.report(section(
        args, command, recipe, len(splits.train_labels),
        training_precision(recipe.mixed_precision), seconds))
    if args.write:
        common.write_section(result)
    return result


if __name__ == "__main__":
    main()
