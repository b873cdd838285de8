"""Serving: every file keras_vgg writes, side by side against Keras float32, and the fastest.

One process exports a classifier with ``keras_vgg.export.export`` into every format and
precision the package writes (SavedModel; TFLite float32, float16, dynamic, int8, int4 from
the LiteRT Quantizer; ONNX float32 and int8 for ONNX Runtime; OpenVINO float32, int8 and the
float32 file with its bf16 hint), each checked by export() on held-out sample images, then
times every file and the Keras serving model (float32 and bfloat16) at batch 1 and 8,
rounds alternating, the ratio against Keras float32 taken per round. Size and top-1
agreement with Keras float32 come from the export's report (Keras bfloat16: measured here).

The models: a headless variant (VGG16 and one of VGG-F/M/S) + global average pooling + a
softmax head fitted by least squares to the package's built-in shapes (drawn images, nothing
downloads; conv weights random, seeded): so the agreement is measured on images the head
tells apart, not on noise. The sample is held-out shapes; int8 is calibrated on others.

Usage:
    python benchmarks/serving.py                     # VGG16 + VGG-F at 224, batch 1 and 8
    python benchmarks/serving.py --models vgg11 --size 64 --repeats 2 --no-write
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import common
import keras
import numpy as np

import keras_vgg
from keras_vgg.export import KerasRunner, export, load_predictor, serving_model
from keras_vgg.finetune.builtin import SHAPES, render
from keras_vgg.preprocessing import preprocess_input

PREPROCESSING = "caffe"
FORMATS = ["saved_model", "tflite", "onnx", "openvino"]
QUANTIZE = ["none", "float16", "dynamic", "int8", "int4"]
ENGINES = {("saved_model", None): "SavedModel (TF) float32",
           ("tflite", "none"): "TFLite float32", ("tflite", "float16"): "TFLite float16",
           ("tflite", "dynamic"): "TFLite dynamic", ("tflite", "int8"): "TFLite int8",
           ("tflite", "int4"): "TFLite int4", ("onnx", "none"): "ONNX Runtime float32",
           ("onnx", "int8"): "ONNX Runtime int8", ("openvino", "none"): "OpenVINO float32",
           ("openvino", "int8"): "OpenVINO int8"}
TARGET = 10.0  # the fastest file for VGG16 at 224, batch 1, against Keras float32


def shapes(n, size, seed):
    """``n`` built-in shape images (each class in turn) at ``size``, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(SHAPES)
    return np.stack([render(SHAPES[y], rng, size) for y in labels]), labels


def fitted_classifier(variant, size, images, labels, components=32):
    """Headless ``variant`` (random, seeded) + average pool + a softmax head fitted by least
    squares on the top principal directions of its pooled features of ``images``."""
    keras.utils.set_random_seed(0)
    base = keras_vgg.get_model(variant, include_top=False, input_shape=(size, size, 3),
                               pooling="avg")
    inputs = keras.Input((size, size, 3))
    head = keras.layers.Dense(len(SHAPES), activation="softmax", name="head")
    model = keras.Model(inputs, head(base(inputs)))
    features = base.predict(preprocess_input(images, mode=PREPROCESSING), verbose=0)
    features = features.astype("float64")
    mean = features.mean(0)
    directions = np.linalg.svd(features - mean, full_matrices=False)[2][:components].T
    x = np.c_[(features - mean) @ directions, np.ones(len(features))]
    target = 4.0 * (np.eye(len(SHAPES))[labels] - 1 / len(SHAPES))  # logits
    w = np.linalg.lstsq(x, target, rcond=None)[0]
    kernel = directions @ w[:-1]
    head.set_weights([kernel.astype("float32"), (w[-1] - mean @ kernel).astype("float32")])
    return model


def export_all(model, folder, data):
    """The report rows of every file (export() checks each on the sample), the bf16-hinted
    OpenVINO file's row included; ``data``: (representative, sample, labels)."""
    representative, sample, labels = data
    settings = dict(preprocessing=PREPROCESSING, representative_data=representative,
                    sample=sample, sample_labels=labels, latency_repeats=3, verbose=False)
    report = export(model, folder / "bundle", FORMATS, QUANTIZE, **settings)
    bf16 = export(model, folder / "bf16", ["openvino"], ["none"], precision="bfloat16",
                  **settings)
    rows = [dict(row, engine=ENGINES[row["format"], row["quantize"]],
                 path=folder / "bundle" / row["file"]) for row in report["exports"]]
    rows += [dict(row, engine="OpenVINO float32, bf16 hint", path=folder / "bf16" / row["file"])
             for row in bf16["exports"]]
    return rows, report.get("fastest")


def keras_rows(model, folder, sample):
    """Keras float32 and bfloat16 (the serving model, as predict runs it): their rows."""
    model.save(folder / "model.keras")
    size_bytes = (folder / "model.keras").stat().st_size
    float32 = KerasRunner(serving_model(model, PREPROCESSING))
    reference = float32(sample).argmax(-1)
    rows = []
    for precision, run in (("float32", float32),
                           ("bfloat16", KerasRunner(serving_model(model, PREPROCESSING,
                                                                  precision="bfloat16")))):
        rows.append({"engine": f"Keras {precision}", "file": "model.keras", "run": run,
                     "size_bytes": size_bytes,
                     "top1_agreement": float(np.mean(run(sample).argmax(-1) == reference))})
    return rows


def clock(run, images):
    return common.wall(lambda: run(images))


def measure(variant, args, folder) -> dict:
    """Rows of every engine for ``variant``: size, agreement, ms per image at each batch and
    the speed-up over Keras float32 (per-round ratios); and export()'s fastest file."""
    representative, train_labels = shapes(args.calibration, args.size, seed=2)
    sample, labels = shapes(args.sample, args.size, seed=1)
    model = fitted_classifier(variant, args.size, np.concatenate([sample, representative]),
                              np.concatenate([labels, train_labels]))
    folder.mkdir()
    files, fastest = export_all(model, folder, (representative, sample, labels))
    rows = keras_rows(model, folder, sample)
    for row in files:
        row["run"] = load_predictor(row["path"])[0]
        rows.append(row)
    for batch in args.batches:
        images = np.resize(sample, (batch, *sample.shape[1:]))
        seconds = common.alternate({r["engine"]: clock(r["run"], images) for r in rows},
                                   args.repeats)
        for row in rows:
            row[f"ms_{batch}"] = 1000 * common.median(seconds[row["engine"]]) / batch
            row[f"speedup_{batch}"] = common.paired(seconds["Keras float32"],
                                                    seconds[row["engine"]])
    keras.backend.clear_session()
    return {"variant": variant, "rows": [{k: v for k, v in r.items() if k not in ("run", "path")}
                                         for r in rows], "fastest_in_report": fastest}


def fastest_file(result, batch) -> dict:
    """The row of the fastest exported file (Keras excluded) at ``batch``."""
    files = [r for r in result["rows"] if not r["engine"].startswith("Keras")]
    return max(files, key=lambda r: r[f"speedup_{batch}"])


def table(result, batches) -> str:
    header = ["engine", "file", "size MB", "top-1 agree"]
    for batch in batches:
        header += [f"ms/img b{batch}", f"x Keras f32 b{batch}"]
    body = []
    for r in result["rows"]:
        cells = [r["engine"], f"`{r['file']}`", f"{r['size_bytes'] / 1e6:.1f}",
                 f"{r['top1_agreement']:.0%}"]
        for batch in batches:
            cells += [f"{r[f'ms_{batch}']:.1f}", f"{r[f'speedup_{batch}']:.2f}"]
        body.append(cells)
    return common.table(header, body, left=2)


def section(args, command, results) -> common.Section:
    """The docs section: one table per model, the fastest file of each, the target."""
    parts = [f"Models: headless, random seeded conv weights + global average pooling + a "
             f"{len(SHAPES)}-class softmax head fitted to the built-in shapes, "
             f"{args.size}x{args.size}, `{PREPROCESSING}` preprocessing inside every file. "
             f"Agreement: top-1 against Keras float32 on {args.sample} held-out shape images "
             f"(drawn, not photos); int8 calibrated on {args.calibration} others. ms/image: "
             f"median of {args.repeats} alternating rounds after a warm-up, each engine on "
             "one batch per round; x Keras f32: the median of the per-round ratios. TFLite "
             "files take one image per invoke (a batch of 8 is 8 invokes). Machine: "
             f"{common.machine()}, shared with another engineer's tests while it ran: read "
             "the ratios, not the times."]
    targets = []
    for result in results:
        best = fastest_file(result, args.batches[0])
        parts.append(f"### {result['variant']}\n\n" + table(result, args.batches) +
                     f"\n\nFastest file here at batch {args.batches[0]}: {best['engine']} "
                     f"(`{best['file']}`), {best[f'speedup_{args.batches[0]}']:.1f}x Keras "
                     f"float32, top-1 agreement {best['top1_agreement']:.0%}.")
    main = results[0]
    if main["variant"] == "vgg16" and args.size == 224 and 1 in args.batches:
        best = fastest_file(main, 1)
        targets.append(common.Target(
            "fastest keras_vgg file for VGG16 at 224, batch 1", f">= {TARGET:g}x Keras float32",
            f"{best['speedup_1']:.1f}x ({best['engine']}, agreement {best['top1_agreement']:.0%})",
            best["speedup_1"] >= TARGET))
    body = "\n\n".join(parts)
    for t in targets:
        body += f"\n\nTarget: {t.name} {t.goal}: {t.measured}: {common.met(t.met)}."
    return common.Section(TITLE, command, body, rows=results, targets=targets)


TITLE = "Serving: every engine and precision keras_vgg writes, against Keras float32"


def arguments(argv=None):
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--models", nargs="+", default=["vgg16", "vgg_f"],
                            choices=keras_vgg.list_models())
    arg_parser.add_argument("--size", type=common.positive_int, default=224)
    arg_parser.add_argument("--batches", nargs="+", type=common.positive_int, default=[1, 8])
    arg_parser.add_argument("--repeats", type=common.positive_int, default=5)
    arg_parser.add_argument("--sample", type=common.positive_int, default=20,
                            help="held-out shape images the agreement is measured on")
    arg_parser.add_argument("--calibration", type=common.positive_int, default=16,
                            help="shape images to calibrate the int8 files")
    arg_parser.add_argument("--no-write", action="store_true",
                            help="print only; do not update docs/benchmarks.md")
    args = arg_parser.parse_args(argv)
    common.check_size(arg_parser, "--size", args.size, args.models)
    return args, common.command("serving.py", args, arg_parser).replace(" --no-write", "")


def main(argv=None) -> common.Section:
    """Exports, times side by side, prints (and unless --no-write, writes) the section."""
    args, command = arguments(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(variant, args, Path(tmp) / variant) for variant in args.models]
    result = common.report(section(args, command, results))
    for target in result.targets:
        print(f"{target.name} {target.goal}: {common.met(target.met)}")
    if not args.no_write:
        common.write_section(result)
    return result


if __name__ == "__main__":
    main()
