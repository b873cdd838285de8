"""Quantizers: TFLite dynamic and int8 from the converter against the LiteRT Quantizer.

For each mode, the same serving model is written twice (``keras_vgg.export.tflite``): by
TFLiteConverter's own quantization (``converter_bytes``) and by the LiteRT Quantizer's recipe
applied to the float32 file (``quantizer_bytes``: ``dynamic_wi8_afp32``,
``static_wi8_ai8`` with uint8 ends), int8 calibrated on the same images. Each file's size,
its top-1 agreement with the Keras serving model and max abs difference of the
probabilities, its accuracy (with labels) and the paired accuracy difference converter minus
quantizer (Newcombe 95% interval) on the sample; then every file and Keras run one image per
round, rounds alternating, median per file and the per-round ratio quantizer / converter.

Two models:

- the main job's: the built-in recipe's model (VGG11-BN at 32x32 trained on the built-in
  shapes; ``--model`` a ``.keras`` file of a run, else it is trained here, a few minutes)
  on its 1,050 test images, int8 calibrated on 500 of its training images (``--arrays``: an
  ``.npz`` with ``train``, ``test``, ``test_labels``, else read from the recipe's data);
- VGG16 at 224, headless + average pool + a head fitted to the built-in shapes, as
  benchmarks/serving.py builds it (``--sample`` held-out shapes, ``--calibration`` others).

Usage:
    python benchmarks/quantizers.py --model runs/builtin/best.keras --write
    python benchmarks/quantizers.py --arrays arrays.npz --repeats 50 --skip-vgg16
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import common
import keras
import numpy as np
from serving import PREPROCESSING, fitted_classifier, shapes

from keras_vgg.export import KerasRunner, TFLiteRunner, serving_model, tflite_ops
from keras_vgg.export.checks import compare
from keras_vgg.export.tflite import converter_bytes, float_tflite, quantizer_bytes
from keras_vgg.stats import paired_difference

MODES = ["dynamic", "int8"]
TOOLS = ["converter", "litert-quantizer"]
CALIBRATION = 500  # training images of the main job's model that calibrate int8


def main_job(args, folder):
    """``(model, preprocessing, representative, sample, labels)`` of the main job's model."""
    from keras_vgg.finetune import finetune, load_recipe
    from keras_vgg.finetune import data as data_lib
    from keras_vgg.saving import load_model, record_of

    path = args.model
    if path is None:
        result = finetune(load_recipe("builtin"), folder / "run", verbose=0)
        path = result.best_model
    model = load_model(path)
    preprocessing = record_of(model)["preprocessing"] or "torch"
    if args.arrays:
        arrays = np.load(args.arrays)
        train, test, labels = arrays["train"], arrays["test"], arrays["test_labels"]
    else:
        splits = data_lib.load_data(load_recipe("builtin"))
        data_lib.decode_once(splits, 0)
        (train, _), (test, labels) = _arrays(splits.train), _arrays(splits.test)
    return model, preprocessing, train[:CALIBRATION], test, labels


def _arrays(dataset):
    pairs = list(dataset.as_numpy_iterator())
    return np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])


def vgg16(args):
    """VGG16 at 224 as benchmarks/serving.py builds it, and its shape images."""
    representative, train_labels = shapes(args.calibration, 224, seed=2)
    sample, labels = shapes(args.sample, 224, seed=1)
    model = fitted_classifier("vgg16", 224, np.concatenate([sample, representative]),
                              np.concatenate([labels, train_labels]))
    return model, PREPROCESSING, representative, sample, labels


def one_at_a_time(run, images):
    """A clock of ``run`` on each of ``images`` in turn, one image per call (batch 1)."""
    def invokes():
        for image in images:
            run(image[None])
    return common.wall(invokes)


def measure(name, built, args, folder, invokes) -> dict:
    """Rows of every (mode, tool) file of one model: size, checks, latency (``invokes``
    images one at a time per round); and the Keras serving model's latency."""
    model, preprocessing, representative, sample, labels = built
    serving = serving_model(model, preprocessing)
    keras_run = KerasRunner(serving)
    reference = np.concatenate([keras_run(sample[i:i + 64]) for i in range(0, len(sample), 64)])
    float_model = float_tflite(serving)
    runners, rows = {"keras": keras_run}, []
    for mode in MODES:
        for tool in TOOLS:
            path = folder / f"{name}_{mode}_{tool}.tflite"
            path.write_bytes(converter_bytes(serving, mode, representative)
                             if tool == "converter" else
                             quantizer_bytes(float_model, mode, representative))
            run = runners[mode, tool] = TFLiteRunner(path)
            outputs = run(sample)
            row = {"model": name, "mode": mode, "tool": tool,
                   "size_mb": path.stat().st_size / 1e6,
                   "dequantize": tflite_ops(path.read_bytes()).get("DEQUANTIZE", 0),
                   "predicted": outputs.argmax(-1), **compare(reference, outputs, labels)}
            rows.append(row)
    seconds = common.alternate({key: one_at_a_time(run, sample[:invokes])
                                for key, run in runners.items()}, args.repeats)
    for row in rows:
        key = row["mode"], row["tool"]
        row["ms"] = 1000 * common.median(seconds[key]) / invokes
        ratios = np.divide(seconds[key], seconds[row["mode"], "converter"])
        row["vs_converter"] = common.median(ratios)
        row["vs_converter_iqr"] = [float(q) for q in np.percentile(ratios, [25, 75])]
        row["keras_speedup"] = common.paired(seconds["keras"], seconds[key])
    for mode in MODES:  # converter first: the difference is what the quantizer loses
        first, second = (next(r for r in rows if r["mode"] == mode and r["tool"] == tool)
                         for tool in TOOLS)
        paired = paired_difference(labels, first["predicted"], second["predicted"])
        second["paired"] = {key: getattr(paired, key) for key in
                            ("difference", "low", "high", "only_first", "only_second")}
    keras.backend.clear_session()
    return {"model": name, "images": len(sample), "calibration": len(representative),
            "invokes": invokes, "keras_ms": 1000 * common.median(seconds["keras"]) / invokes,
            "rows": [{k: v for k, v in r.items() if k != "predicted"} for r in rows]}


def table(result) -> str:
    body = []
    for r in result["rows"]:
        paired = r.get("paired")
        body.append((r["mode"], r["tool"], f"{r['size_mb']:.2f}", r["dequantize"],
                     f"{r['ms']:.2f}", f"{r['vs_converter']:.2f} "
                     f"[{r['vs_converter_iqr'][0]:.2f}, {r['vs_converter_iqr'][1]:.2f}]",
                     f"{r['keras_speedup']:.2f}",
                     f"{r['top1_agreement']:.2%} ({r['changed']} changed)",
                     f"{r['max_abs_diff']:.3f}", f"{r['accuracy']:.2%}",
                     "" if paired is None else
                     f"{100 * paired['difference']:+.2f} pt [{100 * paired['low']:+.2f}, "
                     f"{100 * paired['high']:+.2f}]"))
    return common.table(("mode", "tool", "size MB", "DEQUANTIZE ops", "ms/image",
                         "time / converter's [IQR]", "x Keras f32", "top-1 agreement with Keras",
                         "max abs diff", "accuracy", "converter - quantizer accuracy (95%)"),
                        body, left=2)


TITLE = "Quantizers: TFLite dynamic and int8, converter vs LiteRT Quantizer"
DESCRIPTIONS = {
    "main job": "the built-in recipe's trained model (VGG11-BN, 32x32, `torch` preprocessing) "
                "on its test images, int8 calibrated on its training images",
    "vgg16": f"headless VGG16 at 224 + average pool + a head fitted to the built-in shapes "
             f"(random seeded conv weights, `{PREPROCESSING}` preprocessing, as "
             "benchmarks/serving.py builds it) on held-out shape images, int8 calibrated on "
             "others",
}


def section(args, command, results) -> common.Section:
    parts = [f"Each mode written twice from the same serving model by "
             "`keras_vgg.export.tflite`: TFLiteConverter's quantization "
             "(`converter_bytes`) and the LiteRT Quantizer's recipe on the float32 file "
             "(`quantizer_bytes`, `litert-quantizer`: `dynamic_wi8_afp32`; `static_wi8_ai8` with uint8 ends). "
             "ms/image: batch 1, median of "
             f"{args.repeats} alternating rounds (every file and the Keras serving model in "
             "each round, on the round's images one at a time) after a warm-up, divided by "
             "the images a round; time / converter's and x Keras f32: medians of the "
             "per-round ratios (IQR: their 25th and 75th percentiles; a range across 1 is a "
             "tie). Agreement, max abs difference (probabilities) and accuracy "
             "on the whole sample; the last column is the paired accuracy difference "
             "converter minus quantizer with Newcombe's 95% interval (an interval across 0: "
             f"not significant). Machine: {common.machine()}, shared with a CI run while it "
             "ran: read the ratios, not the times."]
    for result in results:
        parts.append(f"### {result['model']}: {result['images']:,} images, "
                     f"{result['calibration']} calibration, {result['invokes']} "
                     f"image{'s' if result['invokes'] > 1 else ''} a round\n\n"
                     f"{DESCRIPTIONS[result['model']]}; Keras float32 "
                     f"{result['keras_ms']:.2f} ms/image in the same rounds.\n\n" + table(result))
    return common.Section(TITLE, command, "\n\n".join(parts), rows=results)


def arguments(argv=None):
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--model", help="the main job's .keras file (default: train it)")
    arg_parser.add_argument("--arrays", help=".npz with train, test, test_labels (default: "
                                             "the built-in recipe's data)")
    arg_parser.add_argument("--repeats", type=common.positive_int, default=30)
    arg_parser.add_argument("--invokes", type=common.positive_int, default=20,
                            help="main job: images timed one at a time in each round")
    arg_parser.add_argument("--sample", type=common.positive_int, default=20,
                            help="VGG16: held-out shape images the agreement is measured on")
    arg_parser.add_argument("--calibration", type=common.positive_int, default=16,
                            help="VGG16: shape images that calibrate int8")
    arg_parser.add_argument("--skip-vgg16", action="store_true")
    arg_parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = arg_parser.parse_args(argv)
    command = common.command("quantizers.py", args, arg_parser).replace(" --write", "")
    return args, command


def main(argv=None) -> common.Section:
    """Writes, checks and times both tools' files; prints (with --write, writes) the section."""
    args, command = arguments(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results.append(measure("main job", main_job(args, folder), args, folder,
                               args.invokes))
        if not args.skip_vgg16:  # 0.1 s an image: one a round
            results.append(measure("vgg16", vgg16(args), args, folder, 1))
    result = common.report(section(args, command, results))
    if args.write:
        common.write_section(result)
    return result


if __name__ == "__main__":
    main()
