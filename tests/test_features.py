"""Feature extractors by layer name and the dense (fully-convolutional) form."""

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg.features import block_outputs, feature_extractor, to_dense


def images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


BLOCK_SHAPES_64 = {
    "vgg16": [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512), (2, 2, 512)],
    "vgg19_bn": [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512), (2, 2, 512)],
    # F/M/S: block i holds conv{i}; blocks 3 and 4 end in their conv.
    "vgg_f": [(7, 7, 64), (3, 3, 256), (3, 3, 256), (3, 3, 256), (1, 1, 256)],
    "vgg_s": [(10, 10, 96), (3, 3, 256), (3, 3, 512), (3, 3, 512), (1, 1, 512)],
}


@pytest.mark.parametrize("name", list(BLOCK_SHAPES_64))
def test_default_extractor_gives_block_outputs(name):
    extractor = feature_extractor(name, input_shape=(64, 64, 3))
    assert [tuple(o.shape[1:]) for o in extractor.outputs] == BLOCK_SHAPES_64[name]
    features = extractor(images(2, 64))
    assert [tuple(f.shape) for f in features] == [(2,) + s for s in BLOCK_SHAPES_64[name]]


def test_block_output_names():
    assert block_outputs(keras_vgg.VGG16(include_top=False)) == [
        f"block{i}_pool" for i in range(1, 6)]
    assert block_outputs(keras_vgg.VGGF(include_top=False)) == [
        "block1_pool", "block2_pool", "block3_conv1", "block4_conv1", "block5_pool"]
    assert block_outputs(keras_vgg.VGG11(include_top=False, batch_norm=True))[2] == "block3_pool"


def test_extractor_shares_weights_with_model():
    model = keras_vgg.VGG13(include_top=False, input_shape=(32, 32, 3))
    extractor = feature_extractor(model, layers=["block2_conv2", "block5_pool"])
    x = images(1, 32)
    np.testing.assert_allclose(extractor(x)[1], model(x), rtol=1e-6)
    assert extractor.get_layer("block1_conv1") is model.get_layer("block1_conv1")


@pytest.mark.backend
def test_extractor_as_dict_keys_outputs_by_layer_name():
    model = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3))
    names = ["block3_pool", "block1_conv1"]
    as_list = feature_extractor(model, layers=names)
    as_dict = feature_extractor(model, layers=names, as_dict=True)
    x = images(1, 32)
    got = as_dict(x)
    assert sorted(got) == sorted(names)  # torch's outputs come back in sorted key order
    for name, tensor in zip(names, as_list(x)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got[name]),
                                      keras.ops.convert_to_numpy(tensor))


@pytest.mark.backend
def test_extractor_on_fine_tuned_models_nested_base():
    base = keras_vgg.VGG16(include_top=False, input_shape=(64, 64, 3))
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1.0)(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    fine_tuned = keras.Model(inputs, keras.layers.Dense(3)(x))

    default = feature_extractor(fine_tuned)
    assert [tuple(o.shape[1:]) for o in default.outputs] == BLOCK_SHAPES_64["vgg16"]
    one = feature_extractor(fine_tuned, layers=["block4_conv3"])
    assert one(images(1, 64)).shape == (1, 8, 8, 512)  # no "graph disconnected"


@pytest.mark.parametrize("layers", [["block9_conv1"], "block1_conv1", []])
def test_extractor_bad_layers(layers):
    with pytest.raises(ValueError, match="layers="):
        feature_extractor(keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3)), layers)


def test_extractor_rejects_build_args_with_a_model():
    with pytest.raises(ValueError, match="input_shape"):
        feature_extractor(keras_vgg.VGG11(include_top=False), input_shape=(32, 32, 3))


@pytest.mark.parametrize("name, size, bigger, map_size", [  # two on every backend
    ("vgg16", 64, 96, 2), pytest.param("vgg_f", 96, 128, 2, marks=pytest.mark.backend),
    pytest.param("vgg11_bn", 64, 128, 3, marks=pytest.mark.backend), ("vgg11_lrn", 64, 64, 1),
    ("vgg_m_128", 96, 96, 1)])
def test_dense_equals_original_at_its_size_and_maps_larger(name, size, bigger, map_size):
    model = keras_vgg.build_vgg(name, input_shape=(size, size, 3), classes=10)
    dense = to_dense(model)
    x = images(2, size)
    np.testing.assert_allclose(dense.predict(x, verbose=0)[:, 0, 0],
                               model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    assert dense(images(1, bigger)).shape == (1, map_size, map_size, 10)
    assert dense.get_layer("fc1").kernel.shape[:2] == model.get_layer("flatten").input.shape[1:3]


@pytest.mark.slow
def test_dense_vgg16_at_224_288_384():
    model = keras_vgg.VGG16()
    dense = to_dense(model)
    assert dense.get_layer("fc1").kernel.shape == (7, 7, 512, 4096)
    assert dense.get_layer("predictions").kernel.shape == (1, 1, 4096, 1000)
    x = images(1, 224)
    np.testing.assert_allclose(dense.predict(x, verbose=0)[:, 0, 0], model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-6)
    # 288 / 32 = 9 -> 9 - 7 + 1 = 3; 384 / 32 = 12 -> 6; (256 -> 2).
    for size, side in ((256, 2), (288, 3), (384, 6)):
        scores = dense(images(1, size))
        assert scores.shape == (1, side, side, 1000)
        np.testing.assert_allclose(np.sum(scores, axis=-1), 1.0, rtol=1e-4)


@pytest.mark.backend
def test_dense_keras_round_trip(tmp_path):
    dense = to_dense(keras_vgg.VGGM(input_shape=(64, 64, 3), classes=4))
    dense.save(tmp_path / "dense.keras")
    loaded = keras.saving.load_model(tmp_path / "dense.keras", safe_mode=True)
    x = images(1, 96)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(dense(x)), rtol=1e-6)


def test_dense_needs_the_top():
    with pytest.raises(ValueError, match="model="):
        to_dense(keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3)))


def test_extractor_and_dense_keep_the_record_through_a_keras_file(tmp_path):
    """Both return a VGGModel with the source's record: decode_predictions finds the dense
    model's class names, and a saved extractor still says its preprocessing."""
    from keras_vgg import decode_predictions
    from keras_vgg.saving import record_of
    from keras_vgg.vgg_model import VGGModel

    model = keras_vgg.VGG11(input_shape=(32, 32, 3), classes=3, adaptive_pool=1)
    model.preprocessing, model.class_names = "torch", ["cat", "dog", "fox"]
    dense = to_dense(model)
    assert isinstance(dense, VGGModel)
    assert record_of(dense) == record_of(model)
    scores = dense.predict_on_batch(images(1, 32)).reshape(1, 3)
    assert {name for _, name, _ in decode_predictions(scores, model=dense, top=3)[0]} == {
        "cat", "dog", "fox"}
    extractor = feature_extractor(model, layers=["block2_pool"], as_dict=True)
    assert isinstance(extractor, VGGModel)
    assert record_of(extractor) == {"variant": "vgg11", "preprocessing": model.preprocessing,
                                    "class_names": None, "widths": None}  # features
    extractor.save(tmp_path / "features.keras")
    loaded = keras.saving.load_model(tmp_path / "features.keras")
    assert (type(loaded).__name__, loaded.variant, loaded.preprocessing.mode) == (
        "VGGModel", "vgg11", "torch")
    np.testing.assert_allclose(loaded(images(1, 32))["block2_pool"],
                               extractor(images(1, 32))["block2_pool"], atol=1e-5)
