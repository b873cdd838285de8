"""keras-vgg: build, fine-tune, export and run VGG models (a thin face over keras_vgg).

Examples:
    $ keras-vgg list
    $ keras-vgg summary vgg_m --input-shape 64,64,3 --no-top
    $ keras-vgg finetune                      # the built-in shapes, offline, a few minutes
    $ keras-vgg finetune --data photos/ --model vgg16 --weights imagenet
    $ keras-vgg finetune --config tf_flowers phases.1.epochs=10 data.batch_size=16
    $ keras-vgg recipes                       # the shipped recipes and what each should reach
    $ keras-vgg finetune --dry-run tf_flowers data.batch_size=16   # the resolved recipe
    $ keras-vgg finetune --strategy mirrored --mixed-precision   # all local GPUs
    $ keras-vgg export runs/builtin --format saved_model tflite \\
          --quantize none float16 dynamic int8 -o exported/
    $ keras-vgg predict exported/model_int8.tflite photo.jpg
    $ keras-vgg compress runs/builtin --flops 0.3  # prune, fine-tune, export, compare
    $ keras-vgg distill runs/builtin --student vgg_s  # a smaller variant taught by the run
    $ keras-vgg weights                       # which published weights exist per variant
    $ keras-vgg convert vgg11_bn-6002323d.pth --model vgg11_bn -o vgg11_bn.weights.h5
    $ keras-vgg explain runs/builtin photo.png -o explained/   # Grad-CAM pictures
    $ keras-vgg embed vgg16 photos/ -o embeddings.npz        # retrieval embeddings
    $ keras-vgg nearest embeddings.npz photos/cat.jpg -k 5
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# Light modules only: the parser, --help, list, recipes and finetune --dry-run load no
# TensorFlow (each command imports what it runs).
from keras_vgg._extras import MissingExtra
from keras_vgg._helpers import did_you_mean
from keras_vgg._quiet import VERBOSE_FLAG
from keras_vgg.choices import (CRITERIA, DEFAULT_FORMATS, FORMATS, INT8_IO, MIN_AGREEMENT, MODES,
                               PLANS, PRECISIONS, QUANTIZE, SAMPLE_IMAGES)
from keras_vgg.configs import variant_table
from keras_vgg.export.formats import ExportError
from keras_vgg.finetune.config import recipes_help

# What a command may fail with that is the user's to fix: printed as one line, exit 2.
USER_ERRORS = (ValueError, MissingExtra, ExportError, FileExistsError)
# The library's errors name Python arguments; on the command line they name the flag.
FLAG_OF = {"overwrite=True": "--overwrite", "resume=True": "--resume"}


def in_flags(message: str) -> str:
    """A library error in the command line's words: "pass overwrite=True" (and the older
    "pass overwrite=True (--overwrite)") become "pass --overwrite"."""
    message = re.sub(r"\b\w+=True(?: \((--[\w-]+)\)|, (--[\w-]+),?)",
                     lambda both: both[1] or both[2], message)  # both named: the flag
    for argument, flag in FLAG_OF.items():
        message = message.replace(argument, flag)
    return message


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"expected H,W,C such as 224,224,3; received {text!r}")
    return shape


def positive_int(text: str) -> int:
    if not text.lstrip("-").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1; received {text!r}")
    return int(text)


class Parser(argparse.ArgumentParser):
    """argparse, with the closest name offered: a mistyped choice or flag gets "Did you
    mean ...?", and a mistyped flag after a command gets that command's usage. With
    ``intermixed``, options and positionals mix in any order (finetune RECIPE --dry-run k=v)."""

    def __init__(self, *args, intermixed=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.intermixed, self._mixing = intermixed, False

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from "
                                         f"{choices}){did_you_mean(value, action.choices)}")

    def parse_known_args(self, args=None, namespace=None):
        if self._mixing:  # parse_known_intermixed_args's own two passes
            return super().parse_known_args(args, namespace)
        self._mixing = self.intermixed
        try:
            parse = self.parse_known_intermixed_args if self.intermixed else super().parse_known_args
            namespace, extras = parse(args, namespace)
        finally:
            self._mixing = False
        if extras:  # here, not in the top parser: the usage shown is this command's
            flags = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            hints = [did_you_mean(e.split("=")[0], flags, quote=False) for e in extras
                     if e.startswith("--")]
            self.error(f"unrecognized arguments: {' '.join(extras)}"
                       + next((hint for hint in hints if hint), ""))
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    examples = __doc__.split("Examples:\n", 1)[1].replace("$ ", "").rstrip('"\n')
    parser = Parser(
        prog="keras-vgg", description=__doc__.splitlines()[0].split(": ", 1)[1],
        epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(VERBOSE_FLAG, action="store_true",
                        help="show TensorFlow's native log lines (hidden by default)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every variant with parameters, GFLOPs and fc6 input")
    summary = commands.add_parser("summary", help="build one variant and print its Keras summary")
    summary.add_argument("name", help="a variant name from `keras-vgg list` (or D, A-LRN, ...)")
    summary.add_argument("--input-shape", type=parse_shape, default=None, help="H,W,C")
    summary.add_argument("--no-top", action="store_true", help="without the FC layers")
    summary.add_argument("--batch-norm", action="store_true", help="the batch-norm form")
    summary.add_argument("--classes", type=int, default=1000,
                         help="classes of the top layer (default: 1000)")
    commands.add_parser("weights", help="the published weights of each variant, and where from")
    commands.add_parser("recipes", help="the shipped fine-tune recipes: data, model and what "
                        "each should reach")
    add_finetune_parser(commands)
    add_export_parsers(commands)
    add_convert_parser(commands)
    add_compress_parser(commands)
    add_distill_parser(commands)
    add_feature_parsers(commands)
    add_report_parser(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    if args.command == "finetune" and args.dry_run and not args.resume:
        command = dry_run_command  # reads the recipe only: no TensorFlow loaded
    try:
        return command(args)
    except USER_ERRORS as error:
        print(f"keras-vgg {args.command}: {in_flags(str(error))}", file=sys.stderr)
        return 2


def summary_command(args) -> int:
    from keras_vgg.models import build_vgg

    build_vgg(args.name, include_top=not args.no_top, input_shape=args.input_shape,
              classes=args.classes, batch_norm=args.batch_norm).summary()
    return 0


def printing(table):
    """A command that prints ``table()``."""
    def command(args) -> int:
        print(table())
        return 0
    return command


# each flag of `finetune` and the recipe key it sets
FINETUNE_FLAGS = {"data": "data.source", "model": "model.name", "weights": "model.weights",
                  "image_size": "model.image_size", "batch_size": "data.batch_size",
                  "head": "model.head", "strategy": "strategy",
                  "mixed_precision": "mixed_precision", "jit_compile": "jit_compile",
                  "seed": "seed", "deterministic": "deterministic"}


def add_finetune_parser(commands):
    finetune = commands.add_parser(
        "finetune", help="fine-tune a variant on a dataset (no arguments: the built-in shapes)",
        description="Fine-tune a VGG variant. Settings come from a recipe (RECIPE or "
        "--config), then the flags, then key=value overrides of any recipe key.",
        usage="%(prog)s [-h] [options] [RECIPE] [key=value ...]", intermixed=True,
        epilog=recipes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    finetune.add_argument("overrides", nargs="*", metavar="[RECIPE] key=value",
                          help="a recipe first (as --config), then any recipe key, e.g. "
                          "phases.1.epochs=10 data.augment=flip,zoom (phases count from 0)")
    finetune.add_argument("--config", help="a recipe file (YAML/JSON) or a shipped recipe name")
    finetune.add_argument("--data", help="'builtin', a folder of class sub-folders, or tfds:NAME")
    finetune.add_argument("--model", help="a variant name from `keras-vgg list`")
    finetune.add_argument("--weights", help="'imagenet', a publisher (keras, torchvision, "
                          "matconvnet), a weights file, or 'none' to train from scratch")
    finetune.add_argument("--image-size", type=int, help="square input side in pixels")
    finetune.add_argument("--batch-size", type=int, help="images per step (per replica)")
    finetune.add_argument("--head", help="avg | max | flatten | fc")
    finetune.add_argument("--strategy", help="default | mirrored | multi_worker (TF_CONFIG) | tpu; "
                          "--batch-size is per replica")
    finetune.add_argument("--mixed-precision", action="store_const", const="true",
                          help="always: mixed_float16 on a GPU, mixed_bfloat16 on CPU/TPU "
                          "(the classifier stays float32); the default, mixed_precision=auto, "
                          "does so where the hardware is fast at it; mixed_precision=false "
                          "forces float32")
    finetune.add_argument("--jit-compile", action="store_const", const="true",
                          help="XLA-compile the training step")
    finetune.add_argument("--seed", type=int, help="seeds the weights, the splits and each "
                          "epoch's data order, augmentation and dropout (recipe key seed)")
    finetune.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                          help="deterministic kernels, so the same seed gives the same figures "
                          "(the default); --no-deterministic leaves the kernels free")
    finetune.add_argument("--run-dir", help="where outputs go (default: a new runs/NAME[-N])")
    finetune.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    finetune.add_argument("--resume", action="store_true",
                          help="continue the interrupted run in --run-dir with its own recipe")
    finetune.add_argument("--dry-run", action="store_true",
                          help="print the resolved recipe (every key, as JSON) and stop: "
                          "nothing is trained or written")


def split_recipe(args):
    """(the recipe to start from, the key=value overrides): RECIPE is the first positional
    argument when it has no "=", as --config; without either, builtin or folder (--data)."""
    from keras_vgg.finetune.config import shipped_recipes

    overrides = list(args.overrides)
    given = overrides.pop(0) if overrides and "=" not in overrides[0] else None
    if given is not None and args.config:
        raise ValueError(f"Expected one recipe, as RECIPE or --config. Received: {given!r} and "
                         f"--config {args.config}")
    if given is not None and not Path(given).is_file() and given not in shipped_recipes():
        raise ValueError(f"Expected RECIPE (a recipe file or one of {shipped_recipes()}), then "
                         f"key=value overrides. Received: {given!r}"
                         f"{did_you_mean(given, shipped_recipes())}")
    config = given or args.config or ("builtin" if args.data in (None, "builtin") else "folder")
    return config, overrides


def finetune_command(args) -> int:
    from keras_vgg.finetune import finetune
    from keras_vgg.finetune.report import format_run
    from keras_vgg.finetune.run_folder import open_run_dir

    if args.resume:
        if not args.run_dir or args.config or args.overrides or any(
                getattr(args, flag) is not None for flag in FINETUNE_FLAGS):
            raise ValueError("Expected --resume with --run-dir only: a resumed run keeps "
                             "the recipe saved in its run directory.")
        if args.dry_run:  # the recipe the run keeps, read from its recipe.json
            return print_recipe(open_run_dir(args.run_dir, None, resume=True)[0])
        recipe, settings = None, dict(run_dir=args.run_dir, resume=True)
    else:
        recipe, note = resolved_recipe(args)
        if note:  # what weights=none changed
            print(note, flush=True)
        settings = dict(run_dir=args.run_dir, overwrite=args.overwrite)
    try:
        result = finetune(recipe, **settings)
    except KeyboardInterrupt as stop:  # RunInterrupted: what was saved, how to resume
        print(f"keras-vgg finetune: {stop or 'interrupted before the run started'}",
              file=sys.stderr)
        return 130
    print(format_run(result))
    return 0


def resolved_recipe(args):
    """``(the recipe, a note on what weights=none changed or "")`` the command line resolves
    to: RECIPE or --config, then the flags, then key=value overrides."""
    from keras_vgg.finetune.config import from_scratch_note, load_recipe

    config, overrides = split_recipe(args)
    flags = [f"{key}={json.dumps(value) if isinstance(value, bool) else value}"
             for key, value in ((k, getattr(args, f)) for f, k in FINETUNE_FLAGS.items())
             if value is not None]
    return (load_recipe(config, flags + overrides),
            from_scratch_note(config, flags + overrides))


def dry_run_command(args) -> int:
    """``finetune --dry-run`` (without --resume): the recipe the command line resolves to,
    with the from-scratch note on stderr; loads no TensorFlow."""
    recipe, note = resolved_recipe(args)
    if note:
        print(note, file=sys.stderr)
    return print_recipe(recipe)


def print_recipe(recipe) -> int:
    """``--dry-run``: every key of the resolved recipe as JSON on stdout (a file that
    ``--config`` reads back), a note on stderr."""
    print(json.dumps(recipe.to_dict(), indent=2))
    print("keras-vgg finetune: dry run, nothing trained or written. Saved as a .json file, "
          "this runs with --config FILE.", file=sys.stderr)
    return 0


def add_export_parsers(commands):
    export = commands.add_parser(
        "export", help="export a fine-tuned model to SavedModel/TFLite, checked and reported",
        description="Export a .keras model (or a run folder's best.keras) into the folder "
        "given by -o/--output, check every file against the Keras model and write export_report.json. "
        "A run folder brings its own data: the training split calibrates int8 and the "
        "test split (else the validation split) is the check sample. Without real images "
        "to check on, only SavedModel, float32 and float16 are checked (max |diff| on "
        "random images) and the report says 'not checked on real images'; on real images, "
        "dynamic and int8 files must also agree with Keras's top-1 on --min-agreement of "
        "them.")
    export.add_argument("model", help="a run folder or a .keras file")
    export.add_argument("-o", "--output", required=True, help="the export folder to create")
    export.add_argument("--format", nargs="+", choices=FORMATS, default=list(DEFAULT_FORMATS),
                        help="what to write (default: saved_model tflite; onnx and "
                        "openvino need the serve extra)")
    export.add_argument("--quantize", nargs="+", choices=QUANTIZE, default=["none"],
                        help="TFLite modes (none = float32); ONNX and OpenVINO files take "
                        "none and int8 (calibrated on --representative-data)")
    export.add_argument("--representative-data", metavar="DIR|tfds:NAME",
                        help="training images to calibrate int8 (default: the run's data)")
    export.add_argument("--sample-data", metavar="DIR|tfds:NAME",
                        help="labelled images to check on, all of them (up to "
                        f"{SAMPLE_IMAGES}; default: the run's test split, else its "
                        "validation split, else the representative data's)")
    export.add_argument("--preprocessing", choices=MODES,
                        help="the weights' mode (default: what the run recorded)")
    export.add_argument("--image-size", type=int, help="needed only for open-size models")
    export.add_argument("--int8-io", choices=INT8_IO, default="uint8",
                        help="input/output type of the int8 model (default: uint8)")
    export.add_argument("--min-agreement", type=float, metavar="FRACTION",
                        help="refuse a file whose top-1 agreement with Keras on the real "
                        "sample images is lower, and write nothing (default: "
                        f"{MIN_AGREEMENT} for dynamic and int8 files, judged only on real "
                        "images; a value given gates every file; 0 turns the gate off)")
    export.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="what the SavedModel computes in (default: float32, which runs "
                        "well everywhere; auto: this machine's fastest, bfloat16 on CPUs "
                        "with AMX); TFLite and ONNX files are float32 or quantized; "
                        "OpenVINO files record it as their inference hint (bf16)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing -o/--output folder")
    predict = commands.add_parser(
        "predict", help="top-k classes of images from a .keras, SavedModel or .tflite model",
        description="Print the top-k classes of each image with a .keras model (or a run "
        "folder's best.keras), an exported SavedModel folder, a .tflite or .onnx file or an "
        "OpenVINO .xml; the model's "
        "own preprocessing and class names are used.")
    predict.add_argument("model", help="a run folder, .keras file, SavedModel folder, .tflite, "
                         ".onnx or OpenVINO .xml")
    predict.add_argument("images", nargs="+", help="JPEG/PNG/BMP/GIF files, or folders of them "
                         "(files that cannot be read are skipped and listed on stderr)")
    predict.add_argument("--top-k", type=positive_int, default=5,
                         help="classes to print (default: 5)")
    predict.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="what a Keras model computes in (default: auto, this machine's "
                         "fastest: bfloat16 on CPUs with AMX, else float32)")


def export_command(args) -> int:
    from keras_vgg.finetune.run_export import export_run

    export_run(args.model, args.output, args.format, args.quantize,
               preprocessing=args.preprocessing, image_size=args.image_size,
               representative_data=args.representative_data, sample_data=args.sample_data,
               int8_io=args.int8_io, min_agreement=args.min_agreement,
               precision=args.precision, overwrite=args.overwrite)
    print(f"Exported to {Path(args.output)} (report: {Path(args.output) / 'export_report.json'})")
    return 0


def predict_command(args) -> int:
    import warnings

    from keras_vgg.inference.predict import predict
    from keras_vgg.pixels import skipped_note

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictions = predict(args.model, args.images, top_k=args.top_k,
                              precision=args.precision)
    for warning in caught:
        print(f"keras-vgg predict: {warning.message}", file=sys.stderr)
    for p in predictions:
        print(f"{p.image}: " + ", ".join(f"{name} {score:.1%}"
                                        for name, score in zip(p.classes, p.scores)))
    if predictions.skipped:
        print(f"keras-vgg predict: {skipped_note(predictions.skipped)}", file=sys.stderr)
    return 0


def add_convert_parser(commands):
    convert = commands.add_parser(
        "convert", help="convert torchvision/timm (.pth .safetensors .npz) or MatConvNet (.mat) "
        "weights into a Keras .weights.h5",
        description="Convert a published or your own torchvision/timm state dict or MatConvNet "
        ".mat into a Keras weights file for one variant. The file keeps the variant, the "
        "preprocessing and the class names, so build_vgg(variant, weights=OUT) knows them.")
    convert.add_argument("source", help="a .pth/.pt, .safetensors, .npz or .mat file")
    convert.add_argument("--model", required=True, help="the variant the file is for")
    convert.add_argument("-o", "--output", required=True, help="the .weights.h5 to write")
    convert.add_argument("--no-top", action="store_true", help="convert the conv layers only")
    convert.add_argument("--input-shape", type=parse_shape, default=None,
                         help="H,W,C (default 224,224,3 with the top)")
    convert.add_argument("--classes", type=int, default=1000, help="outputs of the last layer")
    convert.add_argument("--adaptive-pool", type=int, default=None,
                         help="torchvision's classifier at another input size: 7")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace an existing -o/--output file")


def convert_command(args) -> int:
    from keras_vgg.convert import convert, read_metadata

    output = convert(args.source, args.model, args.output, include_top=not args.no_top,
                     input_shape=args.input_shape, classes=args.classes,
                     adaptive_pool=args.adaptive_pool, overwrite=args.overwrite)
    info = read_metadata(output)
    classes = info["class_names"]
    print(f"Wrote {output} for {info['variant']} from {info['source']}; preprocessing: "
          f"{info['preprocessing'].describe()}"
          + (f"; {len(classes)} class names" if classes else ""))
    return 0


def recipes_command(args) -> int:
    from keras_vgg.finetune.config import recipes_table

    print(recipes_table())
    return 0


def weights_command(args) -> int:
    from keras_vgg.weights import weights_table

    print(weights_table())
    return 0


COMMANDS = {"list": printing(variant_table), "weights": weights_command,
            "summary": summary_command, "recipes": recipes_command,
            "finetune": finetune_command, "export": export_command,
            "predict": predict_command, "convert": convert_command}


def add_feature_parsers(commands):
    """``explain`` (Grad-CAM pictures), ``embed`` (a folder's embeddings) and ``nearest``."""
    explain = commands.add_parser(
        "explain", help="Grad-CAM: write each image beside its heatmap, with the top classes",
        description="Grad-CAM pictures of images for a classifier (a run folder or a .keras "
        "file): each image, its heatmap overlaid, and the top classes, as PNGs in -o DIR, "
        "keeping a folder's sub-folders (photos/cat/a.jpg -> DIR/cat/a.png). Files that "
        "cannot be read are skipped and listed on stderr.")
    explain.add_argument("model", help="a run folder or a .keras classifier")
    explain.add_argument("images", nargs="+", help="JPEG/PNG/BMP/GIF files, or folders of them")
    explain.add_argument("-o", "--output", required=True, help="the folder of PNGs to create")
    explain.add_argument("--top-k", type=positive_int, default=3,
                         help="classes written under each picture (default: 3)")
    explain.add_argument("--layer", help="the conv-side layer (default: the last conv)")
    explain.add_argument("--preprocessing", choices=MODES,
                         help="the weights' mode (default: what the model records)")
    explain.add_argument("--overwrite", action="store_true",
                         help="replace an existing -o/--output folder")
    embed = commands.add_parser(
        "embed", help="embeddings of a folder of images (pooled VGG features, L2-normalised) "
        "into an .npz", description="Embed images for retrieval: the pooled, L2-normalised "
        "features of each file, with the file names, in one .npz (query it with nearest). "
        "Files that cannot be read are skipped and listed on stderr.")
    embed.add_argument("model", help="a run folder, a .keras file, or a variant name (vgg16: "
                       "ImageNet weights, downloaded once)")
    embed.add_argument("images", nargs="+", help="folders of images, or image files")
    embed.add_argument("-o", "--output", required=True, help="the .npz file to write")
    embed.add_argument("--layer", help="the layer pooled (default: the last block output)")
    embed.add_argument("--batch-size", type=positive_int, default=32,
                       help="images per step (default: 32)")
    embed.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="what the VGG computes in (default: auto, this machine's fastest)")
    embed.add_argument("--preprocessing", choices=MODES,
                       help="the weights' mode (default: what the model records)")
    embed.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    nearest = commands.add_parser(
        "nearest", help="the files most like each query image (cosine) in an embed .npz",
        description="For each query image, print the -k files of an embeddings .npz (written "
        "by keras-vgg embed) most like it, by cosine similarity; a query not in the file is "
        "embedded with the model the file records (or --model).")
    nearest.add_argument("embeddings", help="an .npz written by keras-vgg embed")
    nearest.add_argument("images", nargs="+", help="query images (in the file or not)")
    nearest.add_argument("-k", type=positive_int, default=5, help="neighbours (default: 5)")
    nearest.add_argument("--model", help="embeds queries not in the file (default: the "
                         "model the file records)")
    nearest.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="what the VGG computes in (default: auto)")


def explain_command(args) -> int:
    from keras_vgg.inference.explain import explain
    from keras_vgg.pixels import skipped_note

    explained = explain(args.model, args.images, args.output, top_k=args.top_k,
                        layer=args.layer, preprocessing=args.preprocessing,
                        overwrite=args.overwrite)
    for e in explained:
        print(f"{e.image} -> {e.output}: " + ", ".join(
            f"{name} {score:.1%}" for name, score in zip(e.classes, e.scores)))
    if explained.skipped:
        print(f"keras-vgg explain: {skipped_note(explained.skipped)}", file=sys.stderr)
    return 0


def embed_command(args) -> int:
    from keras_vgg.inference.embed import embed_files
    from keras_vgg.pixels import skipped_note

    saved = embed_files(args.model, args.images, args.output, layer=args.layer,
                        batch_size=args.batch_size, precision=args.precision,
                        preprocessing=args.preprocessing, overwrite=args.overwrite)
    print(f"Wrote {args.output}: {len(saved.names)} images, {saved.vectors.shape[1]} "
          f"features each ({saved.layer}, average-pooled, L2-normalised)")
    if saved.skipped:
        print(f"keras-vgg embed: {skipped_note(saved.skipped)}", file=sys.stderr)
    return 0


def nearest_command(args) -> int:
    from keras_vgg.inference.embed import nearest_files
    from keras_vgg.pixels import skipped_note

    queries = nearest_files(args.embeddings, args.images, k=args.k, model=args.model,
                            precision=args.precision)
    for query in queries:
        print(f"{query.image}: " + ", ".join(
            f"{name} {score:.3f}" for name, score in zip(query.names, query.scores)))
    if queries.skipped:
        print(f"keras-vgg nearest: {skipped_note(queries.skipped)}", file=sys.stderr)
    return 0

COMMANDS.update(explain=explain_command, embed=embed_command, nearest=nearest_command)


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1] such as 0.3; "
                                         f"received {text!r}")
    return value


def add_compress_parser(commands):
    compress = commands.add_parser(
        "compress", help="prune a fine-tuned run's model, fine-tune it again, export and "
        "compare (size, FLOPs, accuracy, TFLite size and latency)",
        description="Structured filter pruning of a run's best.keras: every conv keeps its "
        "strongest filters (L1 norm; BN scale in the BN forms), the same share of each, as "
        "many as the target allows; the narrower model is fine-tuned on the run's data, "
        "exported to TFLite beside the unpruned one, and both are compared in "
        "compress_report.json.")
    compress.add_argument("run", help="a finished fine-tune run folder")
    target = compress.add_mutually_exclusive_group(required=True)
    target.add_argument("--flops", type=fraction, help="the fraction of FLOPs to keep (0.3: "
                        "3.3x fewer)")
    target.add_argument("--params", type=fraction, help="the fraction of parameters to keep")
    target.add_argument("--latency", type=fraction, help="the fraction of the convs' time to "
                        "keep in the TFLite file (int8 when exported; each conv timed alone "
                        "at a few widths first)")
    compress.add_argument("-o", "--output", help="the folder to create (default RUN/compressed)")
    compress.add_argument("--steps", type=positive_int, default=1,
                          help="pruning steps, each followed by fine-tuning (default 1: "
                          "one-shot)")
    compress.add_argument("--epochs", type=int, help="fine-tune epochs per step (default: the "
                          "run's compress.epochs, 5 unless its recipe says)")
    compress.add_argument("--lr", type=float, help="their learning rate (default: the run's "
                          "compress.lr, 1e-4 unless its recipe says)")
    compress.add_argument("--criterion", choices=CRITERIA, default="auto",
                          help="filter ranking (auto: BN scale where there is BN, else L1)")
    compress.add_argument("--quantize", nargs="+", choices=QUANTIZE, default=["none", "int8"],
                          help="TFLite modes to export and compare (default: none int8)")
    compress.add_argument("--max-drop", type=float, metavar="POINTS",
                          help="warn when the pruned model loses more accuracy than this on "
                          "the held-out split, in points (default: the run's "
                          "compress.max_drop, 1.0 unless its recipe says)")
    compress.add_argument("--no-distill", dest="distill", action="store_false", default=None,
                          help="fine-tune the pruned model on the labels alone (default: it "
                          "also learns from the unpruned model, its softened class scores and "
                          "block outputs, as the run's compress.distill says, true unless "
                          "its recipe says)")
    compress.add_argument("--plan", choices=PLANS, help="how the budget is spent over the "
                          "convs: uniform (the same share of each) or sensitivity (each conv "
                          "pruned alone on the validation split, filters taken where the "
                          "loss rises least per FLOP, parameter or ms saved; default: the "
                          "run's compress.plan, uniform)")
    compress.add_argument("--temperature", type=float, help="the softening of the class "
                          "scores it learns from (default: the run's compress.temperature, "
                          "3.0 unless its recipe says)")
    compress.add_argument("--latency-table", metavar="FILE", help="with --latency: an earlier "
                          "compress's latency.json of this model to plan by, instead of "
                          "timing the convs again (the same table, the same plan)")
    resume = compress.add_mutually_exclusive_group()
    resume.add_argument("--overwrite", action="store_true", help="replace the output folder")
    resume.add_argument("--resume", action="store_true", help="continue an interrupted one")


def compress_command(args) -> int:
    from keras_vgg.finetune.compress import compress

    compress(args.run, args.output, flops=args.flops, params=args.params, steps=args.steps,
             epochs=args.epochs, lr=args.lr, criterion=args.criterion,
             quantize=args.quantize, overwrite=args.overwrite, resume=args.resume,
             max_drop=args.max_drop, distill=args.distill, temperature=args.temperature,
             plan=args.plan, latency=args.latency, latency_table=args.latency_table)
    return 0


COMMANDS["compress"] = compress_command


def add_distill_parser(commands):
    distill = commands.add_parser(
        "distill", help="train a smaller variant from a fine-tuned run's model, export and "
        "compare with the run's model and with the same variant trained on labels alone",
        description="A smaller VGG (--student) from random weights, trained on the run's "
        "data from the run's model (its softened class scores) and the labels, and, from the "
        "same initial weights, on the labels alone; the three models are exported to TFLite "
        "and compared in distill_report.json.")
    distill.add_argument("run", help="a finished fine-tune run folder")
    distill.add_argument("--student", required=True, metavar="VARIANT",
                         help="a variant from `keras-vgg list` with no more parameters or "
                         "FLOPs than the run's model (vgg_s at 32x32; vgg_f needs 39x39)")
    distill.add_argument("-o", "--output", help="the folder to create (default RUN/distilled)")
    distill.add_argument("--epochs", type=positive_int, help="training epochs of each student "
                         "(default: the run's phases' epochs added up)")
    distill.add_argument("--lr", type=float, help="their learning rate (default: the run's "
                         "first phase's)")
    distill.add_argument("--temperature", type=float, help="the softening of the class "
                         "scores it learns from (default: the run's compress.temperature, "
                         "3.0 unless its recipe says)")
    distill.add_argument("--quantize", nargs="+", choices=QUANTIZE, default=["none", "int8"],
                         help="TFLite modes to export and compare (default: none int8)")
    resume = distill.add_mutually_exclusive_group()
    resume.add_argument("--overwrite", action="store_true", help="replace the output folder")
    resume.add_argument("--resume", action="store_true", help="continue an interrupted one")


def distill_command(args) -> int:
    from keras_vgg.finetune.distill import distill

    distill(args.run, args.student, args.output, epochs=args.epochs, lr=args.lr,
            temperature=args.temperature, quantize=args.quantize, overwrite=args.overwrite,
            resume=args.resume)
    return 0


COMMANDS["distill"] = distill_command


def add_report_parser(commands):
    report = commands.add_parser(
        "report", help="(re)write a run's report.html: figures, curves, confusion matrix, "
        "misclassified test images with Grad-CAM, export table",
        description="Write RUN/report.html, one self-contained page (no network needed): the "
        "test figures with their 95% interval, the training curves, the confusion matrix, "
        "the misclassified test images (at most 24) each beside its Grad-CAM and top "
        "classes, and the export table when there is an export report. A run writes it at "
        "its end; this writes it again for an existing run.")
    report.add_argument("run", help="a finished fine-tune run folder")
    report.add_argument("--export", metavar="DIR", help="an export folder (keras-vgg export "
                        "RUN -o DIR) or its export_report.json to show (default: RUN/export/, "
                        "when the run exported)")


def report_command(args) -> int:
    from keras_vgg.finetune.html_report import write_html_report

    print(f"Wrote {write_html_report(args.run, export_report=args.export)}")
    return 0


COMMANDS["report"] = report_command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
