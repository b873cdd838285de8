"""LRN written with TFLite builtins, and the ceil pool's constant pad.

The LRN layer computes ``x * exp(-beta * log(bias + alpha * window sum))`` with the window
sum as a 1x1 convolution (keras_vgg.layers.local_response_normalization). Here it is held
to ``tf.nn.local_response_normalization`` (values and gradients, 1e-5 of the output's
scale), and an exported VGG-F / VGG11-LRN int8 file is checked to be int8 end to end: no
LOCAL_RESPONSE_NORMALIZATION, no DEQUANTIZE/QUANTIZE island, no REDUCE_MIN/PADV2 from the
ceil pools. Old `.keras` files (pools without ``pad_value``) load and compute as before.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from test_layers import POOL_CASES, caffe_max_pool_reference, lrn_reference

from keras_vgg import build_vgg, list_models, min_input_size
from keras_vgg.builder import build_graph
from keras_vgg.spec import build_spec
from keras_vgg.configs import Pool, get_config
from keras_vgg.export import TFLiteRunner, serving_model, tflite_ops, write_tflite
from keras_vgg.layers import CeilMaxPooling2D, LocalResponseNormalization, channel_window

TOL = 1e-5  # of the output's (or the gradient's) largest magnitude

# (depth_radius, bias, alpha, beta), input scale: the table's LRN (every variant: r=2,
# k=2, alpha=1e-4, beta=0.75) at the scale of caffe-preprocessed conv1 outputs, and others.
PARAMS = [
    pytest.param((2, 2.0, 1e-4, 0.75), 300.0, id="vgg-scale300"),
    pytest.param((2, 2.0, 1e-4, 0.75), 30.0, id="vgg-scale30"),
    pytest.param((1, 1.0, 0.5, 0.5), 1.0, id="r1-beta0.5"),
    pytest.param((0, 1.0, 0.1, 1.0), 3.0, id="r0-beta1"),
    pytest.param((3, 0.5, 1e-3, 0.75), 20.0, id="r3-bias0.5"),
    pytest.param((5, 2.0, 1e-4, 1.3), 100.0, id="r5-beta1.3"),
]


def relu_like(channels, scale, seed=0, shape=(2, 6, 5)):
    """Like a conv's ReLU output: about half zeros, the rest spread up to ``scale``."""
    rng = np.random.default_rng(seed)
    return np.maximum(rng.normal(0.0, scale / 2, shape + (channels,)), 0.0).astype("float32")


def assert_close(actual, expected, tol=TOL):
    actual, expected = keras.ops.convert_to_numpy(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * np.abs(expected).max())


def test_channel_window_is_the_banded_sum():
    window = channel_window(7, 2, alpha=0.5)
    x = np.random.default_rng(0).normal(size=(3, 7)).astype("float32")
    expected = np.stack([x[:, max(0, c - 2):c + 3].sum(-1) for c in range(7)], -1)
    np.testing.assert_allclose(x @ window, 0.5 * expected, rtol=1e-6)
    np.testing.assert_array_equal(window, window.T)


@pytest.mark.parametrize("channels", [3, 5, 16, 96])
@pytest.mark.parametrize("params,scale", PARAMS)
@pytest.mark.parametrize("sign", ["relu", "signed"])
def test_lrn_equals_tf_nn_lrn(params, scale, channels, sign):
    """Channels fewer than the window (3 < 5) too: the band is cut at both ends."""
    x = relu_like(channels, scale, seed=channels)
    if sign == "signed":
        x = x - relu_like(channels, scale, seed=channels + 1)
    expected = tf.nn.local_response_normalization(x, *params).numpy()
    out = LocalResponseNormalization(*params)(x)
    assert_close(out, expected)
    assert_close(out, lrn_reference(x, *params))
    assert np.abs(expected - x).max() > 1e-3 * np.abs(x).max()  # it does normalise


@pytest.mark.parametrize("channels", [3, 64])
@pytest.mark.parametrize("params,scale", PARAMS[:1] + PARAMS[2:3] + PARAMS[5:])
def test_lrn_gradient_equals_tf_nn_lrn(params, scale, channels):
    """The layer trains through its own graph: its input gradient is tf.nn's LRNGrad's."""
    x = tf.constant(relu_like(channels, scale, seed=3) - relu_like(channels, scale, seed=4))
    upstream = tf.constant(np.random.default_rng(5).normal(size=x.shape).astype("float32"))
    layer = LocalResponseNormalization(*params)
    grads = []
    for fn in (layer, lambda t: tf.nn.local_response_normalization(t, *params)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x) * upstream)
        grads.append(tape.gradient(loss, x).numpy())
    assert_close(grads[0], grads[1])


def test_lrn_in_bfloat16_is_float32_lrn_rounded():
    """A bfloat16 input is normalised in float32 and rounded once, as tf.nn did."""
    x = tf.cast(relu_like(64, 300.0, seed=6), "bfloat16")
    layer = LocalResponseNormalization(dtype="bfloat16")
    out = layer(x)
    assert out.dtype == tf.bfloat16
    expected = tf.nn.local_response_normalization(tf.cast(x, "float32"), 2, 2.0, 1e-4, 0.75)
    assert_close(tf.cast(out, "float32"), expected, tol=2**-8)


@pytest.mark.parametrize("k,s,h", POOL_CASES)
def test_constant_pad_equals_min_pad_on_non_negative_input(k, s, h):
    rng = np.random.default_rng(k * 100 + s * 10 + h)
    x = np.maximum(rng.normal(size=(2, h, h + 1, 3)), 0).astype("float32")
    x[0, -1] = 0.0  # a last row of zeros: the overhanging window's max is the real 0
    by_min = keras.ops.convert_to_numpy(CeilMaxPooling2D(k, s)(x))
    by_zero = keras.ops.convert_to_numpy(CeilMaxPooling2D(k, s, pad_value=0.0)(x))
    np.testing.assert_array_equal(by_zero, by_min)
    np.testing.assert_array_equal(by_zero, caffe_max_pool_reference(x, k, s))


def _ceil_pools(model):
    return [layer for layer in model.layers if isinstance(layer, CeilMaxPooling2D)]


@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("vgg_")])
def test_builder_pads_ceil_pools_after_relu_with_zero(name):
    """Every ceil pool of the table follows a conv's ReLU (through LRN or nothing)."""
    model = build_vgg(name, include_top=False, input_shape=(min_input_size(name),) * 2 + (3,))
    pools = _ceil_pools(model)
    assert len(pools) == 3 and all(pool.pad_value == 0.0 for pool in pools)
    for pool in pools:
        source = pool.input._keras_history.operation
        while isinstance(source, LocalResponseNormalization):
            source = source.input._keras_history.operation
        assert isinstance(source, keras.layers.Conv2D) and source.get_config()["activation"] == "relu"


def test_builder_keeps_the_min_pad_for_a_pool_on_the_raw_input():
    """The choice follows the graph, not the variant: a ceil pool before any conv pads with
    the input's minimum (the input may be negative)."""
    config = get_config("vgg_f")
    config = dataclasses.replace(config, blocks=((Pool(3, 2, ceil=True),), *config.blocks))
    model = build_graph(build_spec(config, include_top=False, input_shape=(96, 96, 3)))
    assert [pool.pad_value for pool in _ceil_pools(model)] == [None, 0.0, 0.0, 0.0]


# -- .keras files ----------------------------------------------------------------------
def _lrn_pool_model(pad_value):
    inputs = keras.Input((13, 13, 6))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    x = LocalResponseNormalization(name="lrn")(x)
    outputs = CeilMaxPooling2D(3, 2, pad_value=pad_value, name="pool")(x)
    return keras.Model(inputs, outputs)


def _images():
    return np.random.default_rng(7).normal(0, 50, (2, 13, 13, 6)).astype("float32")


def test_keras_file_with_pad_value_round_trip(tmp_path):
    model = _lrn_pool_model(0.0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.get_layer("pool").get_config() == model.get_layer("pool").get_config()
    assert loaded.get_layer("pool").pad_value == 0.0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(_images())),
                                  keras.ops.convert_to_numpy(model(_images())))


def test_keras_file_saved_without_pad_value_loads_and_computes_as_before(tmp_path):
    """A file from before ``pad_value`` (its config without the key) loads with None and
    computes tf.nn's LRN and Caffe's pool, as the old tf.nn layer did."""
    model = _lrn_pool_model(None)
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as new, \
            zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            data = new.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                pool = next(c for c in config["config"]["layers"] if c["name"] == "pool")
                del pool["config"]["pad_value"]
                data = json.dumps(config).encode()
            old.writestr(item, data)
    loaded = keras.saving.load_model(tmp_path / "old.keras", safe_mode=True)
    assert loaded.get_layer("pool").pad_value is None
    x = _images()
    conv = keras.ops.convert_to_numpy(model.get_layer("conv")(x))
    expected = caffe_max_pool_reference(
        tf.nn.local_response_normalization(conv, 2, 2.0, 1e-4, 0.75).numpy(), 3, 2)
    assert_close(loaded(x), expected)


# -- TFLite -------------------------------------------------------------------------------
def _classifier(name, size, mode):
    keras.utils.set_random_seed(0)
    base = build_vgg(name, include_top=False, input_shape=(size, size, 3), pooling="avg")
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Dense(10, activation="softmax")(base(inputs))
    return serving_model(keras.Model(inputs, outputs), mode)


def _ops_with_tensors(path):
    """Each op's name, its operands' dtypes and its first output's (scale, zero point)."""
    interpreter = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [(op["op_name"], [tensors[i]["dtype"] for i in op["inputs"] if i >= 0],
             tensors[op["outputs"][0]]["quantization"])
            for op in interpreter._get_ops_details()]


# caffe preprocessing: conv1 outputs in the hundreds, as with the released weights.
@pytest.fixture(scope="module", params=[("vgg_f", 64, "caffe"), ("vgg11_lrn", 32, "torch")],
                ids=lambda p: p[0])
def exported(request, tmp_path_factory):
    name, size, mode = request.param
    serving = _classifier(name, size, mode)
    images = np.random.default_rng(8).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    folder = tmp_path_factory.mktemp(name)
    paths = {q: folder / f"{name}_{q}.tflite" for q in ("none", "int8")}
    for quantize, path in paths.items():
        write_tflite(serving, path, quantize, representative=images)
    return {"name": name, "serving": serving, "images": images, "paths": paths}


def test_int8_file_is_int8_end_to_end(exported):
    ops = tflite_ops(exported["paths"]["int8"].read_bytes())
    assert {"LOG", "EXP", "MUL"} <= set(ops)
    for op in ("LOCAL_RESPONSE_NORMALIZATION", "DEQUANTIZE", "REDUCE_MIN", "PADV2", "POW"):
        assert op not in ops, ops
    assert ops["QUANTIZE"] == 2  # uint8 pixels in, uint8 probabilities out: the ends only
    for op, operands, (scale, zero) in _ops_with_tensors(exported["paths"]["int8"]):
        if op != "QUANTIZE":
            assert operands[0] == np.int8, (op, operands)
        if op == "EXP":  # e = d ** -0.375 <= 2 ** -0.375: calibrated to its own range
            assert 0.5 < scale * (127 - zero) <= 0.78, (scale, zero)
    if exported["name"] == "vgg_f":
        assert ops["PAD"] >= 3 and ops["LOG"] == ops["EXP"] == 2  # 3 ceil pools, 2 LRNs


def test_float32_file_agrees_with_keras(exported):
    ops = tflite_ops(exported["paths"]["none"].read_bytes())
    assert "LOCAL_RESPONSE_NORMALIZATION" not in ops and "REDUCE_MIN" not in ops
    images = exported["images"]
    expected = exported["serving"].predict(images.astype("float32"), verbose=0)
    out = TFLiteRunner(exported["paths"]["none"])(images)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    int8 = TFLiteRunner(exported["paths"]["int8"])(images)
    assert np.abs(int8 - expected).max() < 0.05  # quantised: a few steps of 1/256
