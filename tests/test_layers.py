"""Tests for keras_vgg.layers: LocalResponseNormalization and CeilMaxPooling2D.

Every numeric test compares against an independent numpy reference written with
explicit loops (Caffe's pooling loop, the textbook LRN sum) as well as, where it
exists, the TensorFlow op the layer is supposed to match.
"""

from __future__ import annotations

import contextlib
import io
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vgg.layers import CeilMaxPooling2D, LocalResponseNormalization, local_response_normalization


# LRN outputs reach ~60 in magnitude for inputs up to 100, where one float32 ulp is
# ~4e-6: an absolute 1e-6 alone is below float32 resolution (tf.nn's own op misses it
# by ~2e-7 relative). So every float comparison is atol=1e-6 *plus* rtol=1e-6 (a few
# float32 ulps); for |values| <= 1 that is still an absolute 2e-6 bound.
F32_RTOL = 1e-6


# --------------------------------------------------------------------------- #
# numpy references
# --------------------------------------------------------------------------- #
def lrn_reference(x, depth_radius, bias, alpha, beta):
    """out[..., c] = x[..., c] / (bias + alpha * sum_{c' in [c-r, c+r] ∩ [0, C)} x[..., c']**2) ** beta."""
    x = np.asarray(x, dtype=np.float64)
    channels = x.shape[-1]
    out = np.empty_like(x)
    for c in range(channels):
        lo = max(0, c - depth_radius)
        hi = min(channels - 1, c + depth_radius)
        sq_sum = np.zeros(x.shape[:-1], dtype=np.float64)
        for cc in range(lo, hi + 1):
            sq_sum += x[..., cc] ** 2
        out[..., c] = x[..., c] / (bias + alpha * sq_sum) ** beta
    return out


def caffe_pooled_size(size, k, s):
    return int(math.ceil((size - k) / s)) + 1


def caffe_max_pool_reference(x, k, s):
    """Caffe's MAX pooling loop with pad=0 (channels_last): window [i*s, min(i*s+k, H))."""
    x = np.asarray(x)
    n, h, w, c = x.shape
    ph, pw = caffe_pooled_size(h, k, s), caffe_pooled_size(w, k, s)
    out = np.empty((n, ph, pw, c), dtype=x.dtype)
    for i in range(ph):
        hstart = i * s
        hend = min(hstart + k, h)
        assert hstart < hend
        for j in range(pw):
            wstart = j * s
            wend = min(wstart + k, w)
            assert wstart < wend
            out[:, i, j, :] = x[:, hstart:hend, wstart:wend, :].max(axis=(1, 2))
    return out


# --------------------------------------------------------------------------- #
# Local response normalisation
# --------------------------------------------------------------------------- #
LRN_PARAMS = [
    # (depth_radius, bias, alpha, beta), input scale
    pytest.param((2, 2.0, 1e-4, 0.75), 100.0, id="default-scale100"),
    pytest.param((1, 1.0, 0.5, 0.5), 1.0, id="r1-b1-a0.5-beta0.5"),
    pytest.param((0, 1.0, 0.1, 1.0), 3.0, id="r0"),
    pytest.param((3, 0.5, 1e-3, 0.75), 20.0, id="r3"),
    pytest.param((5, 2.0, 1e-4, 0.75), 100.0, id="r5-window-wider-than-3ch"),
]


def _lrn_input(channels, scale, seed=0, shape=(2, 5, 4)):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1.0, 1.0, size=shape + (channels,)) * scale).astype("float32")


def test_lrn_reference_matches_hand_computed_value():
    # Sanity check of the numpy reference itself on a single pixel, 3 channels, r=1.
    x = np.array([[[[1.0, 2.0, 3.0]]]])
    out = lrn_reference(x, depth_radius=1, bias=1.0, alpha=0.5, beta=0.5)
    expected = [
        1.0 / math.sqrt(1 + 0.5 * (1 + 4)),
        2.0 / math.sqrt(1 + 0.5 * (1 + 4 + 9)),
        3.0 / math.sqrt(1 + 0.5 * (4 + 9)),
    ]
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels", [3, 16])
@pytest.mark.parametrize("params,scale", LRN_PARAMS)
def test_lrn_layer_matches_tf_and_numpy(params, scale, channels):
    depth_radius, bias, alpha, beta = params
    x = _lrn_input(channels, scale)
    ref = lrn_reference(x, depth_radius, bias, alpha, beta)
    tf_out = tf.nn.local_response_normalization(
        x, depth_radius=depth_radius, bias=bias, alpha=alpha, beta=beta
    ).numpy()
    layer = LocalResponseNormalization(depth_radius, bias, alpha, beta)
    out = keras.ops.convert_to_numpy(layer(x))

    assert out.shape == x.shape
    np.testing.assert_allclose(tf_out, ref, rtol=F32_RTOL, atol=1e-6)
    np.testing.assert_allclose(out, ref, rtol=F32_RTOL, atol=1e-6)
    np.testing.assert_allclose(out, tf_out, rtol=F32_RTOL, atol=1e-6)
    # The normalisation must actually do something for this test to mean anything.
    assert np.max(np.abs(out - x)) > 1e-3


@pytest.mark.backend
@pytest.mark.parametrize("channels", [3, 16])
@pytest.mark.parametrize("params,scale", LRN_PARAMS)
def test_lrn_keras_ops_function_matches_numpy(params, scale, channels):
    depth_radius, bias, alpha, beta = params
    x = _lrn_input(channels, scale, seed=1)
    ref = lrn_reference(x, depth_radius, bias, alpha, beta)
    out = keras.ops.convert_to_numpy(
        local_response_normalization(
            keras.ops.convert_to_tensor(x), depth_radius, bias, alpha, beta
        )
    )
    assert out.shape == x.shape
    np.testing.assert_allclose(out, ref, rtol=F32_RTOL, atol=1e-6)


def test_lrn_defaults_are_caffe_vgg_values():
    layer = LocalResponseNormalization()
    assert (layer.depth_radius, layer.bias, layer.alpha, layer.beta) == (2, 2.0, 1e-4, 0.75)
    x = _lrn_input(8, 100.0, seed=2)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), lrn_reference(x, 2, 2.0, 1e-4, 0.75), rtol=F32_RTOL, atol=1e-6
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(local_response_normalization(keras.ops.convert_to_tensor(x))),
        lrn_reference(x, 2, 2.0, 1e-4, 0.75),
        rtol=F32_RTOL,
        atol=1e-6,
    )


def test_lrn_symbolic_shape_with_none_dims():
    inp = keras.Input((None, None, 5))
    out = LocalResponseNormalization()(inp)
    assert tuple(out.shape) == (None, None, None, 5)
    assert LocalResponseNormalization().compute_output_shape((None, 7, None, 5)) == (None, 7, None, 5)


# --------------------------------------------------------------------------- #
# Ceil-mode max pooling
# --------------------------------------------------------------------------- #
POOL_CASES = (
    [(3, 2, h) for h in (54, 27, 13, 7, 2)]
    + [(3, 3, h) for h in (14, 13, 10, 3)]
    + [(2, 2, h) for h in (1, 2, 7, 8, 13, 14)]
    + [(2, 1, h) for h in (2, 5)]
)


def test_caffe_reference_matches_hand_computed_value():
    # 5x5 input, k=3, s=2 -> ceil(2/2)+1 = 2; 6x6 -> ceil(3/2)+1 = 3 with a 1-pixel last window.
    x = np.arange(36, dtype="float32").reshape(1, 6, 6, 1)
    out = caffe_max_pool_reference(x, 3, 2)[0, :, :, 0]
    np.testing.assert_array_equal(out, [[14, 16, 17], [26, 28, 29], [32, 34, 35]])


@pytest.mark.backend
@pytest.mark.parametrize("sign", ["mixed", "negative"])
@pytest.mark.parametrize("k,s,h", POOL_CASES)
def test_ceil_max_pool_matches_caffe(k, s, h, sign):
    rng = np.random.default_rng(k * 1000 + s * 100 + h)
    w = h + 1 if h > 1 else h  # non-square where possible, exercising both axes separately
    x = rng.normal(size=(2, h, w, 3)).astype("float32") * 10.0
    if sign == "negative":
        x = -np.abs(x) - 5.0  # all strictly negative: padding with 0 would be wrong
    layer = CeilMaxPooling2D(k, s)
    out = keras.ops.convert_to_numpy(layer(x))
    ref = caffe_max_pool_reference(x, k, s)

    expected_shape = (2, caffe_pooled_size(h, k, s), caffe_pooled_size(w, k, s), 3)
    assert ref.shape == expected_shape
    assert out.shape == expected_shape
    assert layer.compute_output_shape(x.shape) == expected_shape
    np.testing.assert_array_equal(out, ref)


def test_ceil_max_pool_negative_values_at_overhanging_edge():
    # The last row/column window overhangs; every real pixel there is negative, so a
    # zero (or any too-large) padding value would show up as the maximum.
    x = -np.arange(1, 1 + 2 * 6 * 6 * 2, dtype="float32").reshape(2, 6, 6, 2)
    out = keras.ops.convert_to_numpy(CeilMaxPooling2D(3, 2)(x))
    assert out.shape == (2, 3, 3, 2)
    assert np.all(out < 0)
    np.testing.assert_array_equal(out, caffe_max_pool_reference(x, 3, 2))
    # Per-sample minima differ across the batch; the second sample's min is global.
    np.testing.assert_array_equal(out[0, 2, 2], x[0, 4, 4])


def test_ceil_max_pool_default_strides_equal_pool_size():
    layer = CeilMaxPooling2D(2)
    assert layer.strides == 2
    x = np.random.default_rng(3).normal(size=(1, 7, 7, 2)).astype("float32") - 3.0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), caffe_max_pool_reference(x, 2, 2))


@pytest.mark.parametrize(
    "k,s,spatial,expected",
    [
        (3, 2, (None, None), (None, None)),
        (3, 2, (None, 13), (None, 6)),
        (3, 2, (54, None), (27, None)),
        (3, 3, (13, 10), (5, 4)),
        (2, 2, (7, 8), (4, 4)),
    ],
)
def test_ceil_max_pool_symbolic_shapes(k, s, spatial, expected):
    inp = keras.Input(spatial + (4,))
    layer = CeilMaxPooling2D(k, s)
    out = layer(inp)
    assert tuple(out.shape) == (None,) + expected + (4,)
    assert tuple(layer.compute_output_shape((None,) + spatial + (4,))) == (None,) + expected + (4,)


def test_ceil_max_pool_in_model_with_dynamic_spatial_dims():
    inp = keras.Input((None, None, 2))
    model = keras.Model(inp, CeilMaxPooling2D(3, 2)(inp))
    for h, w in [(13, 13), (7, 10), (54, 27)]:
        x = np.random.default_rng(h * w).normal(size=(1, h, w, 2)).astype("float32") - 1.0
        out = keras.ops.convert_to_numpy(model(x))
        np.testing.assert_array_equal(out, caffe_max_pool_reference(x, 3, 2))


# --------------------------------------------------------------------------- #
# Argument validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "factory,arg_name",
    [
        (lambda: CeilMaxPooling2D(pool_size=0), "pool_size"),
        (lambda: CeilMaxPooling2D(pool_size=-2), "pool_size"),
        (lambda: CeilMaxPooling2D(pool_size=2.5), "pool_size"),
        (lambda: CeilMaxPooling2D(3, strides=0), "strides"),
        (lambda: CeilMaxPooling2D(2, strides=3), "pool_size"),
        (lambda: CeilMaxPooling2D(2, strides=3), "strides"),
        (lambda: CeilMaxPooling2D(3, 2, pad_value="zero"), "pad_value"),
        (lambda: CeilMaxPooling2D(3, 2, pad_value=True), "pad_value"),
        (lambda: CeilMaxPooling2D(3, 2, pad_value=float("-inf")), "pad_value"),
        (lambda: LocalResponseNormalization(depth_radius=-1), "depth_radius"),
        (lambda: LocalResponseNormalization(depth_radius=1.5), "depth_radius"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(factory, arg_name):
    with pytest.raises(ValueError, match=arg_name):
        factory()


# --------------------------------------------------------------------------- #
# Serialisation
# --------------------------------------------------------------------------- #
def test_registered_names():
    assert keras.saving.get_registered_name(LocalResponseNormalization) == "keras_vgg>LocalResponseNormalization"
    assert keras.saving.get_registered_name(CeilMaxPooling2D) == "keras_vgg>CeilMaxPooling2D"
    assert keras.saving.get_registered_object("keras_vgg>LocalResponseNormalization") is LocalResponseNormalization
    assert keras.saving.get_registered_object("keras_vgg>CeilMaxPooling2D") is CeilMaxPooling2D


@pytest.mark.parametrize(
    "layer",
    [
        LocalResponseNormalization(1, 1.0, 0.5, 0.5, name="lrn_a"),
        LocalResponseNormalization(name="lrn_default"),
        CeilMaxPooling2D(3, 2, name="pool_a"),
        CeilMaxPooling2D(2, name="pool_b"),
        CeilMaxPooling2D(3, 2, pad_value=-100.0, name="pool_c"),
    ],
    ids=["lrn-custom", "lrn-default", "pool-3-2", "pool-2", "pool-constant-pad"],
)
def test_get_config_from_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # Also through the generic (de)serialiser, which uses the registered name.
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == keras.saving.get_registered_name(type(layer))
    clone2 = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
    assert type(clone2) is type(layer)
    assert clone2.get_config() == config

    x = (np.random.default_rng(4).normal(size=(1, 9, 9, 6)) * 50.0 - 10.0).astype("float32")
    expected = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), expected)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone2(x)), expected)


def _tiny_model():
    inp = keras.Input((13, 13, 4))
    x = LocalResponseNormalization(name="lrn")(inp)
    out = CeilMaxPooling2D(3, 2, name="pool")(x)
    return keras.Model(inp, out)


def _tiny_input(batch=2):
    return (np.random.default_rng(5).normal(size=(batch, 13, 13, 4)) * 60.0 - 20.0).astype("float32")


@pytest.mark.backend
def test_tiny_model_matches_references():
    model = _tiny_model()
    assert tuple(model.output.shape) == (None, 6, 6, 4)
    x = _tiny_input()
    ref = caffe_max_pool_reference(lrn_reference(x, 2, 2.0, 1e-4, 0.75), 3, 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), ref, rtol=F32_RTOL, atol=1e-6)


@pytest.mark.backend
def test_keras_file_round_trip_safe_mode(tmp_path):
    model = _tiny_model()
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)

    assert isinstance(loaded.get_layer("lrn"), LocalResponseNormalization)
    assert isinstance(loaded.get_layer("pool"), CeilMaxPooling2D)
    assert loaded.get_layer("lrn").get_config() == model.get_layer("lrn").get_config()
    assert loaded.get_layer("pool").get_config() == model.get_layer("pool").get_config()

    x = _tiny_input()
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x))
    )


# --------------------------------------------------------------------------- #
# TFLite
# --------------------------------------------------------------------------- #
def test_tflite_builtin_ops_only_and_matches_keras():
    # LRN as MUL, CONV_2D, LOG, MUL, EXP, MUL (tests/test_lrn_builtins.py has the int8 file);
    # the ceil pool of this mixed-sign input pads with its minimum (pad_value=None).
    model = _tiny_model()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    tflite_bytes = converter.convert()

    # Op list straight from the interpreter; without default delegates so that
    # XNNPACK does not replace nodes by "DELEGATE".
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(  # the supported interpreter (tf.lite.Interpreter is deprecated)
        model_content=tflite_bytes,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    op_names = [op["op_name"] for op in interpreter._get_ops_details()]
    assert "LOCAL_RESPONSE_NORMALIZATION" not in op_names
    assert {"CONV_2D", "LOG", "EXP", "MUL", "REDUCE_MIN", "MAX_POOL_2D"} <= set(op_names)
    for name in op_names:
        assert "Flex" not in name and "CUSTOM" not in name.upper() and name != "DELEGATE", op_names

    # Cross-check with the analyzer's text report.
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(model_content=tflite_bytes, gpu_compatibility=False)
    text = report.getvalue()
    assert "LOCAL_RESPONSE_NORMALIZATION" not in text
    assert "MAX_POOL_2D" in text
    assert "Flex" not in text
    assert "CUSTOM" not in text

    inp = interpreter.get_input_details()[0]
    outp = interpreter.get_output_details()[0]
    assert inp["dtype"] == np.float32 and outp["dtype"] == np.float32
    assert tuple(outp["shape"][1:]) == (6, 6, 4)

    x = _tiny_input(batch=1)
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    tflite_out = interpreter.get_tensor(outp["index"])
    keras_out = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(tflite_out, keras_out, rtol=F32_RTOL, atol=1e-5)
    np.testing.assert_allclose(
        tflite_out, caffe_max_pool_reference(lrn_reference(x, 2, 2.0, 1e-4, 0.75), 3, 2), rtol=F32_RTOL, atol=1e-5
    )
