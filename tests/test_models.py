"""Built Keras models: sizes, names, keras.applications compatibility, serialisation."""

import dataclasses
import hashlib

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg import build_vgg, describe, get_model, list_models
from keras_vgg.configs import Conv, layer_names
from keras_vgg.models import get_model_builder, public_builders

from test_configs import FAST_NET_POOLS, PARAMS

SMALL = (64, 64, 3)
# A fresh Python process loading one small .keras file: about 10 s (TensorFlow's import); a
# hung one fails its test at this bound instead of holding CI.
CHILD_TIMEOUT_S = 180


def images(n=2, shape=SMALL, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n,) + shape).astype("float32")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "vgg19", "vgg16_bn", "vgg_m_128"])
def test_keras_counts_params_at_224(name):
    """Keras's own count at 224 equals the published figures, for one of each kind (plain,
    BN counted 4 per channel, a fast net with ceil pools and a narrow fc2). The other 13
    need no 224 build: test_configs checks the table's count at 224 for every variant, and
    test_layer_shapes_match_table_walk checks Keras's per-layer counts against the table."""
    with_top, headless = PARAMS[name]
    assert build_vgg(name).count_params() == with_top
    keras.backend.clear_session()
    assert build_vgg(name, include_top=False).count_params() == headless


@pytest.mark.parametrize("name", list_models())
def test_layer_shapes_match_table_walk(name):
    model = build_vgg(name, input_shape=SMALL, classes=10)
    for row in describe(name, SMALL, classes=10).layers:
        assert model.get_layer(row.name).output.shape[1:] == row.output_shape, row.name
        # The table counts a conv's BN with the conv; Keras has it in `{conv}_bn`.
        keras_params = sum(l.count_params() for l in model.layers
                           if l.name == row.name or l.name.startswith(row.name + "_"))
        assert keras_params == row.params, row.name


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAST_NET_POOLS))
def test_fast_nets_at_224_fc6_sees_6x6(name):
    pools, fc6 = FAST_NET_POOLS[name]
    model = build_vgg(name, include_top=False, input_shape=(224, 224, 3))
    assert {k: model.get_layer(k).output.shape[1] for k in pools} == pools
    assert tuple(model.output.shape[1:]) == fc6


KERAS_APPS = {"vgg16": keras.applications.VGG16, "vgg19": keras.applications.VGG19}


def weight_layout(model):
    return [(w.path, tuple(w.shape)) for w in model.weights]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KERAS_APPS))
def test_layer_names_and_weight_shapes_equal_keras_applications(name):
    """Names and layout at 32x32 with 10 classes (the size changes only fc1's rows and the
    classes only the last layer); one pair at 224 with 1000 classes for those two."""
    small = dict(input_shape=(32, 32, 3), classes=10)
    theirs = KERAS_APPS[name](weights=None, **small)
    ours = build_vgg(name, dropout=0, **small)
    assert [l.name for l in ours.layers[1:]] == [l.name for l in theirs.layers[1:]]
    assert weight_layout(ours) == weight_layout(theirs)
    # With the papers' dropout the extra layers carry no weights: same weight layout.
    with_dropout = build_vgg(name, **small)
    assert weight_layout(with_dropout) == weight_layout(theirs)
    assert [l.name for l in with_dropout.layers if "dropout" not in l.name][1:] == [
        l.name for l in theirs.layers[1:]
    ]
    keras.backend.clear_session()
    assert weight_layout(build_vgg(name)) == weight_layout(KERAS_APPS[name](weights=None))


@pytest.mark.parametrize("name", list(KERAS_APPS))
@pytest.mark.parametrize("suffix", [  # Keras's published format on every backend too
    ".h5", pytest.param("-weights-only.h5", marks=pytest.mark.backend), ".weights.h5"])
@pytest.mark.parametrize("include_top", [True, False])
def test_keras_applications_weights_load_unchanged(tmp_path, name, suffix, include_top):
    kwargs = dict(include_top=include_top, input_shape=(32, 32, 3))
    if include_top:
        kwargs["classes"] = 10
    theirs = KERAS_APPS[name](weights=None, **kwargs)
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".h5":  # a whole model in legacy HDF5
        theirs.save(path)
    elif suffix == "-weights-only.h5":  # the format of Keras's published files (by topology)
        import h5py
        from keras.src.legacy.saving import legacy_h5_format

        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, theirs)
    else:
        theirs.save_weights(path)
    ours = build_vgg(name, weights=str(path), **kwargs)
    x = images(shape=(32, 32, 3))
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


# The .keras and config round trips of every variant: tests/test_contract.py.


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_headless_pooling_gives_n_by_channels(name, pooling):
    model = build_vgg(name, include_top=False, input_shape=SMALL, pooling=pooling)
    channels = describe(name, SMALL, include_top=False).fc6_input[-1]
    assert model(images(3)).shape == (3, channels)


def test_headless_default_accepts_any_size():
    model = keras_vgg.VGG16(include_top=False)
    assert model.input_shape == (None, None, None, 3)
    assert model(images(1, (48, 80, 3))).shape == (1, 1, 2, 512)


def test_batch_norm_form_layers():
    model = keras_vgg.VGG11(batch_norm=True, include_top=False, input_shape=SMALL)
    assert model.name == "vgg11_bn"
    names = [l.name for l in model.layers]
    assert names[1:4] == ["block1_conv1", "block1_conv1_bn", "block1_conv1_relu"]
    bn = model.get_layer("block1_conv1_bn")
    assert (bn.epsilon, bn.momentum) == (1e-5, 0.9)  # torchvision's
    # Inference uses the moving statistics; training=True uses the batch's and updates them.
    rng = np.random.default_rng(1)
    mean, var = rng.normal(size=64).astype("float32"), rng.uniform(1, 2, 64).astype("float32")
    gamma, beta = rng.normal(size=64).astype("float32"), rng.normal(size=64).astype("float32")
    bn.set_weights([gamma, beta, mean, var])
    probe = keras.Model(model.input, [model.get_layer("block1_conv1").output, bn.output])
    conv_out, bn_out = probe(images(), training=False)
    expected = (np.asarray(conv_out) - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(bn_out, expected, rtol=1e-4, atol=1e-4)
    _, bn_train = probe(images(), training=True)
    assert not np.allclose(bn_train, bn_out, atol=1e-3)


def test_dropout_layers_and_rate():
    model = keras_vgg.VGG16(input_shape=(32, 32, 3), classes=10)
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.5, 0.5]
    assert [l.name for l in model.layers[-5:]] == ["fc1", "fc1_dropout", "fc2", "fc2_dropout",
                                                   "predictions"]
    model = keras_vgg.VGG16(input_shape=(32, 32, 3), classes=10, dropout=0.2)
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.2, 0.2]
    model = keras_vgg.VGG16(input_shape=(32, 32, 3), classes=10, dropout=0)
    assert not any(isinstance(l, keras.layers.Dropout) for l in model.layers)


def test_vgg_m_conv2_pads_symmetrically():
    model = keras_vgg.VGGM(include_top=False, input_shape=(224, 224, 3))
    assert model.get_layer("block2_conv1_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("block2_conv1").output.shape[1:3] == (26, 26)


def test_lrn_placement():
    model = keras_vgg.VGG11LRN(include_top=False, input_shape=SMALL)
    assert [l.name for l in model.layers[1:4]] == ["block1_conv1", "block1_lrn", "block1_pool"]
    model = keras_vgg.VGGS(include_top=False, input_shape=SMALL)
    assert [l.name for l in model.layers if "lrn" in l.name] == ["block1_lrn"]


def test_input_tensor_and_classifier_activation():
    inputs = keras.Input((32, 32, 3))
    model = keras_vgg.VGG13(input_tensor=inputs, classes=7, classifier_activation=None)
    assert model.inputs[0] is inputs
    logits = model(images(2, (32, 32, 3)))
    assert logits.shape == (2, 7)
    assert not np.allclose(np.sum(logits, axis=-1), 1.0)
    probs = keras_vgg.VGG13(input_shape=(32, 32, 3), classes=7)(images(2, (32, 32, 3)))
    np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, rtol=1e-5)


def test_nested_input_tensor_uses_source_inputs():
    inputs = keras.Input((32, 32, 3))
    scaled = keras.layers.Rescaling(1.0)(inputs)
    model = keras_vgg.VGG11(input_tensor=scaled, include_top=False)
    assert model.inputs[0] is inputs


def test_builders_registry_and_all_agree():
    import inspect

    BUILDERS = public_builders()
    public = {"VGG11", "VGG11LRN", "VGG13", "VGG16C", "VGG16", "VGG19", "VGGF", "VGGM", "VGGS",
              "VGGM2048", "VGGM1024", "VGGM128"}
    assert set(BUILDERS) == public
    assert public <= set(keras_vgg.__all__)
    assert all(hasattr(keras_vgg, n) for n in keras_vgg.__all__)
    built = {BUILDERS[n](include_top=False, input_shape=SMALL).name for n in public}
    assert built == {n for n in list_models() if not n.endswith("_bn")}
    assert get_model("VGGS", include_top=False, input_shape=SMALL).name == "vgg_s"
    assert get_model("D-BN", include_top=False, input_shape=SMALL).name == "vgg16_bn"
    signature = list(inspect.signature(build_vgg).parameters.values())[1:]
    for name, builder in BUILDERS.items():
        assert builder.__name__ == name and "Example:" in builder.__doc__
        assert getattr(keras_vgg, name) is builder
        assert keras_vgg.get_config(name).name == builder(include_top=False).name  # one table
        assert list(inspect.signature(builder).parameters.values()) == signature
    assert [p.name for p in signature[:8]] == [
        "include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
        "classifier_activation", "name"]
    assert get_model_builder("d-bn")(False, input_shape=SMALL).name == "vgg16_bn"  # positional
    with pytest.raises(TypeError, match="variant"):
        keras_vgg.VGG16(variant="vgg19")


def test_imagenet_weights_use_keras_file_and_hash(monkeypatch, tmp_path):
    """The real weights="imagenet" path, with get_file returning a file made here (whose md5
    the Keras record is made to publish)."""
    source = keras.applications.VGG16(weights=None, include_top=False)
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    source.save(path)
    calls = []

    def fake_get_file(fname, origin, cache_subdir):
        calls.append((fname, origin, cache_subdir))
        return str(path)

    record = keras_vgg.weights.find_weights("vgg16", include_top=False)
    assert record.file_hash == "6d6bbae143d832006294945121d1f1fc"
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    table = tuple(dataclasses.replace(r, file_hash=md5) if r == record else r
                  for r in keras_vgg.weights.WEIGHTS)
    monkeypatch.setattr(keras_vgg.weights, "WEIGHTS", table)
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    ours = keras_vgg.VGG16(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    assert calls == [(
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "models",
    )]
    for a, b in zip(ours.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert ours.preprocessing.mode == "caffe"


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_weights_file_that_does_not_fit_is_a_clear_error(tmp_path):
    path = tmp_path / "vgg11.weights.h5"
    keras_vgg.VGG11(input_shape=(32, 32, 3), classes=10).save_weights(path)
    with pytest.raises(ValueError) as info:
        keras_vgg.VGG11(input_shape=(32, 32, 3), classes=12, weights=str(path))
    assert str(info.value) == (
        "The weights file does not fit vgg11 (vgg11, include_top=True): layer predictions has "
        f"shape (4096, 12), the file (4096, 10). Received: weights={str(path)!r}"
    )
    with pytest.raises(ValueError, match="weights="):
        keras_vgg.VGG16(include_top=False, input_shape=SMALL, weights=str(path))


def test_weights_table_num_params_match_models():
    """Each record's count is its publisher's: trainable parameters (BN moving statistics
    are not parameters in torchvision's count)."""
    from keras_vgg.weights import WEIGHTS

    for record in WEIGHTS:
        config = keras_vgg.get_config(record.variant)
        moving_statistics = sum(2 * spec.filters for _, spec in layer_names(config)
                                if isinstance(spec, Conv)) if config.batch_norm else 0
        params = describe(config, include_top=record.has_top).params
        assert params - moving_statistics == record.num_params, record
        if "_bn" not in record.variant:
            assert PARAMS[record.variant][0 if record.has_top else 1] == record.num_params


def test_a_keras_file_alone_carries_variant_preprocessing_and_class_names(tmp_path):
    """The record is in the model's config: a .keras file copied alone and loaded in a fresh
    process (safe_mode=True) still knows them; a model from weights=None knows no
    preprocessing."""
    import subprocess
    import sys

    model = build_vgg("vgg_m", include_top=False, input_shape=(48, 48, 3), pooling="avg")
    assert (model.variant, model.preprocessing, model.class_names) == ("vgg_m", None, None)
    model.preprocessing = {"mode": "mean_image", "mean": [120.5, 110.25, 100.0]}
    model.class_names = ["cat", "dog"]
    (tmp_path / "alone").mkdir()
    model.save(tmp_path / "alone" / "lone.keras")
    code = ("import keras, keras_vgg; m = keras.saving.load_model('lone.keras', safe_mode=True); "
            "print(type(m).__name__, m.variant, m.preprocessing.mode, "
            "m.preprocessing.mean.tolist(), m.class_names)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path / "alone", timeout=CHILD_TIMEOUT_S)
    assert result.stdout.strip().splitlines()[-1] == (
        "VGGModel vgg_m mean_image [120.5, 110.25, 100.0] ['cat', 'dog']"), result.stderr[-2000:]


def test_class_names_must_be_strings():
    model = build_vgg("vgg11", include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"Expected `class_names` to be a list of strings. "
                                         r"Received: class_names='cat'"):
        model.class_names = "cat"
    with pytest.raises(ValueError, match="preprocessing"):
        model.preprocessing = "bgr"


def torch_adaptive_average(x, n):
    """torch.nn.AdaptiveAvgPool2d's bins: rows floor(i*h/n) to ceil((i+1)*h/n)."""
    h, w = x.shape[1:3]
    out = np.zeros((x.shape[0], n, n, x.shape[3]), "float32")
    for i in range(n):
        for j in range(n):
            rows = slice(i * h // n, -(-(i + 1) * h // n))
            cols = slice(j * w // n, -(-(j + 1) * w // n))
            out[:, i, j] = x[:, rows, cols].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("size, n", [(32, 7), (32, 1), (64, 1), (64, 7), (96, 2)])
def test_adaptive_pool_matches_torchvision_at_every_map_size(size, n):
    """1x1 -> 7x7 (torchvision's classifier on 32 px inputs) and n=1 included, which Keras's
    own AdaptiveAveragePooling2D cannot do."""
    model = build_vgg("vgg11", input_shape=(size, size, 3), classes=3, adaptive_pool=n)
    pool = model.get_layer("avgpool")
    probe = keras.Model(model.input, [pool.input, pool.output])
    before, after = probe.predict(images(2, (size, size, 3)), verbose=0)
    assert after.shape == (2, n, n, 512)
    np.testing.assert_allclose(after, torch_adaptive_average(before, n), rtol=1e-5, atol=1e-5)
