"""BatchNorm folded into the conv before it (keras_vgg.batch_norm): the folded model computes
what the model computes in inference to 1e-5 (random statistics, not the identity), keeps its
names, record and dtype policies, saves and loads; other norms stay; the TFLite file of a
folded BN form has the plain form's ops."""

import numpy as np
import pytest

import keras
import keras_vgg
from keras_vgg.finetune.recipe import Recipe
from keras_vgg.finetune.model import build_finetune_model
from keras_vgg.precision import precision_scope, with_precision

pytestmark = pytest.mark.backend


def images(n=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype("float32")


def outputs(model, x):
    return keras.ops.convert_to_numpy(keras.ops.cast(model(x, training=False), "float32"))


def norms(model):
    return [layer.name for layer in model._flatten_layers(recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def with_random_bn(model, seed=0):
    """Every BatchNormalization gets random gamma, beta and statistics (not the identity)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.5, shape))
            layer.moving_variance.assign(rng.uniform(0.2, 2.0, shape))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, shape))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.5, shape))
    return model


def assert_folds(model, x, folded=None):
    """``model`` folded computes what ``model`` computes, to 1e-5, with no norm left."""
    folded = keras_vgg.fold_batch_norm(model) if folded is None else folded
    assert folded is not model and not norms(folded)
    np.testing.assert_allclose(outputs(folded, x), outputs(model, x), rtol=1e-5, atol=1e-5)
    return folded


@pytest.mark.parametrize("top", [False, True], ids=["headless", "top"])
def test_a_bn_form_folds_exactly_and_keeps_its_names_and_record(top):
    head = {"classes": 10, "adaptive_pool": 1} if top else {}
    model = with_random_bn(keras_vgg.build_vgg("vgg11_bn", include_top=top,
                                               input_shape=(32, 32, 3), **head))
    model.preprocessing, model.class_names = "torch", [str(i) for i in range(10)] if top else None
    folded = assert_folds(model, images())
    assert type(folded) is keras_vgg.vgg_model.VGGModel and folded.name == model.name
    assert [layer.name for layer in folded.layers] == [
        layer.name for layer in model.layers if not layer.name.endswith("_bn")]
    assert folded.get_config() == {**model.get_config(), "layers": folded.get_config()["layers"]}
    assert (folded.variant, folded.preprocessing, folded.class_names, folded.widths) == (
        "vgg11_bn", model.preprocessing, model.class_names, None)
    conv = folded.get_layer("block1_conv1")
    assert conv.activation is keras.activations.linear and conv.use_bias
    assert len(norms(model)) == 8  # the model itself is left as it was


def test_a_fine_tuned_model_folds_its_base():
    recipe = Recipe().but({"model.name": "vgg11_bn", "model.image_size": 32})
    model = with_random_bn(build_finetune_model(recipe, 3, ["a", "b", "c"]))
    model.preprocessing = "caffe"
    folded = assert_folds(model, 255 * images())
    assert [layer.name for layer in folded.layers] == ["image", "base", "head"]
    base, head = folded.get_layer("base"), folded.get_layer("head")
    assert type(base) is keras_vgg.vgg_model.VGGModel and base.variant == "vgg11_bn"
    assert isinstance(head, keras.Sequential)
    np.testing.assert_array_equal(head.get_weights()[0], model.get_layer("head").get_weights()[0])
    assert (folded.variant, folded.preprocessing.mode, folded.class_names) == (
        "vgg11_bn", "caffe", ["a", "b", "c"])


def test_the_folded_model_saves_and_loads_in_safe_mode(tmp_path):
    model = with_random_bn(keras_vgg.build_vgg("vgg11_bn", include_top=False,
                                               input_shape=(32, 32, 3), pooling="avg"))
    model.preprocessing = "torch"
    folded = keras_vgg.fold_batch_norm(model)
    folded.save(tmp_path / "folded.keras")
    loaded = keras.saving.load_model(tmp_path / "folded.keras", safe_mode=True)
    assert type(loaded) is keras_vgg.vgg_model.VGGModel and not norms(loaded)
    assert (loaded.variant, loaded.preprocessing.mode) == ("vgg11_bn", "torch")
    np.testing.assert_allclose(outputs(loaded, images()), outputs(model, images()),
                               rtol=1e-5, atol=1e-5)


def test_a_model_without_such_a_norm_comes_back_unchanged():
    plain = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3))
    assert keras_vgg.fold_batch_norm(plain) is plain
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)  # an activation
    x = keras.layers.BatchNormalization(name="after_relu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.BatchNormalization(name="after_pool")(x)
    other = keras.Model(inputs, x)
    assert keras_vgg.fold_batch_norm(other) is other


def test_only_the_norms_after_a_linear_conv_read_by_nothing_else_fold():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    folds = keras.layers.BatchNormalization(name="folds")(a)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b", use_bias=False)(folds)
    no_bias = keras.layers.BatchNormalization(center=False, scale=False, name="no_bias")(b)
    shared = keras.layers.Conv2D(4, 1, name="shared")(no_bias)
    read_twice = keras.layers.BatchNormalization(name="read_twice")(shared)
    x = keras.layers.Add(name="add")([read_twice, shared])
    x = keras.layers.BatchNormalization(name="after_add")(x)
    model = with_random_bn(keras.Model(inputs, [x, folds]))
    folded = keras_vgg.fold_batch_norm(model)
    assert norms(folded) == ["read_twice", "after_add"]
    x = images(size=8)
    for got, want in zip(folded(x, training=False), model(x, training=False)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got),
                                   keras.ops.convert_to_numpy(want), rtol=1e-5, atol=1e-5)


def test_a_sequential_model_folds():
    model = with_random_bn(keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(name="relu"),
        keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(2, name="dense")]))
    folded = assert_folds(model, images(size=8))
    assert [layer.name for layer in folded.layers] == ["conv", "relu", "pool", "dense"]


@pytest.mark.parametrize("inference", [False, True], ids=["mixed", "bfloat16_weights"])
def test_a_bfloat16_model_folds_and_keeps_its_policies(inference):
    with precision_scope("bfloat16"):
        model = keras_vgg.build_vgg("vgg11_bn", include_top=False, input_shape=(32, 32, 3),
                                    pooling="avg")
    model = with_random_bn(with_precision(model, "bfloat16", inference=inference))
    folded = keras_vgg.fold_batch_norm(model)
    assert not norms(folded)
    for layer in folded.layers[1:]:  # past the InputLayer (the input's dtype is float32)
        assert layer.dtype_policy.name == model.get_layer(layer.name).dtype_policy.name
    assert folded.get_layer("block1_conv1").compute_dtype == "bfloat16"
    want = outputs(model, images())
    np.testing.assert_allclose(outputs(folded, images()), want, atol=0.02 * np.abs(want).max())


def test_a_folded_bn_form_exports_the_plain_forms_tflite_ops(tmp_path):
    """The converter folds a BatchNormalization itself, with the same float32 arithmetic:
    the folded model's file computes exactly what the unfolded model's computes."""
    pytest.importorskip("ai_edge_litert")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on TensorFlow")
    from keras_vgg.export import TFLiteRunner, serving_model, write_tflite

    def model(variant):
        return with_random_bn(keras_vgg.build_vgg(variant, include_top=False,
                                                  input_shape=(32, 32, 3), pooling="avg"))

    bn = model("vgg11_bn")
    serving = serving_model(bn, "torch")  # folds
    assert not norms(serving)
    ops = write_tflite(serving, tmp_path / "folded.tflite")
    assert ops == write_tflite(serving_model(model("vgg11"), "torch"), tmp_path / "plain.tflite")
    assert ops == {"CONV_2D": 9, "MAX_POOL_2D": 5, "MEAN": 1}
    pixels = keras.Input((32, 32, 3))  # the unfolded model, converted as it is
    write_tflite(keras.Model(pixels, bn(serving.get_layer("preprocessing")(pixels))),
                 tmp_path / "unfolded.tflite")
    x = (255 * images(4)).astype("uint8")
    np.testing.assert_array_equal(TFLiteRunner(tmp_path / "folded.tflite")(x),
                                  TFLiteRunner(tmp_path / "unfolded.tflite")(x))
