"""Exports of every family, checked against an independent Keras reference.

One bundle per family (a deep net, an LRN net, a BN net, an F/M/S net) at small input:
SavedModel + TFLite float32/float16/dynamic/int8. The reference is the Keras model on
``keras_vgg.preprocess_input`` (not the export's 1x1-conv preprocessing), so the
preprocessing inside the exports is checked too. Each model's head is fitted to images of
the built-in shapes, so the quantised files are bounded on confident predictions over every
class (a random head gives near-uniform ones that any quantisation keeps).
"""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import keras_vgg
from keras_vgg.export import (
    TFLITE_FILES,
    ExportError,
    TFLiteRunner,
    export,
    tflite_labels,
    tflite_ops,
)
from keras_vgg.export.formats import TOLERANCE
from keras_vgg.preprocessing import MODES, preprocess_input, preprocessing_affine
from keras_vgg.finetune.builtin import SHAPES, render
from keras_vgg.stats import accuracy_of, paired_difference

FAMILIES = {  # family: (variant, input size, preprocessing mode, the int8 file's int8_io)
    "deep": ("vgg11", 32, "caffe", "int8"),
    "lrn": ("vgg11_lrn", 32, "torch", "uint8"),
    "bn": ("vgg11_bn", 32, "tf", "uint8"),
    "fms": ("vggs", 48, "caffe", "uint8"),
}
CLASSES = list(SHAPES)
# A fresh process loading a SavedModel without keras_vgg (TensorFlow's import): about 10 s; a
# hung one fails its test at this bound instead of holding CI.
CHILD_TIMEOUT_S = 180


def small_classifier(variant, size, seed=0):
    keras.utils.set_random_seed(seed)
    base = keras_vgg.get_model(variant, include_top=False, input_shape=(size, size, 3),
                               pooling="avg")
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="head")(base(inputs))
    model = keras.Model(inputs, outputs)
    if "bn" in variant:  # BN statistics other than 0/1, so inference mode is really checked
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                mean, var = layer.moving_mean, layer.moving_variance
                mean.assign(np.random.default_rng(1).normal(0, 0.1, mean.shape))
                var.assign(np.random.default_rng(2).uniform(0.5, 2, var.shape))
    return model


def shapes(n, size, seed):
    """``n`` images of the built-in shapes (each class in turn) at ``size``, and labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(SHAPES)
    return np.stack([render(SHAPES[y], rng, size) for y in labels]), labels


def fit_head(model, images, labels, mode, components=32):
    """Sets the model's softmax head by least squares on the top ``components`` principal
    directions of the base's pooled features (the rest would need huge weights): the
    images get their class with p from 0.3 to 0.96, every class used."""
    base, head = model.layers[1], model.get_layer("head")
    features = base.predict(preprocess_input(images, mode=mode), verbose=0).astype("float64")
    mean = features.mean(0)
    directions = np.linalg.svd(features - mean, full_matrices=False)[2][:components].T
    x = np.c_[(features - mean) @ directions, np.ones(len(features))]
    target = 4.0 * (np.eye(len(CLASSES))[labels] - 1 / len(CLASSES))  # logits
    w = np.linalg.lstsq(x, target, rcond=None)[0]
    kernel = directions @ w[:-1]
    head.set_weights([kernel.astype("float32"), (w[-1] - mean @ kernel).astype("float32")])


def fitted_classifier(family):
    """``(model, sample, labels, representative)``: the family's classifier with its head
    fitted to shapes, 20 held-out images with their labels, 40 training images."""
    variant, size, mode, _ = FAMILIES[family]
    model = small_classifier(variant, size)
    sample, labels = shapes(20, size, seed=1)
    representative, train_labels = shapes(40, size, seed=2)
    fit_head(model, np.concatenate([sample, representative]),
             np.concatenate([labels, train_labels]), mode)
    return model, sample, labels, representative


def make_bundle(family, tmp_path_factory):
    variant, size, mode, int8_io = FAMILIES[family]
    model, sample, labels, representative = fitted_classifier(family)
    out = tmp_path_factory.mktemp(family) / "bundle"
    report = export(model, out, ["saved_model", "tflite"], list(TFLITE_FILES),
                    preprocessing=mode, class_names=CLASSES, sample=sample,
                    sample_labels=labels, representative_data=representative,
                    int8_io=int8_io, verbose=False)
    reference = model.predict(preprocess_input(sample, mode=mode), verbose=0)
    keras.backend.clear_session()
    return {"family": family, "variant": variant, "out": out, "report": report,
            "sample": sample, "labels": labels, "reference": reference, "int8_io": int8_io}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """{family: its bundle}, every family's: the fresh-process check loads them all at once."""
    return {family: make_bundle(family, tmp_path_factory) for family in FAMILIES}


@pytest.fixture(scope="module", params=list(FAMILIES))
def bundle(request, bundles):
    return bundles[request.param]


def test_fitted_heads_are_confident_over_every_class(bundle):
    """The premise of the quantisation bounds below."""
    # Measured top-1 p (min / median / max): deep 0.42 / 0.68 / 0.93, lrn 0.30 / 0.71 /
    # 0.96, bn 0.40 / 0.64 / 0.94, fms 0.32 / 0.68 / 0.95 (uniform is 0.2).
    top = bundle["reference"].max(-1)
    assert top.min() > 0.25 and np.median(top) > 0.5 and top.max() < 0.99
    assert np.bincount(bundle["reference"].argmax(-1), minlength=len(CLASSES)).min() >= 2


def raw_ops(path):
    """Op name and operand types of each op, without delegates."""
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter._get_ops_details()


@pytest.mark.parametrize("mode", MODES)
def test_preprocessing_affine_is_preprocess_input(mode):
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    mean = [120.0, 115.0, 100.0] if mode == "mean_image" else None
    matrix, offset = preprocessing_affine(mode, mean)
    np.testing.assert_allclose(x @ matrix + offset, preprocess_input(x, mode=mode, mean=mean),
                               rtol=0, atol=1e-4)


def test_an_average_image_is_not_a_1x1_conv():
    with pytest.raises(ValueError, match=r"Expected `mean` of shape \(3,\).*mean_pixel"):
        preprocessing_affine("mean_image", np.zeros((4, 4, 3)))


def test_bundle_holds_every_file_and_a_report(bundle):
    out, report = bundle["out"], bundle["report"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["saved_model", "labels.txt", "export_report.json", *TFLITE_FILES.values()])
    assert (out / "labels.txt").read_text().split("\n")[:-1] == CLASSES
    assert json.loads((out / "export_report.json").read_text()) == report
    assert [r["file"] for r in report["exports"]] == ["saved_model", *TFLITE_FILES.values()]
    keras_top1 = bundle["reference"].argmax(-1)
    assert report["keras"]["accuracy_with_ci"] == accuracy_of(bundle["labels"],
                                                              keras_top1).to_json()
    for row in report["exports"]:
        assert row["size_bytes"] > 0 and row["latency_ms"] > 0
    assert not list(out.parent.glob(".bundle.*"))  # no temporary folders left


FRESH_SAVED_MODEL = """
import sys, numpy as np, tensorflow as tf
for folder in sys.argv[1:]:
    model = tf.saved_model.load(folder + "/bundle/saved_model")
    images = np.load(folder + "/sample.npy")
    out = model.signatures["serving_default"](tf.constant(images))
    encoded = np.load(folder + "/encoded.npy", allow_pickle=True)
    from_bytes = model.signatures["serving_bytes"](tf.constant(list(encoded)))
    # The same images twice the size: the signature resizes them back.
    bigger = tf.cast(tf.image.resize(images, [2 * images.shape[1]] * 2, "nearest"), tf.uint8)
    resized = model.signatures["serving_default"](bigger)
    np.save(folder + "/probabilities.npy", out["probabilities"].numpy())
    np.save(folder + "/from_bytes.npy", from_bytes["probabilities"].numpy())
    np.save(folder + "/resized.npy", resized["probabilities"].numpy())
    np.save(folder + "/top.npy", out["top_classes"].numpy().astype(str))
assert "keras_vgg" not in sys.modules
"""


@pytest.fixture(scope="module")
def fresh_saved_models(bundles):
    """One fresh process (TensorFlow without keras_vgg) runs every family's SavedModel; each
    family's folder (its bundle's parent) gets what that process computed."""
    import tensorflow as tf

    folders = []
    for family in bundles.values():
        folder = family["out"].parent
        np.save(folder / "sample.npy", family["sample"])
        encoded = np.array([tf.io.encode_png(image).numpy() for image in family["sample"]],
                           dtype=object)
        np.save(folder / "encoded.npy", encoded, allow_pickle=True)
        folders.append(str(folder))
    subprocess.run([sys.executable, "-c", FRESH_SAVED_MODEL, *folders], check=True,
                   cwd=folders[0], timeout=CHILD_TIMEOUT_S)
    return {family: bundle["out"].parent for family, bundle in bundles.items()}


def test_saved_model_in_a_fresh_process_without_keras_vgg(bundle, fresh_saved_models):
    folder = fresh_saved_models[bundle["family"]]
    reference = bundle["reference"]
    probabilities = np.load(folder / "probabilities.npy")
    # The export's own SavedModel tolerance: that process loads TensorFlow without keras_vgg,
    # so with TensorFlow's own kernel choice (Eigen here, where keras_vgg picks oneDNN), and
    # BN's rounding differs by up to 1.5e-5.
    tolerance = TOLERANCE["saved_model"]
    np.testing.assert_allclose(probabilities, reference, rtol=0, atol=tolerance)
    np.testing.assert_allclose(np.load(folder / "from_bytes.npy"), reference, rtol=0,
                               atol=tolerance)
    np.testing.assert_allclose(np.load(folder / "resized.npy"), reference, rtol=0,
                               atol=tolerance)
    top = np.load(folder / "top.npy")
    assert top.shape == (len(reference), len(CLASSES))
    assert list(top[:, 0]) == [CLASSES[i] for i in reference.argmax(-1)]


# Quantised files against Keras on the 20 shape images: (largest max |diff| of the
# probabilities, smallest top-1 agreement). Measured (TF 2.21, x86 CPU), dynamic / int8
# (the converter's; deep and bn int8 now come from the LiteRT Quantizer, lrn and fms int8
# from the converter, which keeps their LOG and EXP int8):
#   deep 0.012, 100% / 0.033, 100%     lrn 0.021, 95% / 0.030, 95%
#   bn   0.183,  90% / 0.125,  95%     fms 0.0091, 100% / 0.016, 100%
# The BN net moves most: its random moving statistics leave small, collinear features, so
# its fitted head has large weights. The bounds are about twice the measured differences.
QUANTISED_BOUNDS = {
    # int8 from the LiteRT Quantizer (static_wi8_ai8): measured 0.24 / 90% (the converter's
    # was 0.033 / 100%; its head's logits lose most: 22 dB SNR against 33 dB before it).
    # Kept for the quantizer because on the main job's model (benchmarks/quantizers.py) its
    # int8 file agrees on 99.81% of 1,050 real test images (converter 100%) and the accuracy
    # difference, +0.19 points [-0.25, +0.70], is not significant (docs/export.md).
    "deep": {"dynamic": (0.03, 0.9), "int8": (0.35, 0.85)},
    "lrn": {"dynamic": (0.05, 0.85), "int8": (0.06, 0.85)},
    "bn": {"dynamic": (0.35, 0.8), "int8": (0.25, 0.85)},
    # int8 with the LRN in int8 builtins (MUL, CONV_2D, LOG, EXP): measured 0.016 / 100%
    "fms": {"dynamic": (0.02, 0.9), "int8": (0.04, 0.9)},
}


def run_quantised_by_hand(path, images):
    """An integer-io TFLite file on uint8 images: quantised in, dequantised out, here."""
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (given,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero = given["quantization"]
    info = np.iinfo(given["dtype"])
    results = []
    for image in images:
        x = np.clip(np.round(image / scale + zero), info.min, info.max).astype(given["dtype"])
        interpreter.set_tensor(given["index"], x[None])
        interpreter.invoke()
        out_scale, out_zero = out["quantization"]
        results.append((interpreter.get_tensor(out["index"])[0].astype("float32") - out_zero)
                       * out_scale)
    return np.stack(results)


# float32: measured 1.6e-6 at most, but 2.7e-5 for the BN net (its large head weights).
@pytest.mark.parametrize("quantize, atol", [("none", 5e-5), ("float16", 1e-2),
                                            ("dynamic", None), ("int8", None)])
def test_each_tflite_mode_runs_in_litert(bundle, quantize, atol):
    path = bundle["out"] / TFLITE_FILES[quantize]
    runner = TFLiteRunner(path)
    outputs = runner(bundle["sample"])
    reference = bundle["reference"]
    assert outputs.shape == reference.shape and np.all(np.isfinite(outputs))
    np.testing.assert_allclose(outputs.sum(-1), 1, atol=0.05)  # still probabilities
    diff = np.abs(outputs - reference).max()
    agreement = np.mean(outputs.argmax(-1) == reference.argmax(-1))
    if atol is not None:
        assert diff <= atol
    else:
        max_diff, min_agreement = QUANTISED_BOUNDS[bundle["family"]][quantize]
        assert diff <= max_diff and agreement >= min_agreement, (diff, agreement)
    row = next(r for r in bundle["report"]["exports"] if r["quantize"] == quantize)
    assert row["checked_on"] == "real images"
    assert row["max_abs_diff"] == pytest.approx(diff, abs=1e-5)
    assert row["top1_agreement"] == agreement
    assert row["changed"] == np.sum(outputs.argmax(-1) != reference.argmax(-1))
    assert row["accuracy"] == np.mean(outputs.argmax(-1) == bundle["labels"])
    # Keras first: the difference is the file's drop, on the same 20 images.
    assert row["paired_difference"] == paired_difference(
        bundle["labels"], reference.argmax(-1), outputs.argmax(-1)).to_json()
    # The default gate: 80% top-1 agreement for dynamic and int8 (measured 90-100% here).
    assert row["agreement_gate"] == ({"min_agreement": 0.8, "rule": "default",
                                      "result": "passed"} if atol is None else
                                     {"min_agreement": None, "rule": "max |diff|",
                                      "result": None})
    assert tflite_labels(path.read_bytes()) == CLASSES
    io = np.dtype(bundle["int8_io"]) if quantize == "int8" else np.float32
    assert runner.input["dtype"] == io and runner.output["dtype"] == io
    assert tuple(runner.input["shape"]) == (1, *bundle["sample"].shape[1:])
    if quantize == "int8":  # int8_io="int8" for the deep net, "uint8" for the others
        np.testing.assert_allclose(run_quantised_by_hand(path, bundle["sample"]), outputs,
                                   rtol=0, atol=1e-6)


def test_tflite_files_use_builtin_ops_only(bundle):
    for quantize, name in TFLITE_FILES.items():
        ops = tflite_ops((bundle["out"] / name).read_bytes())
        assert "CUSTOM" not in ops and not [op for op in ops if op.startswith("Flex")], ops
        assert set(ops) >= {"CONV_2D", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
        # LRN is written with builtins (keras_vgg.layers): never TFLite's float-only LRN op
        assert "LOCAL_RESPONSE_NORMALIZATION" not in ops, (quantize, ops)
        if bundle["family"] in ("lrn", "fms"):
            assert {"LOG", "EXP"} <= set(ops), (quantize, ops)


def test_int8_is_integer_end_to_end(bundle):
    """No float island: every op but the io QUANTIZEs takes int8 (the LRN included)."""
    ops = raw_ops(bundle["out"] / TFLITE_FILES["int8"])
    names = [op["op_name"] for op in ops]
    assert "DEQUANTIZE" not in names and "LOCAL_RESPONSE_NORMALIZATION" not in names
    # uint8 <-> int8 QUANTIZEs at the input and the output; none for int8_io="int8"
    assert names.count("QUANTIZE") == 2 * (bundle["int8_io"] == "uint8")
    inner = [op for op in ops if op["op_name"] != "QUANTIZE"]
    assert inner and all(op["operand_types"][0] == np.int8 for op in inner), [
        (op["op_name"], op["operand_types"][0]) for op in inner]
    if bundle["family"] in ("lrn", "fms"):
        assert {"LOG", "EXP"} <= set(names)


@pytest.mark.parametrize("quantize, ratio", [("float16", 0.5), ("dynamic", 0.25), ("int8", 0.25)])
def test_size_ratios_against_float32(bundle, quantize, ratio):
    sizes = {r["quantize"]: r["size_bytes"] for r in bundle["report"]["exports"]}
    assert sizes[quantize] / sizes["none"] == pytest.approx(ratio, rel=0.10)
    row = next(r for r in bundle["report"]["exports"] if r["quantize"] == quantize)
    assert row["size_vs_float32"] == sizes[quantize] / sizes["none"]


# -- the agreement gate: a bad int8 file is refused by default ------------------------------


def tree(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_int8_calibrated_on_other_images_is_refused_and_nothing_is_written(tmp_path):
    """A realistic mistake: calibration images scaled to 0-1 (as a Rescaling(1/255) pipeline
    gives them), which export reads as uint8 pixels 0 and 1, nearly black. On the fitted
    VGG11, whose answers are spread over every class, the int8 file then agrees with Keras
    on 10 of 20 (measured at f7b861b, where the int8 input reads raw pixels at scale 1
    whatever the calibration; 3 of 20 before, when it put every image in one class; the
    right calibration: 20 of 20)."""
    model, sample, labels, representative = fitted_classifier("deep")
    settings = dict(formats=["tflite"], quantize=["none", "int8"], preprocessing="caffe",
                    class_names=CLASSES, representative_data=representative / 255.0,
                    sample=sample, sample_labels=labels, int8_io="int8", overwrite=True,
                    latency_repeats=1, verbose=False)
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "model_int8.tflite").write_bytes(b"an older export")
    before = tree(out)
    with pytest.raises(ExportError) as info:
        export(model, out, **settings)
    assert str(info.value) == (
        "model_int8.tflite agrees with the Keras model's top-1 on 50.0% of the sample (10 of "
        "20 images changed answer; required 80.0%: the default min_agreement for dynamic and "
        "int8 files) and differs from it by 0.77 (more than 0.05: not near ties); nothing "
        "was written. An int8 file this far from its Keras model was usually calibrated on "
        "images unlike the sample: check `representative_data` (--representative-data). To "
        "write it anyway, pass a lower `min_agreement` (--min-agreement), or 0 to turn the "
        "gate off.")
    # The float32 file was written and checked first, in a hidden folder that is gone.
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]

    report = export(model, out, **settings, min_agreement=0)  # the gate turned off
    rows = {r["quantize"]: r for r in report["exports"]}
    assert rows["int8"]["agreement_gate"] == {"min_agreement": None, "rule": "off",
                                              "result": None}
    assert (rows["int8"]["top1_agreement"], rows["int8"]["changed"]) == (0.5, 10)
    assert rows["int8"]["paired_difference"]["changed"] == 10
    assert rows["int8"]["paired_difference"]["second"]["correct"] == 11  # measured
    assert rows["none"]["top1_agreement"] == 1.0
    assert sorted(tree(out)) == ["export_report.json", "labels.txt", "model_float32.tflite",
                                 "model_int8.tflite"]


# -- mixed precision ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_model():
    """A VGG11 classifier built under mixed_bfloat16 (float32 variables, bfloat16 compute),
    its head fitted to shapes, and the same network built in float32 with its weights."""
    from keras_vgg.precision import training_scope

    with training_scope(True):  # mixed_bfloat16 on CPU
        mixed = small_classifier("vgg11", 32)
        assert mixed.layers[1].layers[1].compute_dtype == "bfloat16"
        images, labels = shapes(20, 32, seed=3)
        fit_head(mixed, images, labels, "caffe")
    float32 = small_classifier("vgg11", 32)
    float32.set_weights(mixed.get_weights())
    sample = shapes(10, 32, seed=4)[0]
    return mixed, float32.predict(preprocess_input(sample, mode="caffe"), verbose=0), sample


@pytest.mark.parametrize("policy", ["active", "reset"])
def test_mixed_precision_model_exports_as_float32(mixed_model, policy, tmp_path):
    """With the policy active (a recipe's end-of-run export), and after it is reset
    (`keras-vgg export RUN` on a --mixed-precision run: the layers keep their policy)."""
    from keras_vgg.cli import main
    from keras_vgg.export import SavedModelRunner

    mixed, reference, sample = mixed_model
    out = tmp_path / "bundle"
    if policy == "active":
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            export(mixed, out, ["saved_model", "tflite"], ["none", "dynamic"],
                   preprocessing="caffe", class_names=CLASSES, latency_repeats=1,
                   verbose=False)
            assert keras.config.dtype_policy().name == "mixed_bfloat16"  # left as it was
        finally:
            keras.config.set_dtype_policy("float32")
    else:
        run = tmp_path / "run"
        run.mkdir()
        mixed.save(run / "best.keras")
        (run / "metrics.json").write_text(json.dumps(
            {"final": {"preprocessing": "caffe", "class_names": CLASSES}}))
        assert main(["export", str(run), "--format", "saved_model", "tflite",
                     "--quantize", "none", "dynamic", "-o", str(out)]) == 0
        assert keras.config.dtype_policy().name == "float32"
    assert mixed.layers[1].layers[1].compute_dtype == "bfloat16"  # the model is not changed
    outputs = {"saved_model": SavedModelRunner(out / "saved_model")(sample),
               "none": TFLiteRunner(out / TFLITE_FILES["none"])(sample),
               "dynamic": TFLiteRunner(out / TFLITE_FILES["dynamic"])(sample)}
    # Against the float32 network: measured 0 (SavedModel), 1.3e-6 (float32) and 0.022-0.03
    # (dynamic int8 weights). A dynamic file may flip a near tie (CI once saw 0.49 vs 0.48),
    # so top-1 must agree wherever the float32 margin is wider than twice the allowed error.
    np.testing.assert_allclose(outputs["saved_model"], reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(outputs["none"], reference, rtol=0, atol=1e-5)
    assert np.abs(outputs["dynamic"] - reference).max() <= 0.05
    top2 = np.sort(reference, axis=-1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.1
    assert clear.sum() >= len(reference) // 2, top2
    assert np.array_equal(outputs["dynamic"].argmax(-1)[clear], reference.argmax(-1)[clear])
    for ops in (tflite_ops((out / TFLITE_FILES[q]).read_bytes()) for q in ("none", "dynamic")):
        assert "CUSTOM" not in ops and not [op for op in ops if op.startswith("Flex")], ops


# -- the fine-tuned model of the README's main command ----------------------------------------


@pytest.mark.slow
def test_fine_tuned_builtin_model_exports_with_int8_agreement(builtin_run, tmp_path, capsys):
    """The closing note's command: every format of the built-in recipe's model."""
    from keras_vgg.cli import main

    run, _ = builtin_run
    out = tmp_path / "exported"
    assert main(["export", str(run), "--format", "saved_model", "tflite", "--quantize",
                 "none", "float16", "dynamic", "int8", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "export_report.json").read_text())
    # The run's whole test split (export_arrays' cap is 2,000).
    assert report["sample"] == {"images": 1050, "source": "given", "labels": True}
    rows = {r["file"]: r for r in report["exports"]}
    assert rows["saved_model"]["max_abs_diff"] <= 1e-5
    assert rows["model_float32.tflite"]["max_abs_diff"] <= 1e-5
    assert rows["model_float16.tflite"]["max_abs_diff"] <= 1e-2
    assert rows["model_int8.tflite"]["top1_agreement"] >= 0.95
    assert rows["model_dynamic.tflite"]["top1_agreement"] >= 0.95
    for name in ("model_dynamic.tflite", "model_int8.tflite"):  # the default gate, on
        assert rows[name]["agreement_gate"] == {"min_agreement": 0.8, "rule": "default",
                                                "result": "passed"}
        paired = rows[name]["paired_difference"]
        assert paired["count"] == report["sample"]["images"]
        assert paired["changed"] == rows[name]["changed"]
        assert paired["first"] == report["keras"]["accuracy_with_ci"]
        # the row's accuracy unrounded, the record's to 6 places: the same count of images
        assert paired["second"]["correct"] == round(rows[name]["accuracy"] * paired["count"])
    # The int8 file loses at most 1 point, by the interval of its paired drop (measured: 0 of
    # 1,000 answers changed, 95% CI -0.4 to +0.4 points, on the first 1,000 test images).
    assert rows["model_int8.tflite"]["paired_difference"]["ci95"][1] <= 0.01
    keras_scored = report["keras"]["accuracy_with_ci"]
    test = json.loads((run / "metrics.json").read_text())["final"]["test"]
    # The report scores metrics.json's test images with the float32 model, the run in what
    # `auto` gives (bfloat16 here; tests/test_precision.py: 0 of 1,050 answers differ).
    assert (keras_scored["count"], keras_scored["correct"]) == (test["count"], test["correct"])
    for name in rows:
        assert name in printed
    assert "top-1 agree" in printed
    assert "model_int8.tflite drop vs Keras: " in printed


def test_recipe_exports_at_its_end(tmp_path):
    from keras_vgg.finetune import finetune, load_recipe

    recipe = load_recipe("builtin", [
        "data.builtin_images_per_class=6", 'phases=[{"freeze": "all", "epochs": 1, "lr": 0.001}]',
        "tensorboard=false", "export.formats=tflite", "export.quantize=none,int8"])
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    out = tmp_path / "run" / "export"
    assert sorted(p.name for p in out.iterdir()) == [
        "export_report.json", "labels.txt", "model_float32.tflite", "model_int8.tflite"]
    report = result.export_report
    assert [r["quantize"] for r in report["exports"]] == ["none", "int8"]
    # One epoch on 6 images per class leaves near-uniform outputs, on which even a wrong
    # int8 file agrees (measured: calibrated on black images, 10 of 10 and max |diff| 0.007;
    # the right one 8 of 10 and 0.002), so its figures are not checked here, only that the
    # recipe's export runs the default gate: the int8 checks that can fail are above, on
    # fitted heads (test_each_tflite_mode_runs_in_litert, the refusal test).
    int8 = report["exports"][1]
    assert (int8["agreement_gate"]["min_agreement"], int8["agreement_gate"]["rule"]) == (
        0.8, "default")
    assert int8["paired_difference"]["count"] == report["sample"]["images"]
    held_out = sum(map(sum, result.metrics["confusion_matrix"]))  # the validation split
    assert report["sample"] == {"images": held_out, "source": "given", "labels": True}
    assert report["keras"]["accuracy"] == pytest.approx(
        result.metrics["final"]["val_accuracy"], abs=1e-4)
    assert tflite_labels((out / "model_int8.tflite").read_bytes()) == [
        "circle", "cross", "square", "stripes", "triangle"]
