"""Issue 30: every path that predicts with a BN form folds its BatchNormalization into the
convs before casting (``keras_vgg.batch_norm.inference_model``): ``predict`` and the export
(the serving model), ``feature_extractor(..., inference=True)``, ``embed``, a run's feature
cache, its evaluation, its report and compress. The model each path runs has no
BatchNormalization; in float32 it computes what the unfolded model computes to 1e-4; the
user's model is left as it was."""

import numpy as np
import pytest

import keras
import keras_vgg
from keras_vgg.batch_norm import inference_model
from keras_vgg.embeddings import Embedder, embed
from keras_vgg.inference.predict import predict
from keras_vgg.export.serving import serving_model
from keras_vgg.features import feature_extractor
from keras_vgg.pixels import model_inputs
from keras_vgg.preprocessing import model_preprocessing
from test_batch_norm import norms, with_random_bn

TOLERANCE = 1e-4


def bn_model(top=False, **kwargs):
    """vgg11_bn at 32x32 with random statistics: a classifier (3 classes) or pooled base."""
    extra = dict(classes=3, adaptive_pool=1) if top else dict(pooling="avg")
    return with_random_bn(keras_vgg.build_vgg("vgg11_bn", include_top=top,
                                              input_shape=(32, 32, 3), **extra, **kwargs))


def pixels(n=3, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def run(model, x):
    """``model``'s float32 output(s) as NumPy (a list for a model of several outputs)."""
    out = model(x, training=False)
    cast = [keras.ops.convert_to_numpy(keras.ops.cast(o, "float32")) for o in keras.tree.flatten(out)]
    return cast if isinstance(out, (list, tuple)) else cast[0]


def snapshot(model):
    return [layer.name for layer in model.layers], [w.copy() for w in model.get_weights()]


def assert_unchanged(model, before):
    names, weights = snapshot(model)
    assert names == before[0]
    for now, then in zip(weights, before[1]):
        np.testing.assert_array_equal(now, then)


# -- the helper --------------------------------------------------------------------------


@pytest.mark.backend
@pytest.mark.parametrize("top", [False, True], ids=["headless", "top"])
def test_inference_model_folds_then_casts_and_leaves_the_model(top):
    model = bn_model(top)
    before = snapshot(model)
    x = pixels().astype("float32") / 255
    exact = inference_model(model, "float32")
    assert not norms(exact) and norms(model)
    np.testing.assert_allclose(run(exact, x), run(model, x), atol=TOLERANCE, rtol=TOLERANCE)
    fast = inference_model(model, "bfloat16")
    assert not norms(fast)
    conv = fast.get_layer("block1_conv1")
    assert (conv.compute_dtype, keras.backend.standardize_dtype(conv.kernel.dtype)) == \
        ("bfloat16", "bfloat16")
    assert fast.layers[-1].compute_dtype == "float32"  # the classifier (or pooled output)
    assert_unchanged(model, before)


@pytest.mark.backend
def test_inference_model_of_a_plain_form_is_the_cast_alone():
    plain = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3))
    assert inference_model(plain, "float32") is plain
    assert inference_model(plain, None) is plain
    fast = inference_model(plain, "bfloat16")
    assert [l.name for l in fast.layers] == [l.name for l in plain.layers]


def test_inference_model_names_a_bad_precision():
    with pytest.raises(ValueError, match="precision='bfloat'"):
        inference_model(bn_model(), "bfloat")


# -- each path ---------------------------------------------------------------------------


@pytest.mark.backend
def test_feature_extractor_for_inference_folds_and_keeps_the_named_outputs():
    model = bn_model()
    before = snapshot(model)
    layers = ["block1_conv1", "block1_conv1_bn", "block2_pool", "block5_pool"]
    x = pixels().astype("float32")
    unfolded = feature_extractor(model, layers=layers)
    folded = feature_extractor(model, layers=layers, inference=True)
    assert norms(unfolded) and folded is not unfolded
    # block1_conv1's output is asked for: its norm stays (the conv's output is pre-norm)
    assert norms(folded) == ["block1_conv1_bn"]
    for got, want in zip(run(folded, x), run(unfolded, x)):
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=TOLERANCE)
    fast = feature_extractor(model, precision="bfloat16", inference=True)
    assert not norms(fast) and fast.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert feature_extractor(model).get_layer("block1_conv1_bn")  # the default: the layers
    assert_unchanged(model, before)


@pytest.mark.backend
def test_embed_runs_the_folded_model():
    model = bn_model()
    before = snapshot(model)
    embedder = Embedder(model, precision="bfloat16", preprocessing="caffe")
    assert not norms(embedder.extractor)
    assert embedder.extractor.get_layer("block1_conv1").compute_dtype == "bfloat16"
    images = pixels(4)
    got = embed(model, images, batch_size=2, precision="float32", preprocessing="caffe",
                verbose=0)
    x = model_inputs(model, images, "caffe")
    want = run(feature_extractor(model, layers=["block5_pool"]), x).mean(axis=(1, 2))
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=TOLERANCE)
    assert_unchanged(model, before)


def test_predict_and_the_export_serve_the_folded_model():
    model = bn_model(top=True)
    model.preprocessing = "caffe"
    before = snapshot(model)
    mode = model_preprocessing(model)
    for precision in ("float32", "bfloat16"):
        assert not norms(serving_model(model, mode, precision=precision))
    images = pixels()
    results = predict(model, images, top_k=3, precision="float32")
    want = run(model, model_inputs(model, images))
    got = np.array([[dict(zip(r.classes, r.scores))[str(i)] for i in range(3)]
                    for r in results])
    np.testing.assert_allclose(got, want, atol=TOLERANCE)
    assert_unchanged(model, before)


@pytest.mark.slow
def test_a_runs_feature_cache_evaluation_report_and_compress_predict_folded(tmp_path,
                                                                               monkeypatch):
    """Every model a fine-tune of vgg11_bn predicts with (its feature cache, the evaluation,
    which the report's mistakes reuse) and compress's before and after: no
    BatchNormalization in any, in bfloat16 (``mixed_precision: auto`` on this CPU) or
    float32; the model the run saved keeps its norms."""
    from keras_vgg.finetune import finetune
    from keras_vgg.finetune.compress import compress
    from keras_vgg.finetune.recipe import Recipe

    predicted = []
    own = keras.Model.predict

    def spy(self, *args, **kwargs):
        predicted.append((self.name, norms(self)))
        return own(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "predict", spy)
    recipe = Recipe().but({
        "name": "tiny", "data.source": "builtin", "model.name": "vgg11_bn",
        "model.image_size": 32, "data.builtin_images_per_class": 4, "data.batch_size": 8,
        "data.augment": [], "phases.0.epochs": 1, "phases.1.epochs": 1, "phases.1.lr": 1e-3,
        "tensorboard": False, "feature_cache": True, "early_stopping_patience": 0,
        "reduce_lr_patience": 0, "export.formats": []})
    finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    names = [name for name, _ in predicted]
    # the cache (train, val), the evaluation (val: this recipe has no test split); the
    # report's mistakes are the evaluation's own probabilities, not a prediction of its own
    assert len(predicted) == 3, names
    compress(tmp_path / "run", tmp_path / "small", flops=0.5, epochs=0, quantize=["none"],
             verbose=0)
    assert len(predicted) >= len(names) + 2, [name for name, _ in predicted]
    assert [(name, found) for name, found in predicted if found] == []
    assert norms(keras.saving.load_model(tmp_path / "run" / "best.keras"))
