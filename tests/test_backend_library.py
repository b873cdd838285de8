"""The library on every backend: every variant, preprocessing and the `.keras` round trip give
the outputs of NumPy references from the same weights.

Marked ``backend``: CI runs the module under KERAS_BACKEND = tensorflow, jax and torch. Each
backend is held to 5e-5 of the largest output of one NumPy reference, so any two backends agree
to 1e-4 of it. The weights paths per backend are the converter tests (torchvision, timm,
MatConvNet against NumPy nets, tests/test_convert.py), Keras's published files
(tests/test_models.py::test_keras_applications_weights_load_unchanged) and the features side
(tests/test_features.py), all marked ``backend`` too.
"""

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg import build_vgg, preprocess_input
from keras_vgg.layers import CeilMaxPooling2D, LocalResponseNormalization

pytestmark = pytest.mark.backend
TOL = 5e-5


def conv(x, kernel, bias, strides, padding):
    """NHWC convolution by im2col; ``padding`` "same" (stride 1, odd kernel) or "valid"."""
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = np.pad(x, [(0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)])
    n, h, w, c = x.shape
    out_h, out_w = (h - kh) // strides + 1, (w - kw) // strides + 1
    patches = np.stack([x[:, i:i + strides * out_h:strides, j:j + strides * out_w:strides]
                        for i in range(kh) for j in range(kw)], axis=3)
    return patches.reshape(n, out_h, out_w, -1) @ kernel.reshape(-1, kernel.shape[-1]) + bias


def max_pool(x, size, strides, ceil):
    """Max pooling; ``ceil``: Caffe's rounding, the last window covering what is left."""
    n, h, w, c = x.shape

    def count(length):
        return -(-(length - size) // strides) + 1 if ceil else (length - size) // strides + 1

    out = np.full((n, count(h), count(w), c), -np.inf, x.dtype)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            window = x[:, i * strides:i * strides + size, j * strides:j * strides + size]
            out[:, i, j] = window.max(axis=(1, 2))
    return out


def lrn(x, radius, bias, alpha, beta):
    """tf.nn.local_response_normalization's formula, channel by channel."""
    squares = np.pad(x * x, [(0, 0)] * 3 + [(radius, radius)])
    sums = sum(squares[..., d:d + x.shape[-1]] for d in range(2 * radius + 1))
    return x / (bias + alpha * sums) ** beta


def numpy_forward(model, x):
    """The model's layers one after another, in NumPy (float64), with its weights."""
    x = x.astype("float64")
    for layer in model.layers[1:]:
        weights = [w.astype("float64") for w in layer.get_weights()]
        config = layer.get_config()
        if isinstance(layer, keras.layers.Conv2D):
            x = conv(x, *weights, config["strides"][0], config["padding"])
            x = np.maximum(x, 0) if config["activation"] == "relu" else x
        elif isinstance(layer, keras.layers.ZeroPadding2D):
            x = np.pad(x, [(0, 0), *config["padding"], (0, 0)])
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = weights
            x = (x - mean) / np.sqrt(var + config["epsilon"]) * gamma + beta
        elif isinstance(layer, keras.layers.Activation):
            assert config["activation"] == "relu", config
            x = np.maximum(x, 0)
        elif isinstance(layer, (keras.layers.MaxPooling2D, CeilMaxPooling2D)):
            size = config["pool_size"]
            size = size[0] if isinstance(size, (tuple, list)) else size
            strides = config["strides"]
            strides = strides[0] if isinstance(strides, (tuple, list)) else strides
            x = max_pool(x, size, strides, ceil=isinstance(layer, CeilMaxPooling2D))
        elif isinstance(layer, LocalResponseNormalization):
            x = lrn(x, config["depth_radius"], config["bias"], config["alpha"], config["beta"])
        else:
            raise AssertionError(f"no NumPy reference for {type(layer).__name__}")
    return x


def with_random_weights(model, seed=0):
    """He-scaled kernels, small biases; BN statistics and scales away from 0 and 1."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.2, c), rng.uniform(0.5, 2.0, c)])
        elif layer.get_weights():
            kernel, bias = layer.get_weights()
            fan_in = np.prod(kernel.shape[:-1])
            layer.set_weights([rng.normal(0, np.sqrt(2 / fan_in), kernel.shape),
                               rng.normal(0, 0.01, bias.shape)])
    return model


def images(shape, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (2, *shape)).astype("float32")


def assert_close(actual, expected):
    actual = keras.ops.convert_to_numpy(actual)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOL * np.abs(expected).max())


@pytest.mark.parametrize("name", keras_vgg.list_models())
def test_every_variant_equals_its_numpy_forward_pass(name):
    """Headless, non-square, just above the minimum size: the last pools round (ceil pools
    hang over the edge in VGG-F/M/S) and LRN and BN run with non-trivial parameters."""
    side = keras_vgg.min_input_size(name)
    shape = (side + 9, side + 4, 3)
    model = with_random_weights(build_vgg(name, include_top=False, input_shape=shape))
    x = preprocess_input(images(shape), "caffe")
    assert_close(model(x), numpy_forward(model, x))


@pytest.mark.filterwarnings("ignore:.*fc1 takes a")
@pytest.mark.parametrize("name", ["vgg11_lrn", "vgg_f", "vgg11_bn"])
def test_keras_file_round_trip_on_this_backend(name, tmp_path):
    """Every layer kind (LRN, ceil pooling, BN, the top) through `.keras`, safe mode."""
    side = keras_vgg.min_input_size(name)
    model = with_random_weights(build_vgg(name, input_shape=(side, side, 3), classes=10))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = images((side, side, 3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)),
                                  keras.ops.convert_to_numpy(model(x)))
    assert (loaded.variant, loaded.preprocessing) == (model.variant, model.preprocessing)


MEANS = {"caffe": ([103.939, 116.779, 123.68], None, True),
         "torch": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], False)}


@pytest.mark.parametrize("mode", ["caffe", "torch", "tf", "mean_image"])
def test_preprocess_input_on_backend_tensors(mode):
    x = images((4, 4, 3))
    if mode == "tf":
        expected = x / 127.5 - 1
    elif mode == "mean_image":
        expected = x - [120.0, 115.0, 100.0]
    else:
        mean, std, bgr = MEANS[mode]
        y = x[..., ::-1] if bgr else x / 255
        expected = (y - mean) / (std or 1)
    mean = [120.0, 115.0, 100.0] if mode == "mean_image" else None
    got = preprocess_input(keras.ops.convert_to_tensor(x), mode, mean=mean)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-6, atol=1e-5)
