"""BatchNorm folded: the BN form served against the plain form, side by side.

Three serving models (``keras_vgg.export.serving_model``: raw pixels in, caffe
preprocessing inside) of the same architecture, timed in one process in alternating rounds:
the plain form (VGG16), the BN form with its BatchNormalization layers (VGG16-BN, the fold
switched off) and the BN form as it is served (folded into the convs,
``keras_vgg.fold_batch_norm``). Keras: ``predict_on_batch`` of the serving model (what the
export report times), batch 1 and batch 8, float32 and bfloat16 (the serving model's
``precision``); TFLite: the float32 and int8 files of each serving model, batch 1, all CPU
threads. Ratios are the medians of per-round ratios against the plain form.

Models: headless, global average pooling, a 10-class softmax head, random weights, the BN
forms with random statistics (not the identity); int8 calibrated on random images.

``--library`` (issue 30) times instead the model the library's other inference paths run
(``embed``, ``feature_extractor(..., inference=True)``, a run's feature cache, evaluation,
report and compress): ``keras_vgg.batch_norm.inference_model(model, "bfloat16")`` of VGG16
and of VGG16-BN, with their tops (1000 classes, random weights, the BN form with random
statistics), against the BN form cast without the fold (``with_precision(..., "bfloat16",
inference=True)``, what those paths ran before); ``predict_on_batch``, batch 1 and 8, in
alternating rounds; speeds as the median of the per-round ratios to the plain form's.

Usage:
    python benchmarks/fold_bn.py                  # VGG16 at 224x224, 10 rounds
    python benchmarks/fold_bn.py --size 64 --repeats 3
    python benchmarks/fold_bn.py --quick          # VGG11 at 32x32, 2 rounds: a smoke run
    python benchmarks/fold_bn.py --library        # the library's bfloat16 paths, VGG16 at 224
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import common
import keras
import numpy as np
from export_lrn import classifier

import keras_vgg
from keras_vgg.batch_norm import inference_model
from keras_vgg.export import KerasRunner, TFLiteRunner, serving_model, write_tflite
from keras_vgg.export import serving as serving_module
from keras_vgg.precision import with_precision

TITLE = "BatchNorm folded: BN forms at the plain forms' speed"
FORMS = ("plain", "bn", "folded")
KERAS = [(precision, batch) for precision in ("float32", "bfloat16") for batch in (1, 8)]
TFLITE = {"none": "float32", "int8": "int8"}
TARGET = 1.05


@contextlib.contextmanager
def unfolded():
    """serving_model without the fold: the BN form with its BatchNormalization layers."""
    own = serving_module.inference_model
    serving_module.inference_model = lambda model, precision: with_precision(
        model, precision, inference=True)
    try:
        yield
    finally:
        serving_module.inference_model = own


def models(variant, size):
    """``{form: classifier}``: the plain form and the BN form with random statistics."""
    bn = classifier(f"{variant}_bn", size)
    rng = np.random.default_rng(0)
    for layer in bn._flatten_layers(recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    return {"plain": classifier(variant, size), "bn": bn}


def served(model, form, precision):
    with unfolded() if form == "bn" else contextlib.nullcontext():
        return serving_model(model, "caffe", precision=precision)


def measure(variant, size, repeats, calibration):
    """Seconds per round of each (pass, form), the TFLite files' op counts, and the largest
    difference between the folded and unfolded float32 Keras models' outputs."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(8, calibration), size, size, 3), dtype=np.uint8)
    built = models(variant, size)
    clocks, ops, servings = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for form in FORMS:
            model = built["plain" if form == "plain" else "bn"]
            for precision, batch in KERAS:
                if (precision, form) not in servings:
                    servings[precision, form] = served(model, form, precision)
                run = KerasRunner(servings[precision, form])
                clocks[f"Keras {precision}, batch {batch}", form] = common.wall(
                    lambda run=run, x=images[:batch]: run(x))
            for quantize, label in TFLITE.items():
                path = Path(tmp) / f"{form}_{quantize}.tflite"
                ops[label, form] = write_tflite(servings["float32", form], path, quantize,
                                                representative=images[:calibration])
                run = TFLiteRunner(path)
                clocks[f"TFLite {label}", form] = common.wall(lambda run=run: run(images[:1]))
        outputs = {form: KerasRunner(servings["float32", form])(images) for form in FORMS[1:]}
        seconds = common.alternate(clocks, repeats)
    keras.backend.clear_session()
    return {"seconds": seconds, "ops": ops,
            "max_abs_diff": float(np.abs(outputs["folded"] - outputs["bn"]).max())}


LIBRARY_TITLE = "BatchNorm folded in every inference path: bfloat16 BN forms at the plain speed"
LIBRARY_FORMS = ("plain", "bn unfolded", "bn")
LIBRARY_TARGET = 0.9


def library_models(variant, size):
    """``{form: bfloat16 model}`` as the library's inference paths build them."""
    plain = keras_vgg.get_model(variant, input_shape=(size, size, 3), adaptive_pool=None)
    bn = keras_vgg.get_model(f"{variant}_bn", input_shape=(size, size, 3), adaptive_pool=None)
    rng = np.random.default_rng(0)
    for layer in bn._flatten_layers(recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    x = rng.uniform(0, 255, (8, size, size, 3)).astype("float32")
    exact = float(np.abs(inference_model(bn, "float32").predict_on_batch(x)
                         - bn.predict_on_batch(x)).max())
    return {"plain": inference_model(plain, "bfloat16"),
            "bn unfolded": with_precision(bn, "bfloat16", inference=True),
            "bn": inference_model(bn, "bfloat16")}, x, exact


def library_rows(variant, size, repeats):
    """One row per batch size: each form's ms and its speed against the plain form's."""
    forms, x, exact = library_models(variant, size)
    clocks = {(batch, form): common.wall(lambda m=model, b=x[:batch]: m.predict_on_batch(b))
              for batch in (1, 8) for form, model in forms.items()}
    seconds = common.alternate(clocks, repeats)
    keras.backend.clear_session()
    return library_rows_of(seconds), exact


def library_rows_of(seconds):
    """One row per batch size from the seconds of every round (``{(batch, form): [...]}``):
    each form's ms and its speed against the plain form's."""
    rows = []
    for batch in dict.fromkeys(key[0] for key in seconds):
        row = {"batch": batch, **{f"{form}_ms": 1000 * common.median(seconds[batch, form])
                                  for form in LIBRARY_FORMS}}
        for form in LIBRARY_FORMS[1:]:  # plain seconds / form seconds: the form's speed
            row[f"{form}_speed"] = common.paired(seconds[batch, "plain"], seconds[batch, form])
        rows.append(row)
    return rows


def library_section(args, command, rows, exact) -> common.Section:
    """``--library``'s docs section from the rows (:func:`library_rows_of`) and the largest
    difference of the folded and unfolded float32 outputs."""
    names = {"plain": args.model, "bn unfolded": f"{args.model}_bn unfolded",
             "bn": f"{args.model}_bn folded"}
    table = common.table(
        ("batch", *(f"{names[f]} ms" for f in LIBRARY_FORMS), "unfolded speed / plain",
         "folded speed / plain"),
        [(r["batch"], *(f"{r[f'{f}_ms']:.1f}" for f in LIBRARY_FORMS),
          f"{r['bn unfolded_speed']:.2f}", f"{r['bn_speed']:.2f}") for r in rows])
    body = (f"Machine: {common.machine()}. `{args.model}` and `{args.model}_bn` with their "
            f"tops (1000 classes, random weights, random BN statistics), {args.size}x"
            f"{args.size}, bfloat16 (weights held in it), `predict_on_batch`; ms: median of "
            f"{args.repeats} alternating rounds after a warm-up; speeds: medians of the "
            "per-round ratios of the plain form's seconds to the form's. Folded: "
            "`inference_model(model, \"bfloat16\")`, as embed, feature_extractor(..., "
            "inference=True), the feature cache, evaluation, report and compress now build "
            "it; unfolded: `with_precision(model, \"bfloat16\", inference=True)`, as they "
            f"built it before.\n\n{table}\n\nFolded vs unfolded float32 outputs (softmax): "
            f"max abs difference {exact:.1e}.")
    worst = min(r["bn_speed"] for r in rows)
    return common.Section(
        LIBRARY_TITLE, command, body, rows=rows,
        targets=[common.Target(f"{args.model}_bn in bfloat16",
                               f">= {LIBRARY_TARGET}x the speed of {args.model}",
                               f"{worst:.2f}x at worst", worst >= LIBRARY_TARGET)])


def rows_of(measured):
    seconds, rows = measured["seconds"], []
    for name in dict.fromkeys(key[0] for key in seconds):
        row = {"pass": name, **{f"{form}_ms": 1000 * common.median(seconds[name, form])
                                for form in FORMS}}
        for form in FORMS[1:]:
            row[f"{form}_ratio"] = common.paired(seconds[name, form], seconds[name, "plain"])
        rows.append(row)
    return rows


def body(args, rows, measured) -> str:
    names = {"plain": args.model, "bn": f"{args.model}_bn", "folded": f"{args.model}_bn folded"}
    table = common.table(
        ("pass", *(f"{names[f]} ms" for f in FORMS), "BN / plain", "folded / plain"),
        [(r["pass"], *(f"{r[f'{f}_ms']:.1f}" for f in FORMS), f"{r['bn_ratio']:.3f}",
          f"{r['folded_ratio']:.3f}") for r in rows])
    same_ops = all(measured["ops"][label, "bn"] == measured["ops"][label, "plain"]
                   == measured["ops"][label, "folded"] for label in TFLITE.values())
    return (f"Headless `{args.model}` / `{args.model}_bn` + global average pooling + a "
            f"10-class softmax, random weights (random BN statistics), {args.size}x{args.size}, "
            f"the serving model (`caffe` preprocessing inside). ms: median of {args.repeats} "
            "alternating rounds (Keras `predict_on_batch` of the serving model, ms per batch; "
            "TFLite batch 1, all CPU threads); ratios: medians of the per-round ratios.\n\n"
            f"{table}\n\nFolded vs unfolded float32 Keras outputs: max abs difference "
            f"{measured['max_abs_diff']:.1e}. TFLite op counts "
            f"{'the same in all three files' if same_ops else 'differ'} per mode: "
            + "; ".join(f"{label} {measured['ops'][label, 'bn']}"
                        for label in TFLITE.values()) + ".")


def targets(model, rows) -> list[common.Target]:
    worst = max(rows, key=lambda r: r["folded_ratio"])
    return [common.Target(
        f"{model}_bn served", f"within {TARGET}x of {model} (Keras and TFLite)",
        f"{worst['folded_ratio']:.3f}x at worst ({worst['pass']})",
        worst["folded_ratio"] <= TARGET,
        "" if worst["folded_ratio"] <= TARGET else "see the reading under the table")]


def section(args, command, measured) -> common.Section:
    """The docs section from what :func:`measure` returns (``seconds``: ``{(pass, form):
    [...]}``, ``ops``: ``{(mode, form): op counts}``, ``max_abs_diff``)."""
    rows = rows_of(measured)
    return common.Section(TITLE, command, body(args, rows, measured), rows=rows,
                          targets=targets(args.model, rows), extra=measured)


def arguments(argv=None):
    """``(args, command)``: the parsed arguments (``--quick`` spelt out as the settings it
    stands for) and the command line that reproduces them."""
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--model", default="vgg16", choices=("vgg11", "vgg13", "vgg16",
                                                                "vgg19"),
                            help="the plain form; its BN form is MODEL_bn")
    arg_parser.add_argument("--size", type=common.positive_int, default=224)
    arg_parser.add_argument("--repeats", type=common.positive_int, default=10)
    arg_parser.add_argument("--calibration", type=common.positive_int, default=8,
                            help="random images to calibrate int8")
    arg_parser.add_argument("--quick", action="store_true",
                            help="--model vgg11 --size 32 --repeats 2 --calibration 2")
    arg_parser.add_argument("--library", action="store_true",
                            help="time the library's bfloat16 inference paths instead")
    args = arg_parser.parse_args(argv)
    if vars(args).pop("quick"):  # the command line then spells the settings out
        args.model, args.size, args.repeats, args.calibration = "vgg11", 32, 2, 2
    if args.library:  # no TFLite file to calibrate
        del args.calibration
    return args, common.command("fold_bn.py", args, arg_parser)


def main(argv=None) -> common.Section:
    args, command = arguments(argv)
    if args.library:
        rows, exact = library_rows(args.model, args.size, args.repeats)
        return common.report(library_section(args, command, rows, exact))
    measured = measure(args.model, args.size, args.repeats, args.calibration)
    return common.report(section(args, command, measured))


if __name__ == "__main__":
    main()
