"""Exports of every family, checked against an independent Keras reference.

One bundle per family (a deep net, an LRN net, a BN net, an F/M/S net) at small input:
SavedModel + TFLite float32/float16/dynamic/int8. The reference is the Keras model on
``keras_vgg.preprocess_input`` (not the export's 1x1-conv preprocessing), so the
preprocessing inside the exports is checked too.
"""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import keras_vgg
from keras_vgg.export import (
    TFLITE_FILES,
    TFLiteRunner,
    export,
    preprocessing_affine,
    tflite_labels,
    tflite_ops,
)
from keras_vgg.preprocessing import MODES, preprocess_input

FAMILIES = {  # family: (variant, input size, preprocessing mode)
    "deep": ("vgg11", 32, "caffe"),
    "lrn": ("vgg11_lrn", 32, "torch"),
    "bn": ("vgg11_bn", 32, "tf"),
    "fms": ("vggs", 48, "caffe"),
}
CLASSES = ["a", "b", "c", "d", "e"]


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


@pytest.fixture(scope="module", params=list(FAMILIES))
def bundle(request, tmp_path_factory):
    variant, size, mode = FAMILIES[request.param]
    model = small_classifier(variant, size)
    rng = np.random.default_rng(0)
    sample = rng.integers(0, 256, (12, size, size, 3), dtype=np.uint8)
    representative = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    out = tmp_path_factory.mktemp(request.param) / "bundle"
    report = export(model, out, ["saved_model", "tflite"], list(TFLITE_FILES),
                    preprocessing=mode, class_names=CLASSES, sample=sample,
                    representative_data=representative, verbose=False)
    reference = model.predict(preprocess_input(sample, mode=mode), verbose=0)
    keras.backend.clear_session()
    return {"family": request.param, "variant": variant, "out": out, "report": report,
            "sample": sample, "reference": reference}


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
    for row in report["exports"]:
        assert row["size_bytes"] > 0 and row["latency_ms"] > 0
    assert not list(out.parent.glob(".bundle.*"))  # no temporary folders left


def test_saved_model_in_a_fresh_process_without_keras_vgg(bundle, tmp_path):
    import tensorflow as tf

    sample = bundle["sample"]
    np.save(tmp_path / "sample.npy", sample)
    encoded = np.array([tf.io.encode_png(image).numpy() for image in sample], dtype=object)
    np.save(tmp_path / "encoded.npy", encoded, allow_pickle=True)
    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        model = tf.saved_model.load({str(bundle["out"] / "saved_model")!r})
        images = np.load({str(tmp_path / "sample.npy")!r})
        out = model.signatures["serving_default"](tf.constant(images))
        encoded = np.load({str(tmp_path / "encoded.npy")!r}, allow_pickle=True)
        from_bytes = model.signatures["serving_bytes"](tf.constant(list(encoded)))
        # The same images twice the size: the signature resizes them back.
        bigger = tf.cast(tf.image.resize(images, [2 * images.shape[1]] * 2, "nearest"), tf.uint8)
        resized = model.signatures["serving_default"](bigger)
        np.save({str(tmp_path / "probabilities.npy")!r}, out["probabilities"].numpy())
        np.save({str(tmp_path / "from_bytes.npy")!r}, from_bytes["probabilities"].numpy())
        np.save({str(tmp_path / "resized.npy")!r}, resized["probabilities"].numpy())
        np.save({str(tmp_path / "top.npy")!r}, out["top_classes"].numpy().astype(str))
        assert "keras_vgg" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    reference = bundle["reference"]
    probabilities = np.load(tmp_path / "probabilities.npy")
    np.testing.assert_allclose(probabilities, reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "from_bytes.npy"), reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "resized.npy"), reference, rtol=0, atol=1e-5)
    top = np.load(tmp_path / "top.npy")
    assert top.shape == (len(reference), len(CLASSES))
    assert list(top[:, 0]) == [CLASSES[i] for i in reference.argmax(-1)]


@pytest.mark.parametrize("quantize, atol", [("none", 1e-5), ("float16", 1e-2),
                                            ("dynamic", None), ("int8", None)])
def test_each_tflite_mode_runs_in_litert(bundle, quantize, atol):
    path = bundle["out"] / TFLITE_FILES[quantize]
    runner = TFLiteRunner(path)
    outputs = runner(bundle["sample"])
    reference = bundle["reference"]
    assert outputs.shape == reference.shape and np.all(np.isfinite(outputs))
    np.testing.assert_allclose(outputs.sum(-1), 1, atol=0.05)  # still probabilities
    if atol is not None:
        np.testing.assert_allclose(outputs, reference, rtol=0, atol=atol)
    row = next(r for r in bundle["report"]["exports"] if r["quantize"] == quantize)
    assert row["max_abs_diff"] == pytest.approx(np.abs(outputs - reference).max(), abs=1e-5)
    assert tflite_labels(path.read_bytes()) == CLASSES
    expected_input = np.uint8 if quantize == "int8" else np.float32
    assert runner.input["dtype"] == expected_input
    assert tuple(runner.input["shape"]) == (1, *bundle["sample"].shape[1:])


def test_tflite_files_use_builtin_ops_only(bundle):
    for quantize, name in TFLITE_FILES.items():
        ops = tflite_ops((bundle["out"] / name).read_bytes())
        assert "CUSTOM" not in ops and not [op for op in ops if op.startswith("Flex")], ops
        assert set(ops) >= {"CONV_2D", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
        has_lrn = bundle["family"] in ("lrn", "fms")
        assert ("LOCAL_RESPONSE_NORMALIZATION" in ops) == has_lrn, (quantize, ops)


def test_int8_is_integer_except_the_lrn_float_island(bundle):
    ops = raw_ops(bundle["out"] / TFLITE_FILES["int8"])
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert convs and all(op["operand_types"][0] == np.int8 for op in convs)
    lrn = [op for op in ops if op["op_name"] == "LOCAL_RESPONSE_NORMALIZATION"]
    assert all(op["operand_types"][0] == np.float32 for op in lrn)  # float-only kernel
    counts = tflite_ops((bundle["out"] / TFLITE_FILES["int8"]).read_bytes())
    # uint8 <-> int8 QUANTIZEs at the input and the output; each LRN adds a DEQUANTIZE
    # before it and a QUANTIZE after it.
    assert counts.get("DEQUANTIZE", 0) == len(lrn)
    assert counts["QUANTIZE"] == 2 + len(lrn)


@pytest.mark.parametrize("quantize, ratio", [("float16", 0.5), ("dynamic", 0.25), ("int8", 0.25)])
def test_size_ratios_against_float32(bundle, quantize, ratio):
    sizes = {r["quantize"]: r["size_bytes"] for r in bundle["report"]["exports"]}
    assert sizes[quantize] / sizes["none"] == pytest.approx(ratio, rel=0.10)
    row = next(r for r in bundle["report"]["exports"] if r["quantize"] == quantize)
    assert row["size_vs_float32"] == sizes[quantize] / sizes["none"]


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
    assert report["sample"] == {"images": 120, "source": "given", "labels": True}
    rows = {r["file"]: r for r in report["exports"]}
    assert rows["saved_model"]["max_abs_diff"] <= 1e-5
    assert rows["model_float32.tflite"]["max_abs_diff"] <= 1e-5
    assert rows["model_float16.tflite"]["max_abs_diff"] <= 1e-2
    assert rows["model_int8.tflite"]["top1_agreement"] >= 0.95
    assert rows["model_dynamic.tflite"]["top1_agreement"] >= 0.95
    keras_accuracy = report["keras"]["accuracy"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert keras_accuracy == pytest.approx(metrics["final"]["val_accuracy"], abs=1e-4)
    assert abs(rows["model_int8.tflite"]["accuracy"] - keras_accuracy) <= 0.05
    for name in rows:
        assert name in printed
    assert "top-1 agree" in printed


def test_recipe_exports_at_its_end(tmp_path):
    from keras_vgg.recipes import finetune, load_recipe

    recipe = load_recipe("builtin", [
        "builtin_images_per_class=6", "phase1_epochs=1", "phase2_epochs=0",
        "tensorboard=false", "export_formats=tflite", "export_quantize=none,int8"])
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    out = tmp_path / "run" / "export"
    assert sorted(p.name for p in out.iterdir()) == [
        "export_report.json", "labels.txt", "model_float32.tflite", "model_int8.tflite"]
    report = result.export_report
    assert [r["quantize"] for r in report["exports"]] == ["none", "int8"]
    held_out = sum(map(sum, result.metrics["confusion_matrix"]))  # the validation split
    assert report["sample"] == {"images": held_out, "source": "given", "labels": True}
    assert report["keras"]["accuracy"] == pytest.approx(
        result.metrics["final"]["val_accuracy"], abs=1e-4)
    assert tflite_labels((out / "model_int8.tflite").read_bytes()) == [
        "circle", "cross", "square", "stripes", "triangle"]
