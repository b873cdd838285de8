"""Every bad argument raises ValueError naming the argument, what was expected and received."""

import keras
import numpy as np
import pytest

from keras_vgg import build_vgg

CASES = [
    # (variant, kwargs, argument named in the message, a fragment of what was expected)
    ("vgg16", dict(include_top=False, pooling="mean"), "pooling", "None, 'avg' or 'max'"),
    ("vgg16", dict(include_top=True, pooling="avg"), "pooling", "include_top=True"),
    ("vgg16", dict(include_top=False, input_shape=(31, 31, 3)), "input_shape", "at least 32x32"),
    ("vgg_f", dict(include_top=False, input_shape=(38, 64, 3)), "input_shape", "at least 39x39"),
    ("vgg_m", dict(include_top=False, input_shape=(40, 40, 3)), "input_shape", "at least 41x41"),
    ("vgg_s", dict(include_top=False, input_shape=(30, 30, 3)), "input_shape", "at least 31x31"),
    ("vgg16", dict(include_top=True, input_shape=(None, None, 3)), "input_shape", "fixed"),
    ("vgg16", dict(include_top=True, weights="imagenet", input_shape=(64, 64, 3)),
     "input_shape", "(224, 224, 3)"),
    ("vgg16", dict(include_top=False, weights="imagenet", input_shape=(64, 64, 1)),
     "input_shape", "3 channels"),
    ("vgg16", dict(input_shape=(64, 64)), "input_shape", "(height, width, channels)"),
    ("vgg16", dict(input_shape=(64, 64, None)), "input_shape", "(height, width, channels)"),
    ("vgg16", dict(input_shape=(64, -1, 3)), "input_shape", "positive ints"),
    ("vgg16", dict(weights="/no/such/file.weights.h5"), "weights", "existing weights file"),
    ("vgg16", dict(weights=3), "weights",
     "None, one of ('imagenet', 'keras', 'torchvision', 'matconvnet') or a path"),
    ("vgg16c", dict(weights="imagenet"), "weights", "No published weights 'imagenet' for vgg16c"),
    ("vgg_m", dict(weights="torchvision"), "weights", "or one of ['imagenet', 'matconvnet']"),
    ("vgg16", dict(weights="/tmp/x.onnx"), "weights", "existing weights file"),
    ("vgg16", dict(include_top=False, adaptive_pool=7), "adaptive_pool", "include_top=True"),
    ("vgg16", dict(adaptive_pool=0), "adaptive_pool", "positive int"),
    ("vgg16", dict(weights="torchvision", classes=10), "classes", "classes=1000"),
    ("vgg16", dict(weights="imagenet", classes=10), "classes", "classes=1000"),
    ("vgg16", dict(weights="imagenet", classifier_activation="relu"), "classifier_activation",
     "None or 'softmax'"),
    ("vgg16", dict(classes=0), "classes", "positive int"),
    ("vgg16", dict(classes=2.5), "classes", "positive int"),
    ("vgg16", dict(dropout=1.0), "dropout", "[0, 1)"),
    ("vgg16", dict(dropout="half"), "dropout", "[0, 1)"),
    ("vgg16", dict(include_top="yes"), "include_top", "True or False"),
    ("vgg_f", dict(batch_norm=True), "batch_norm", "without LRN"),
    ("vgg11_lrn", dict(batch_norm=True), "batch_norm", "without LRN"),
    ("vgg16", dict(batch_norm=1), "batch_norm", "True or False"),
    ("vgg17", dict(), "variant", "Unknown VGG variant"),
    ("vgg16", dict(classifier_activation="softmx"), "classifier_activation", "Keras activation"),
    ("vgg16", dict(include_top=False, input_shape=(64, 64, True)), "input_shape", "positive ints"),
    ("vgg16", dict(input_tensor=np.zeros((1, 32, 32, 3))), "input_tensor", "Keras tensor"),
    ("vgg16", dict(include_top=False, input_tensor=keras.Input((10,))), "input_tensor", "rank 4"),
]


@pytest.mark.parametrize("variant, kwargs, argument, expected", CASES,
                         ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_raises_value_error_naming_argument(variant, kwargs, argument, expected):
    with pytest.raises(ValueError) as info:
        build_vgg(variant, **kwargs)
    message = str(info.value)
    assert f"{argument}=" in message and "Received" in message
    assert expected in message


def test_input_shape_must_match_input_tensor():
    with pytest.raises(ValueError, match="input_shape=.*"):
        build_vgg("vgg11", include_top=False, input_tensor=keras.Input((32, 32, 3)),
                  input_shape=(64, 64, 3))


def test_input_tensor_too_small():
    with pytest.raises(ValueError, match=r"at least 32x32.*input_shape=\(16, 16, 3\)"):
        build_vgg("vgg11", include_top=False, input_tensor=keras.Input((16, 16, 3)))


def test_channels_first_rejected(monkeypatch):
    monkeypatch.setattr(keras.config, "image_data_format", lambda: "channels_first")
    with pytest.raises(ValueError, match="channels_last"):
        build_vgg("vgg11", include_top=False)


def test_channels_first_shape_is_named_as_such():
    with pytest.raises(ValueError, match=r"Expected channels last.*\(3, 224, 224\) looks channels "
                                         r"first. Received: input_shape=\(3, 224, 224\)"):
        build_vgg("vgg16", include_top=False, input_shape=(3, 224, 224))


def test_a_top_at_another_size_warns_that_fc1_changes():
    with pytest.warns(UserWarning, match=r"fc1 takes a 2x2x512 map \(2,048 inputs\) instead of "
                                         r"7x7x512 at 224x224.*adaptive_pool=7"):
        build_vgg("vgg16", input_shape=(64, 64, 3), classes=10)
    with pytest.warns(UserWarning, match=r"1x1x256 map .* instead of 6x6x256.*adaptive_pool=6"):
        build_vgg("vgg_f", input_shape=(64, 64, 3), classes=10)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_vgg("vgg11", input_shape=(64, 64, 3), classes=10, adaptive_pool=7)
        build_vgg("vgg11", include_top=False, input_shape=(64, 64, 3))


def test_non_rgb_input_allowed_without_pretrained_weights():
    model = build_vgg("vgg11", include_top=False, input_shape=(32, 32, 1))
    assert model.get_layer("block1_conv1").kernel.shape == (3, 3, 1, 64)


def test_weights_file_of_unknown_format(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"not weights")
    with pytest.raises(ValueError, match=r"Keras weights file \(\.weights\.h5.*weights="):
        build_vgg("vgg11", include_top=False, weights=str(path))


def test_corrupt_weights_file(tmp_path):
    path = tmp_path / "broken.weights.h5"
    path.write_bytes(b"\x89HDF truncated")
    with pytest.raises(ValueError, match=r"Could not read the weights file.*weights="):
        build_vgg("vgg11", include_top=False, weights=str(path))


def test_shape_and_number_types_keras_accepts():
    import tensorflow as tf

    model = build_vgg("vgg11", include_top=False, input_shape=tf.TensorShape([32, 32, 3]))
    assert model.input_shape == (None, 32, 32, 3)
    model = build_vgg("vgg11", input_shape=(np.int64(32), 32, 3), classes=np.int64(10),
                      dropout=np.float32(0.25))
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(depth_radius=-1), "depth_radius"), (dict(depth_radius=True), "depth_radius"),
    (dict(bias="x"), "bias"), (dict(alpha=-1.0), "alpha"), (dict(beta=None), "beta")])
def test_lrn_bad_arguments(kwargs, argument):
    from keras_vgg import LocalResponseNormalization

    with pytest.raises(ValueError, match=f"{argument}="):
        LocalResponseNormalization(**kwargs)


def test_describe_needs_fixed_shape():
    from keras_vgg import describe

    with pytest.raises(ValueError, match="input_shape="):
        describe("vgg16", (None, None, 3), include_top=False)
