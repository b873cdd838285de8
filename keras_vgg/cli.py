"""The ``keras-vgg`` command: a thin face over the library.

Example:
    $ keras-vgg list
    $ keras-vgg summary vgg_m --input-shape 64,64,3 --no-top
    $ keras-vgg finetune                      # the built-in shapes, offline, a few minutes
    $ keras-vgg finetune --data photos/ --model vgg16 --weights imagenet
    $ keras-vgg finetune --config tf_flowers phase2_epochs=10 batch_size=16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from keras_vgg.builder import build_vgg
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
    parser = argparse.ArgumentParser(prog="keras-vgg", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every variant with parameters, GFLOPs and fc6 input")
    summary = commands.add_parser("summary", help="build one variant and print its Keras summary")
    summary.add_argument("name", help="a variant name from `keras-vgg list` (or D, A-LRN, ...)")
    summary.add_argument("--input-shape", type=parse_shape, default=None, help="H,W,C")
    summary.add_argument("--no-top", action="store_true", help="without the FC layers")
    summary.add_argument("--batch-norm", action="store_true", help="the batch-norm form")
    summary.add_argument("--classes", type=int, default=1000)
    add_finetune_parser(commands)
    args = parser.parse_args(argv)

    if args.command == "finetune":
        return finetune_command(args)
    if args.command == "list":
        print(format_table())
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


FINETUNE_FLAGS = ("data", "model", "weights", "image_size", "batch_size", "head")


def add_finetune_parser(commands):
    finetune = commands.add_parser(
        "finetune", help="fine-tune a variant on a dataset (no arguments: the built-in shapes)",
        description="Fine-tune a VGG variant. Settings come from a recipe (--config), then "
        "the flags, then key=value overrides of any recipe key.")
    finetune.add_argument("overrides", nargs="*", metavar="key=value",
                          help="any recipe key, e.g. phase2_epochs=10 augment=flip,zoom")
    finetune.add_argument("--config", help="a recipe file (JSON/YAML) or a shipped recipe name")
    finetune.add_argument("--data", help="'builtin', a folder of class sub-folders, or tfds:NAME")
    finetune.add_argument("--model", help="a variant name from `keras-vgg list`")
    finetune.add_argument("--weights", help="'imagenet' or a weights file")
    finetune.add_argument("--image-size", type=int)
    finetune.add_argument("--batch-size", type=int)
    finetune.add_argument("--head", help="avg | max | flatten | fc")
    finetune.add_argument("--run-dir", help="where outputs go (default: a new runs/NAME[-N])")
    finetune.add_argument("--overwrite", action="store_true", help="replace an existing run dir")
    finetune.add_argument("--resume", action="store_true",
                          help="continue the interrupted run in --run-dir with its own recipe")


def new_run_dir(name: str, root="runs") -> Path:
    """runs/NAME, or runs/NAME-2, -3...: a default run never lands on an earlier one."""
    candidate, n = Path(root) / name, 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{name}-{n}"
    return candidate


def finetune_command(args) -> int:
    from keras_vgg.recipes import finetune, load_recipe

    try:
        if args.resume:
            if not args.run_dir or args.config or args.overrides or any(
                    getattr(args, flag) is not None for flag in FINETUNE_FLAGS):
                raise ValueError("Expected --resume with --run-dir only: a resumed run keeps "
                                 "the recipe saved in its run directory.")
            result = finetune(None, run_dir=args.run_dir, resume=True)
        else:
            config = args.config or ("builtin" if args.data in (None, "builtin") else "folder")
            flags = [f"{flag}={getattr(args, flag)}" for flag in FINETUNE_FLAGS
                     if getattr(args, flag) is not None]
            recipe = load_recipe(config, flags + list(args.overrides))
            run_dir = args.run_dir or new_run_dir(recipe.name)
            result = finetune(recipe, run_dir=run_dir, overwrite=args.overwrite)
    except ValueError as error:
        print(f"keras-vgg finetune: {error}", file=sys.stderr)
        return 2
    print(format_run(result))
    return 0


def format_run(result) -> str:
    final = result.metrics["final"]
    lines = [f"Validation accuracy {final['val_accuracy']:.1%} after {result.epochs} epochs "
             f"in {result.metrics['seconds']:.0f} s"
             + (" (head trained on cached features)" if result.feature_cache else ""),
             f"Outputs in {result.run_dir}:"]
    lines += [f"  {p.name}{'/' if p.is_dir() else ''}" for p in sorted(result.run_dir.iterdir())]
    report = json.loads((result.run_dir / "data_report.json").read_text())
    if report["skipped"] or report["dropped_classes"]:
        lines.append(f"Skipped {len(report['skipped'])} file(s) and "
                     f"{len(report['dropped_classes'])} class folder(s): see data_report.json")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
