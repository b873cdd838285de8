"""keras-vgg: build, fine-tune, export and run VGG models (a thin face over keras_vgg).

Examples:
    $ keras-vgg list
    $ keras-vgg summary vgg_m --input-shape 64,64,3 --no-top
    $ keras-vgg finetune                      # the built-in shapes, offline, a few minutes
    $ keras-vgg finetune --data photos/ --model vgg16 --weights imagenet
    $ keras-vgg finetune --config tf_flowers phase2_epochs=10 batch_size=16
    $ keras-vgg recipes                       # the shipped recipes and what each should reach
    $ keras-vgg finetune --dry-run tf_flowers batch_size=16   # the resolved recipe, no run
    $ keras-vgg finetune --strategy mirrored --mixed-precision   # all local GPUs
    $ keras-vgg export runs/builtin --format saved_model tflite \\
          --quantize none float16 dynamic int8 -o exported/
    $ keras-vgg predict exported/model_int8.tflite photo.jpg
    $ keras-vgg weights                       # which published weights exist per variant
    $ keras-vgg convert vgg11_bn-6002323d.pth --model vgg11_bn -o vgg11_bn.weights.h5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from keras_vgg._quiet import VERBOSE_FLAG
from keras_vgg.models import build_vgg
from keras_vgg.configs import describe, get_config, list_models, min_input_size


def format_table() -> str:
    """Every variant: paper name, parameters with and without top, GFLOPs, fc6 input."""
    header = ("model", "paper", "params", "params (no top)", "GFLOPs@224", "fc6 input", "min size")
    rows = [header]
    for name in list_models():
        top = describe(name)
        headless = describe(name, include_top=False)
        rows.append((
            name,
            get_config(name).paper_name,
            f"{top.params:,}",
            f"{headless.params:,}",
            f"{top.gflops:.2f}",
            "x".join(str(d) for d in top.fc6_input),
            str(min_input_size(name)),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("GFLOPs: multiply-adds of convs and FC layers x 2, at 224x224x3, batch 1.")
    return "\n".join(lines)


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"expected H,W,C such as 224,224,3; received {text!r}")
    return shape


def main(argv=None) -> int:
    examples = __doc__.split("Examples:\n", 1)[1].replace("$ ", "").rstrip('"\n')
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)

    if args.command in COMMANDS:
        return COMMANDS[args.command](args)
    if args.command == "list":
        print(format_table())
        return 0
    if args.command == "weights":
        print(format_weights_table())
        return 0
    try:
        model = build_vgg(
            args.name,
            include_top=not args.no_top,
            input_shape=args.input_shape,
            classes=args.classes,
            batch_norm=args.batch_norm,
        )
    except ValueError as error:
        print(f"keras-vgg summary: {error}", file=sys.stderr)
        return 2
    model.summary()
    return 0


FINETUNE_FLAGS = ("data", "model", "weights", "image_size", "batch_size", "head", "strategy",
                  "mixed_precision", "jit_compile")


def recipe_defaults() -> str:
    """What ``finetune --help`` says after the flags: which recipe runs, and every key."""
    import textwrap

    from keras_vgg._extras import MissingExtra
    from keras_vgg.finetune.config import FROM_SCRATCH, Recipe, _read, _resolve

    def pairs(values, skip=("name",)):
        return " ".join(f"{k}={json.dumps(v)}" for k, v in values.items() if k not in skip)

    def fill(text):
        return textwrap.fill(text, 92, initial_indent="  ", subsequent_indent="    ")

    scratch = " ".join(f"{k}={v}" for k, v in FROM_SCRATCH.items())
    try:
        builtin, folder = _read(_resolve("builtin")), _read(_resolve("folder"))
    except MissingExtra as error:  # the base install: no PyYAML to read the shipped recipes
        return f"recipes: {error}"
    return "\n".join([
        "which recipe runs: RECIPE or --config RECIPE (a shipped name from `keras-vgg recipes` "
        "or a YAML/JSON file); without it 'builtin' (no --data, or --data builtin) or 'folder' "
        "(--data DIR). They set:",
        fill("builtin: " + pairs(builtin)),
        fill("folder: " + pairs(folder)),
        fill(f"A recipe made for pretrained weights run with --weights none trains every "
             f"block ({scratch}) unless you set those keys."),
        "every recipe key (key=value), with the default a recipe file leaves it at:",
        fill(pairs(Recipe().to_dict(), skip=())),
    ])


def add_finetune_parser(commands):
    finetune = commands.add_parser(
        "finetune", help="fine-tune a variant on a dataset (no arguments: the built-in shapes)",
        description="Fine-tune a VGG variant. Settings come from a recipe (RECIPE or "
        "--config), then the flags, then key=value overrides of any recipe key.",
        usage="%(prog)s [-h] [options] [RECIPE] [key=value ...]",
        epilog=recipe_defaults(), formatter_class=argparse.RawDescriptionHelpFormatter)
    finetune.add_argument("overrides", nargs="*", metavar="[RECIPE] key=value",
                          help="a recipe first (as --config), then any recipe key, e.g. "
                          "phase2_epochs=10 augment=flip,zoom")
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
                          help="mixed_float16 on a GPU, mixed_bfloat16 on CPU/TPU (the "
                          "classifier stays float32)")
    finetune.add_argument("--jit-compile", action="store_const", const="true",
                          help="XLA-compile the training step")
    finetune.add_argument("--run-dir", help="where outputs go (default: a new runs/NAME[-N])")
    finetune.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    finetune.add_argument("--resume", action="store_true",
                          help="continue the interrupted run in --run-dir with its own recipe")
    finetune.add_argument("--dry-run", action="store_true",
                          help="print the resolved recipe (every key, as JSON) and stop: "
                          "nothing is trained or written")


def new_run_dir(name: str, root="runs") -> Path:
    """runs/NAME, or runs/NAME-2, -3...: a default run never lands on an earlier one."""
    candidate, n = Path(root) / name, 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{name}-{n}"
    return candidate


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
                         f"key=value overrides. Received: {given!r}")
    config = given or args.config or ("builtin" if args.data in (None, "builtin") else "folder")
    return config, overrides


def finetune_command(args) -> int:
    from keras_vgg._extras import MissingExtra

    try:
        from keras_vgg.finetune import finetune, load_recipe
        from keras_vgg.finetune.train import open_run_dir

        if args.resume:
            if not args.run_dir or args.config or args.overrides or any(
                    getattr(args, flag) is not None for flag in FINETUNE_FLAGS):
                raise ValueError("Expected --resume with --run-dir only: a resumed run keeps "
                                 "the recipe saved in its run directory.")
            if args.dry_run:  # the recipe the run keeps, read from its recipe.json
                return print_recipe(open_run_dir(args.run_dir, None, resume=True)[0])
            result = finetune(None, run_dir=args.run_dir, resume=True)
        else:
            config, overrides = split_recipe(args)
            flags = [f"{flag}={getattr(args, flag)}" for flag in FINETUNE_FLAGS
                     if getattr(args, flag) is not None]
            recipe = load_recipe(config, flags + overrides)
            if args.dry_run:
                return print_recipe(recipe)
            run_dir = args.run_dir or new_run_dir(recipe.name)
            result = finetune(recipe, run_dir=run_dir, overwrite=args.overwrite)
    except (ValueError, MissingExtra) as error:
        print(f"keras-vgg finetune: {error}", file=sys.stderr)
        return 2
    print(format_run(result))
    return 0


def print_recipe(recipe) -> int:
    """``--dry-run``: every key of the resolved recipe as JSON on stdout (a file that
    ``--config`` reads back), a note on stderr."""
    print(json.dumps(recipe.to_dict(), indent=2))
    print("keras-vgg finetune: dry run, nothing trained or written. Saved as a .json file, "
          "this runs with --config FILE.", file=sys.stderr)
    return 0


def format_recipes() -> str:
    """The shipped recipes: name, data, model and the expectation their files state."""
    from keras_vgg.finetune.config import load_recipe, recipe_expectation, recipes_folder, \
        shipped_recipes

    header = ("recipe", "data", "model", "expect")
    rows = [header] + [(name, recipe.data, recipe.model, recipe_expectation(name))
                       for name, recipe in ((n, load_recipe(n)) for n in shipped_recipes())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"Files (commented YAML): {recipes_folder()}",
              "Run one: keras-vgg finetune NAME [key=value ...]; every key it sets: "
              "keras-vgg finetune --dry-run NAME"]
    return "\n".join(lines)


def recipes_command(args) -> int:
    from keras_vgg._extras import MissingExtra

    try:
        print(format_recipes())
    except MissingExtra as error:
        print(f"keras-vgg recipes: {error}", file=sys.stderr)
        return 2
    return 0


def add_export_parsers(commands):
    from keras_vgg.export.formats import FORMATS, INT8_IO, QUANTIZE
    from keras_vgg.preprocessing import MODES

    export = commands.add_parser(
        "export", help="export a fine-tuned model to SavedModel/TFLite, checked and reported",
        description="Export a .keras model (or a run folder's best.keras) into the folder "
        "given by -o/--output, check every file against the Keras model and write export_report.json. "
        "A run folder brings its own data: the training split calibrates int8 and the "
        "validation split is the check sample. Without real images to check on, only "
        "SavedModel, float32 and float16 are checked (max |diff| on random images) and "
        "the report says 'not checked on real images'.")
    export.add_argument("model", help="a run folder or a .keras file")
    export.add_argument("-o", "--output", required=True, help="the export folder to create")
    export.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS),
                        help="what to write (default: both)")
    export.add_argument("--quantize", nargs="+", choices=QUANTIZE, default=["none"],
                        help="TFLite modes (none = float32)")
    export.add_argument("--representative-data", metavar="DIR|tfds:NAME",
                        help="training images to calibrate int8 (default: the run's data)")
    export.add_argument("--sample-data", metavar="DIR|tfds:NAME",
                        help="labelled images to check on, all of them (up to "
                        f"{SAMPLE_IMAGES}; default: the run's validation split, else the "
                        "representative data's)")
    export.add_argument("--preprocessing", choices=MODES,
                        help="the weights' mode (default: what the run recorded)")
    export.add_argument("--image-size", type=int, help="needed only for open-size models")
    export.add_argument("--int8-io", choices=INT8_IO, default="uint8",
                        help="input/output type of the int8 model (default: uint8)")
    export.add_argument("--min-agreement", type=float,
                        help="refuse an export whose top-1 agreement with Keras on the "
                        "real images is lower")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing -o/--output folder")
    predict = commands.add_parser(
        "predict", help="top-k classes of images from a .keras, SavedModel or .tflite model")
    predict.add_argument("model", help="a run folder, .keras file, SavedModel folder or .tflite")
    predict.add_argument("images", nargs="+", help="JPEG/PNG/BMP/GIF files, or folders of them")
    predict.add_argument("--top-k", type=int, default=5, help="classes to print (default: 5)")


SAMPLE_IMAGES = 1000  # the most --sample-data images an export is checked on


def _export_data(args, model_path, image_size):
    """(representative, sample, labels, class names of the sample) for ``keras-vgg export``:
    each flag, else the run's own data (training split to calibrate, validation split to
    check on), else the representative data's validation split to check on."""
    import numpy as np

    from keras_vgg.finetune.config import Recipe
    from keras_vgg.finetune.data import export_arrays, load_data

    def splits_of(source):
        data = source if Path(source).is_dir() or source.startswith("tfds:") else f"tfds:{source}"
        # Only the data keys matter here; the recipe's model is not the exported one.
        return load_data(Recipe(name="export", data=data, image_size=image_size))

    representative = sample = labels = names = None
    if args.representative_data is not None:
        splits = splits_of(args.representative_data)
        representative, sample, labels = export_arrays(splits)
        names = splits.class_names
    recipe_file = Path(model_path) / "recipe.json"
    if recipe_file.is_file() and (representative is None or args.sample_data is None):
        recipe = Recipe.from_dict(json.loads(recipe_file.read_text()), source=str(recipe_file))
        splits = load_data(recipe)
        run_representative, sample, labels = export_arrays(splits, recipe.seed)
        representative = run_representative if representative is None else representative
        names = splits.class_names
    if args.sample_data is not None:  # every image of it: both splits of the folder
        splits = splits_of(args.sample_data)
        pairs = [(x.numpy(), int(y)) for x, y in splits.train.concatenate(splits.val)
                 .shuffle(10_000, seed=0).take(SAMPLE_IMAGES)]
        sample, labels = np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])
        names = splits.class_names
    return representative, sample, labels, names


def export_command(args) -> int:
    from keras_vgg.export import ExportError, export, read_model_info

    try:
        model, info = read_model_info(args.model)
        preprocessing = args.preprocessing or info.get("preprocessing")
        if preprocessing is None:
            raise ValueError(f"Expected --preprocessing: {args.model} does not record the "
                             "weights' mode (built with weights=None, saved outside a run).")
        height, width = model.input_shape[1:3]
        if height != width:
            raise ValueError(f"Expected a square model input; received {model.input_shape}. "
                             "Export non-square models from Python with image arrays.")
        size = height or args.image_size
        if size is None:
            raise ValueError("Expected --image-size: the model's input size is open.")
        if Path(args.output).exists() and not args.overwrite:
            raise ValueError(f"{args.output} exists; pass --overwrite to replace it.")
        representative, sample, labels, data_names = _export_data(args, args.model, size)
        if args.min_agreement is not None and sample is None:
            raise ValueError("Expected --sample-data DIR|tfds:NAME (real images) with "
                             "--min-agreement: top-1 agreement on random images means "
                             f"nothing. Received: --min-agreement {args.min_agreement} and no "
                             "images to check on.")
        if "int8" in args.quantize and "tflite" in args.format and representative is None:
            raise ValueError("Expected --representative-data DIR|tfds:NAME (training images "
                             "to calibrate on) with --quantize int8. Received: "
                             f"{args.model} brings no data (no recipe.json).")
        names = info.get("class_names") or data_names
        if labels is not None and data_names != names:
            raise ValueError(f"The data's classes {data_names} are not the model's {names}; "
                             "expected --sample-data with the classes the model was trained on.")
        export(model, args.output, args.format, args.quantize, preprocessing=preprocessing,
               class_names=names, image_size=args.image_size, representative_data=representative,
               sample=sample, sample_labels=labels, int8_io=args.int8_io,
               min_agreement=args.min_agreement, overwrite=args.overwrite)
    except (ValueError, ExportError) as error:
        print(f"keras-vgg export: {error}", file=sys.stderr)
        return 2
    print(f"Exported to {args.output} (report: {Path(args.output) / 'export_report.json'})")
    return 0


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def image_paths(arguments) -> list[str]:
    """The files named, with a folder standing for the images in it (sorted, recursively)."""
    paths = []
    for argument in arguments:
        folder = Path(argument)
        if not folder.is_dir():
            paths.append(argument)
            continue
        found = sorted(str(p) for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ValueError(f"Expected image files ({', '.join(IMAGE_SUFFIXES)}) in the folder "
                             f"{argument}. Received: a folder without any.")
        paths += found
    return paths


def predict_command(args) -> int:
    import numpy as np
    import tensorflow as tf

    from keras_vgg.export import load_predictor

    if args.top_k < 1:
        print(f"keras-vgg predict: expected --top-k >= 1. Received: {args.top_k}", file=sys.stderr)
        return 2
    try:
        run, names = load_predictor(args.model)
        paths = image_paths(args.images)
        images = []
        for path in paths:
            try:
                image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                           expand_animations=False)
            except (tf.errors.OpError, ValueError) as error:
                reason = str(error).split("}}")[-1].split("[Op:")[0].strip()
                raise ValueError(f"Expected an image file. Could not read {path}: "
                                 f"{reason}") from error
            images.append(run(image.numpy()[None])[0])
    except ValueError as error:
        print(f"keras-vgg predict: {error}", file=sys.stderr)
        return 2
    if names and len(names) != len(images[0]):
        print(f"keras-vgg predict: the labels ({len(names)}) do not match the model's "
              f"{len(images[0])} outputs; printing class indices.", file=sys.stderr)
        names = None
    for path, probabilities in zip(paths, images):
        top = np.argsort(-probabilities)[: args.top_k]
        label = (lambda i: names[i]) if names else str
        print(f"{path}: " + ", ".join(f"{label(i)} {probabilities[i]:.1%}" for i in top))
    return 0


def format_weights_table() -> str:
    """One line per published file: variant, publisher, file, preprocessing, accuracy."""
    from keras_vgg.weights import WEIGHTS

    header = ("model", "weights=", "file", "top", "preprocessing", "top-1", "top-5", "licence")
    rows = [header] + [
        (r.variant, r.source, r.file_name, "yes" if r.has_top else "no", r.preprocessing,
         "-" if r.top1 is None else f"{r.top1:.1f}%", "-" if r.top5 is None else f"{r.top5:.1f}%",
         r.licence)
        for r in WEIGHTS
    ]
    urls = ["URLs (offline: download elsewhere into ~/.keras/models/, or pass the file's path "
            "as weights):"] + [f"  {r.file_name}  {r.url}" for r in WEIGHTS]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("weights='imagenet' loads a variant's first line. top-1/top-5: as published "
                 "(ImageNet val, as the publisher reports it); '-': not published.")
    return "\n".join(lines + [""] + urls)


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

    try:
        if not args.output.endswith(".weights.h5"):
            raise ValueError(f"Expected -o/--output to end in .weights.h5. Received: "
                             f"-o {args.output}")
        if Path(args.output).exists() and not args.overwrite:
            raise ValueError(f"Expected -o/--output not to exist. Received: {args.output} "
                             "exists; pass --overwrite to replace it.")
        output = convert(args.source, args.model, args.output, include_top=not args.no_top,
                         input_shape=args.input_shape, classes=args.classes,
                         adaptive_pool=args.adaptive_pool,
                         overwrite=args.overwrite)
    except ValueError as error:
        print(f"keras-vgg convert: {error}", file=sys.stderr)
        return 2
    info = read_metadata(output)
    classes = info["class_names"]
    print(f"Wrote {output} for {info['variant']} from {info['source']}; preprocessing: "
          f"{info['preprocessing'].describe()}"
          + (f"; {len(classes)} class names" if classes else ""))
    return 0


COMMANDS = {"finetune": finetune_command, "export": export_command, "predict": predict_command,
            "convert": convert_command, "recipes": recipes_command}


def format_run(result) -> str:
    """The end of a run: what it scored and when, what the data lost, then where it all is."""
    final = result.metrics["final"]
    stopped = final.get("stopped_early") or []
    lines = [f"Validation accuracy {final['val_accuracy']:.1%} (best.keras, from epoch "
             f"{final['best_epoch']} of {final['epochs_run']}"
             + (f"; early stopping ended {' and '.join(stopped)}" if stopped else "")
             + f") in {result.metrics['seconds']:.0f} s"
             + (", head trained on cached features" if result.feature_cache else "")]
    report = json.loads((result.run_dir / "data_report.json").read_text())
    counts = [f"skipped {len(report['skipped'])} file(s)" if report["skipped"] else "",
              f"converted {len(report['converted'])} to RGB" if report["converted"] else "",
              f"dropped {len(report['dropped_classes'])} class folder(s)"
              if report["dropped_classes"] else ""]
    if any(counts):
        lines.append("Data: " + ", ".join(c for c in counts if c) + " (see data_report.json)")
    lines.append(f"Outputs in {result.run_dir}:")
    lines += [f"  {p.name}{'/' if p.is_dir() else ''}" for p in sorted(result.run_dir.iterdir())]
    if result.export_report:
        from keras_vgg.export import format_report

        lines += ["Exported to export/ (export_report.json):", format_report(result.export_report)]
    return "\n".join(lines)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
