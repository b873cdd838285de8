"""The ``keras-vgg`` command: a thin face over the library.

Example:
    $ keras-vgg list
    $ keras-vgg summary vgg_m --input-shape 64,64,3 --no-top
"""

from __future__ import annotations

import argparse
import sys

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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
