"""Precision: ``auto`` detected from the hardware (simulated here), bfloat16 copies that keep
float32 weights and a float32 classifier, and the places that run a forward pass using it."""

import json

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg import precision as precision_lib
from keras_vgg.precision import (
    Detected,
    detect_precision,
    precision_of,
    precision_scope,
    resolve_precision,
    with_precision,
)

SIZE = (32, 32, 3)


def machine(monkeypatch, flags=(), gpu=None):
    """Simulates a CPU with ``flags`` and, with ``gpu``, a GPU of that compute capability."""
    monkeypatch.delenv(precision_lib.ENVIRONMENT, raising=False)
    monkeypatch.setattr(precision_lib, "cpu_flags", lambda: set(flags))
    monkeypatch.setattr(precision_lib, "gpu_capability", lambda: gpu)


@pytest.mark.parametrize("flags, gpu, expected", [
    ({"avx512f", "avx512_vnni"}, None, "float32"),  # AVX-512 without BF16: float32
    ({"avx512f", "avx512_bf16"}, None, "bfloat16"),
    ({"amx_tile", "amx_bf16"}, None, "bfloat16"),
    ((), (9, 0), "bfloat16"),  # an H100/H200
    ((), (7, 5), "float16"),  # a T4: float16 tensor cores only
    ((), (6, 1), "float32"),
])
def test_auto_follows_the_hardware(monkeypatch, flags, gpu, expected):
    machine(monkeypatch, flags, gpu)
    detected = detect_precision()
    assert isinstance(detected, Detected) and detected.precision == expected
    assert resolve_precision("auto") == expected
    assert detected.reason in str(detected)


@pytest.mark.parametrize("backend, predicting, training", [
    ("tensorflow", "bfloat16", "bfloat16"),
    ("torch", "bfloat16", "float32"),  # VGG16 2.4x, but a mixed-bfloat16 epoch 0.7x
    ("jax", "float32", "float32"),  # XLA's CPU kernels: bfloat16 no faster
])
def test_auto_on_a_bf16_cpu_follows_what_each_backend_measured(monkeypatch, backend, predicting,
                                                                training):
    machine(monkeypatch, {"amx_bf16"})
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    assert detect_precision().precision == predicting
    assert detect_precision(training=True).precision == training
    if training == "float32":
        assert f"bfloat16 trains no faster than float32 under the {backend} backend" in str(
            detect_precision(training=True))


def test_auto_falls_back_to_float32_without_bf16_and_is_forced_by_the_environment(monkeypatch):
    machine(monkeypatch, {"avx2", "avx512f"})
    assert str(detect_precision()) == "float32 (CPU without AMX or AVX512-BF16)"
    model = keras_vgg.VGG11(include_top=False, input_shape=SIZE, precision="auto")
    assert model.get_layer("block1_conv1").compute_dtype == "float32"
    machine(monkeypatch, {"amx_bf16"})
    monkeypatch.setenv("KERAS_VGG_PRECISION", "float32")
    assert str(detect_precision()) == "float32 (KERAS_VGG_PRECISION=float32)"
    monkeypatch.setenv("KERAS_VGG_PRECISION", "fast")
    with pytest.raises(ValueError, match=r"Expected KERAS_VGG_PRECISION to be one of "
                       r"\['bfloat16', 'float16', 'float32'\]. Received: "
                       r"KERAS_VGG_PRECISION='fast'"):
        detect_precision()


def test_a_bad_precision_names_the_argument():
    with pytest.raises(ValueError, match=r"Expected `precision` to be one of \['auto', "
                       r"'float32', 'bfloat16', 'float16'\]. Received: precision='bf16'"):
        keras_vgg.VGG11(include_top=False, input_shape=SIZE, precision="bf16")
    with pytest.raises(ValueError, match="Received: precision='half'"):
        with_precision(keras_vgg.VGG11(include_top=False, input_shape=SIZE), "half")


def test_a_bfloat16_copy_keeps_float32_weights_a_float32_classifier_and_the_record():
    model = keras_vgg.build_vgg("vgg11_bn", input_shape=SIZE, classes=10, adaptive_pool=1)
    model.preprocessing, model.class_names = "caffe", [str(i) for i in range(10)]
    fast = with_precision(model, "bfloat16")
    assert fast is not model and precision_of(model) == "float32"  # the model is not changed
    assert precision_of(fast) == "bfloat16"
    assert fast.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert fast.get_layer("block1_conv1_bn").compute_dtype == "bfloat16"
    assert fast.get_layer("predictions").compute_dtype == "float32"
    assert {w.dtype for w in fast.weights} == {"float32"}
    assert fast.preprocessing.mode == "caffe" and fast.class_names == model.class_names
    x = np.random.default_rng(0).uniform(-100, 100, (8, *SIZE)).astype("float32")
    reference, out = model.predict(x, verbose=0), fast.predict(x, verbose=0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    assert np.abs(out - reference).max() < 5e-3  # measured 1e-3
    assert with_precision(fast, "bfloat16") is fast
    back = with_precision(fast, "float32")
    assert precision_of(back) == "float32"
    np.testing.assert_allclose(back.predict(x, verbose=0), reference, rtol=0, atol=1e-6)


def test_an_inference_copy_holds_its_weights_in_bfloat16_and_lrn_runs_there():
    """inference=True (predict, the feature cache, the SavedModel): no per-call weight casts.
    LRN has no bfloat16 CPU kernel in TensorFlow: the layer runs it in float32 inside."""
    model = keras_vgg.VGGM(input_shape=(64, 64, 3), classes=10, adaptive_pool=1)
    fast = with_precision(model, "bfloat16", inference=True)
    conv = fast.get_layer("block1_conv1")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "bfloat16"
    assert fast.get_layer("predictions").kernel.dtype == "float32"
    assert fast.get_layer("block1_lrn").compute_dtype == "bfloat16"
    x = np.random.default_rng(3).uniform(-100, 100, (4, 64, 64, 3)).astype("float32")
    out = fast.predict(x, verbose=0)
    assert out.dtype == np.float32
    assert np.abs(out - model.predict(x, verbose=0)).max() < 1e-2


def test_a_fine_tuned_models_nested_head_keeps_a_float32_classifier():
    from keras_vgg.finetune.config import load_recipe
    from keras_vgg.finetune.model import build_finetune_model

    model = build_finetune_model(load_recipe("builtin", ["data.builtin_images_per_class=6"]), 5)
    fast = with_precision(model, "bfloat16")
    assert fast.get_layer("base").get_layer("block1_conv1").compute_dtype == "bfloat16"
    head = fast.get_layer("head")
    assert head.get_layer("predictions").compute_dtype == "float32"


def test_build_vgg_and_feature_extractor_take_a_precision(tmp_path):
    model = keras_vgg.VGG11(input_shape=SIZE, classes=10, adaptive_pool=1, precision="bfloat16")
    assert model.get_layer("block5_conv2").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy comes back
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("block5_conv2").compute_dtype == "bfloat16"
    assert {w.dtype for w in loaded.weights} == {"float32"}  # saved in float32
    extractor = keras_vgg.feature_extractor(keras_vgg.VGG11(include_top=False, input_shape=SIZE),
                                            layers=["block2_conv1", "block3_pool"],
                                            precision="bfloat16")
    assert [o.dtype for o in extractor.outputs] == ["bfloat16", "float32"]  # conv, pool
    with precision_scope("bfloat16"):
        built = keras_vgg.VGG11(input_shape=SIZE, classes=10, adaptive_pool=1)
    assert built.get_layer("fc1").compute_dtype == "bfloat16"
    assert built.get_layer("predictions").compute_dtype == "float32"


@pytest.mark.slow
def test_bfloat16_agrees_with_float32_on_the_builtin_held_out_split(builtin_run):
    """The accuracy guard: the README's fine-tuned model, bfloat16 vs float32, on every
    image of its test split, paired."""
    from keras_vgg.finetune import data as data_lib
    from keras_vgg.finetune.recipe import Recipe
    from keras_vgg.stats import paired_difference

    run, _ = builtin_run
    recipe = Recipe.from_dict(json.loads((run / "recipe.json").read_text()))
    splits = data_lib.decode_once(data_lib.load_data(recipe))
    best = keras_vgg.load_model(run / "best.keras", compile=False)
    images = data_lib.eval_pipeline(splits.test, recipe, best.preprocessing)
    float32 = with_precision(best, "float32").predict(images, verbose=0).argmax(-1)
    bfloat16 = with_precision(best, "bfloat16").predict(images, verbose=0).argmax(-1)
    diff = paired_difference(splits.test_labels, float32, bfloat16)
    # measured: 0 of 1,050 images changed answer (+0.0 points, 95% CI -0.4 to +0.4)
    assert diff.count == 1050 and diff.changed <= 10, str(diff)  # agreement >= 99%
    assert diff.judge(0.01) == "met", diff.verdict(0.01)
    metrics = json.loads((run / "metrics.json").read_text())
    # the run scored its test split in what `auto` gives here: the same images right
    scored = diff.second if metrics["final"]["evaluated_in"] == "bfloat16" else diff.first
    assert metrics["final"]["test"]["correct"] == scored.correct
    # mixed_precision: auto scores in what `auto` detects here (bfloat16 on a bf16 CPU)
    assert recipe.mixed_precision == "auto"
    assert metrics["final"]["evaluated_in"] == detect_precision().precision


@pytest.mark.slow
def test_a_runs_bfloat16_saved_model_agrees_on_its_held_out_split(builtin_run, tmp_path):
    from keras_vgg.cli import main

    run, _ = builtin_run
    out = tmp_path / "exported"
    assert main(["export", str(run), "--format", "saved_model", "--precision", "bfloat16",
                 "-o", str(out)]) == 0
    report = json.loads((out / "export_report.json").read_text())
    (row,) = report["exports"]
    assert report["sample"] == {"images": 1050, "source": "given", "labels": True}  # test split
    assert row["precision"] == "bfloat16" and row["checked_on"] == "real images"
    assert row["top1_agreement"] >= 0.99 and row["max_abs_diff"] <= 5e-2  # measured 100%
    assert report["machine"]["auto_precision"] == str(detect_precision())


def test_predict_in_each_precision_and_an_exported_file_keeps_its_own(tmp_path):
    from keras_vgg.export import export
    from keras_vgg.inference.predict import predict

    model = keras_vgg.VGG11(input_shape=SIZE, classes=3, adaptive_pool=1)
    model.preprocessing, model.class_names = "caffe", ["cat", "dog", "fox"]
    images = np.random.default_rng(1).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    exact = predict(model, images, top_k=3, precision="float32")
    fast = predict(model, images, top_k=3, precision="bfloat16")
    for a, b in zip(exact, fast):
        np.testing.assert_allclose(sorted(a.scores), sorted(b.scores), atol=5e-3)
    export(model, tmp_path / "bundle", ["tflite"], verbose=False)
    tflite = tmp_path / "bundle" / "model_float32.tflite"
    assert [p.classes for p in predict(tflite, images, top_k=3)] == [p.classes for p in exact]
    with pytest.raises(ValueError, match=r"Expected `precision` 'auto' \(--precision auto\) "
                       r"for an exported file: .*model_float32.tflite computes in the "
                       r"precision it was exported in. Received: precision='bfloat16'"):
        predict(tflite, images, precision="bfloat16")


def test_a_bfloat16_saved_model_is_checked_against_the_float32_model(tmp_path, capsys):
    from keras_vgg.export import SavedModelRunner, export

    model = keras_vgg.VGG11(input_shape=SIZE, classes=3, adaptive_pool=1)
    images = np.random.default_rng(2).integers(0, 256, (12, *SIZE), dtype=np.uint8)
    labels = np.arange(12) % 3
    report = export(model, tmp_path / "b", ["saved_model", "tflite"], preprocessing="caffe",
                    sample=images, sample_labels=labels, precision="bfloat16",
                    latency_repeats=1)
    rows = {r["file"]: r for r in report["exports"]}
    assert rows["saved_model"]["precision"] == "bfloat16"
    assert rows["model_float32.tflite"]["precision"] == "float32"
    assert rows["saved_model"]["max_abs_diff"] <= 5e-2  # the gate; measured ~1e-3
    assert rows["saved_model"]["max_abs_diff"] > 0  # it really computes in bfloat16
    assert rows["model_float32.tflite"]["max_abs_diff"] <= 1e-5
    assert "saved_model (bfloat16)" in capsys.readouterr().out
    outputs = SavedModelRunner(tmp_path / "b" / "saved_model")(images)
    assert outputs.dtype == np.float32 and outputs.shape == (12, 3)
    assert precision_of(model) == "float32"


def test_the_cli_takes_precision(tmp_path, capsys):
    from keras_vgg.cli import main

    with pytest.raises(SystemExit):
        main(["predict", "m.keras", "x.png", "--precision", "bf16"])
    assert "argument --precision: invalid choice: 'bf16'" in capsys.readouterr().err
    model = keras_vgg.VGG11(input_shape=SIZE, classes=3, adaptive_pool=1)
    model.preprocessing, model.class_names = "caffe", ["cat", "dog", "fox"]
    model.save(tmp_path / "m.keras")
    image = tmp_path / "x.png"
    keras.utils.save_img(image, np.zeros((32, 32, 3), dtype=np.uint8))
    assert main(["predict", str(tmp_path / "m.keras"), str(image), "--precision",
                 "bfloat16", "--top-k", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")


def test_a_recipe_trains_in_what_mixed_precision_says(monkeypatch):
    from keras_vgg.finetune.recipe import Recipe
    from keras_vgg.precision import training_precision
    from keras_vgg.finetune.phase import inference_precision

    assert Recipe().mixed_precision == "auto"
    assert Recipe(mixed_precision=True).validate().mixed_precision is True
    machine(monkeypatch, {"amx_bf16"})
    assert training_precision("auto") == "bfloat16" and training_precision("true") == "bfloat16"
    machine(monkeypatch, {"avx2"})
    assert training_precision("auto") == "float32" and training_precision("true") == "bfloat16"
    assert training_precision("false") == "float32"
    assert inference_precision(Recipe(mixed_precision=False).validate()) == "float32"
    assert inference_precision(Recipe()) == "auto"
    # a real boolean or 'auto': the strings "true"/"false" of keras-vgg 0.1 are refused
    for text in ("fast", "true", "false"):
        with pytest.raises(ValueError, match=r"^Expected `mixed_precision` to be true, false "
                           rf"or 'auto'. Received: mixed_precision='{text}'$"):
            Recipe(mixed_precision=text).validate()
