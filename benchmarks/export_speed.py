"""Export: Keras vs TFLite float32/float16/dynamic/int8, latency per image and size.

keras_vgg.export.export writes and checks every TFLite file (its report gives each file's
size, its difference from Keras and its own sequential latency). The latencies compared here
are then re-timed side by side: the Keras serving model (KerasRunner) and every TFLite file
(TFLiteRunner) run one image each per round, rounds alternating, median per runner.
The model is export_lrn's classifier: a headless variant with average pooling and a new
softmax head, random weights; int8 is calibrated on random uint8 images.

Usage:
    python benchmarks/export_speed.py                  # VGG16 head, 224x224, 20 rounds
    python benchmarks/export_speed.py --model vgg11 --size 64 --repeats 5
    python benchmarks/export_speed.py --quantize none int8 --calibration 8
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import common
import keras
import numpy as np
from export_lrn import classifier

import keras_vgg
from keras_vgg.export import QUANTIZE, KerasRunner, TFLiteRunner, export, serving_model

PREPROCESSING = "caffe"
LABELS = {"none": "TFLite float32", "float16": "TFLite float16", "dynamic": "TFLite dynamic",
          "int8": "TFLite int8", "int4": "TFLite int4"}


def one_image(run, image):
    return common.wall(lambda: run(image[None]))


def measure(model_name, size, classes, quantize, repeats, calibration):
    """Rows for Keras and each TFLite file: size, latency (interleaved), checks."""
    model = classifier(model_name, size, classes)
    images = np.random.default_rng(0).integers(0, 256, (calibration, size, size, 3), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        keras_file = Path(tmp) / "model.keras"
        model.save(keras_file)
        bundle = Path(tmp) / "bundle"
        report = export(model, bundle, ["tflite"], quantize, preprocessing=PREPROCESSING,
                        representative_data=images, sample=images, latency_repeats=repeats,
                        verbose=False)
        runners = {"keras": KerasRunner(serving_model(model, PREPROCESSING))}
        runners.update({row["quantize"]: TFLiteRunner(bundle / row["file"])
                        for row in report["exports"]})
        seconds = common.alternate({name: one_image(run, images[0])
                                    for name, run in runners.items()}, repeats)
        keras_bytes = keras_file.stat().st_size
    keras.backend.clear_session()
    return rows_of(keras_file.name, keras_bytes, report, seconds)


def rows_of(keras_file, keras_bytes, report, seconds) -> list[dict]:
    """Rows for Keras and each TFLite file from the ``.keras`` file's name and bytes,
    export()'s report, and the seconds of every round (``{"keras": [...], quantize: [...]}``):
    size and latency, each against Keras's."""
    rows = [{"export": "Keras", "file": keras_file, "runner": "keras",
             "size_mb": keras_bytes / 1e6, "export_ms": report["keras"]["latency_ms"]}]
    for row in report["exports"]:
        rows.append({"export": LABELS[row["quantize"]], "file": row["file"],
                     "runner": row["quantize"], "size_mb": row["size_bytes"] / 1e6,
                     "export_ms": row["latency_ms"], "convert_s": row["seconds"],
                     "max_abs_diff": row["max_abs_diff"],
                     "top1_agreement": row["top1_agreement"]})
    for row in rows:
        row["ms"] = 1000 * common.median(seconds[row["runner"]])
        row["keras_speedup"] = common.paired(seconds["keras"], seconds[row.pop("runner")])
        row["size_vs_keras"] = row["size_mb"] / rows[0]["size_mb"]
    return rows


def body(args, rows) -> str:
    def optional(row, key, spec):
        return format(row[key], spec) if key in row else ""

    lines = common.table(
        ("export", "file", "size MB", "size / Keras", "ms/image", "Keras / this (speed-up)",
         "export() ms", "convert + check s", "max abs diff", "top-1 agreement"),
        [(r["export"], f"`{r['file']}`", f"{r['size_mb']:.1f}", f"{r['size_vs_keras']:.3f}",
          f"{r['ms']:.1f}", f"{r['keras_speedup']:.2f}", f"{r['export_ms']:.1f}",
          optional(r, "convert_s", ".1f"), optional(r, "max_abs_diff", ".1e"),
          optional(r, "top1_agreement", ".0%")) for r in rows], left=2)
    params = keras_vgg.describe(args.model, input_shape=(args.size, args.size, 3),
                                include_top=False).params
    return (f"Model: headless `{args.model}` ({params:,} conv parameters) + global average "
            f"pooling + a {args.classes}-class softmax, random weights, {args.size}x{args.size}, "
            f"`{PREPROCESSING}` preprocessing inside every export (raw pixels in). Exported with "
            f"`keras_vgg.export.export(...)`; int8 calibrated on {args.calibration} random "
            "images, which are also the check sample (agreement on random inputs and weights "
            "says little; the latency and size are the point). ms/image: batch 1, median of "
            f"{args.repeats} alternating rounds after a warm-up, speed-up the median of the "
            "per-round ratios (Keras: `predict_on_batch` of "
            "the serving model, as export() times it; TFLite: ai-edge-litert with all CPU "
            "threads). \"export() ms\" is export()'s own sequential median, for comparison. "
            "Keras's size is the `.keras` file.\n\n" + lines)


TITLE = "Export: Keras vs TFLite float32, float16, dynamic and int8"


def section(args, command, rows) -> common.Section:
    """The docs section from the rows (:func:`rows_of`)."""
    return common.Section(TITLE, command, body(args, rows), rows=rows)


def arguments(argv=None):
    """``(args, command)``: the parsed, checked arguments and the command line that
    reproduces them."""
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--model", default="vgg16", choices=keras_vgg.list_models())
    arg_parser.add_argument("--size", type=common.positive_int, default=224)
    arg_parser.add_argument("--classes", type=common.positive_int, default=10)
    arg_parser.add_argument("--quantize", nargs="+", default=list(QUANTIZE), choices=QUANTIZE)
    arg_parser.add_argument("--repeats", type=common.positive_int, default=20)
    arg_parser.add_argument("--calibration", type=common.positive_int, default=16,
                            help="random uint8 images to calibrate int8 and to check on")
    args = arg_parser.parse_args(argv)
    common.check_size(arg_parser, "--size", args.size, [args.model])
    return args, common.command("export_speed.py", args, arg_parser)


def main(argv=None) -> common.Section:
    """Exports, re-times side by side and prints the table; returns the section for the docs."""
    args, command = arguments(argv)
    rows = measure(args.model, args.size, args.classes, args.quantize, args.repeats,
                   args.calibration)
    return common.report(section(args, command, rows))


if __name__ == "__main__":
    main()
