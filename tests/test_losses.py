"""Perceptual and style losses: hand (NumPy) computations, a frozen VGG under ``fit``, and
saving with the model. Tiny: VGG11 at 32x32, weights=None (nothing downloads).

The tests marked ``backend`` also run under jax and torch in CI.
"""

import inspect

import keras
import numpy as np
import pytest

from keras_vgg import VGG11
from keras_vgg.losses import PerceptualLoss, StyleLoss, gram_matrix

TORCH_MEAN, TORCH_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def images(seed, n=2):
    return np.random.default_rng(seed).random((n, 32, 32, 3), dtype=np.float32)


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def hand_block1_conv1(loss, x):
    """``block1_conv1`` by hand: torch preprocessing of [0, 1] images, a 3x3 'same'
    convolution as a sum over the nine shifted copies, bias, ReLU."""
    kernel, bias = (np.asarray(w, "float64")
                    for w in loss.extractor.get_layer("block1_conv1").get_weights())
    pixels = (np.asarray(x, "float64") - TORCH_MEAN) / TORCH_STD
    padded = np.pad(pixels, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = pixels.shape[1:3]
    out = sum(padded[:, i:i + h, j:j + w] @ kernel[i, j] for i in range(3) for j in range(3))
    return np.maximum(out + bias, 0.0)


@pytest.mark.backend
def test_perceptual_loss_is_zero_for_the_same_images_positive_and_symmetric_otherwise():
    loss = PerceptualLoss(model="vgg11", layers=["block1_conv1", "block2_conv1"],
                          layer_weights=[1.0, 0.5], weights=None, preprocessing="torch")
    a, b = images(0), images(1)
    assert float(loss(a, a)) == 0.0
    ab, ba = float(loss(a, b)), float(loss(b, a))
    assert ab > 0
    assert ab == pytest.approx(ba, rel=1e-6)


@pytest.mark.backend
@pytest.mark.parametrize("distance", ["l2", "l1"])
def test_perceptual_loss_equals_a_numpy_computation(distance):
    """Two images, block1_conv1 only, computed by hand in NumPy (preprocessing, conv, ReLU,
    mean distance per image, mean over the batch): equal to 1e-5 relative."""
    loss = PerceptualLoss(model="vgg11", layers=["block1_conv1"], layer_weights=[2.0],
                          distance=distance, weights=None, preprocessing="torch")
    a, b = images(2), images(3)
    diff = hand_block1_conv1(loss, a) - hand_block1_conv1(loss, b)
    per_image = (np.abs(diff) if distance == "l1" else diff ** 2).mean(axis=(1, 2, 3))
    assert float(loss(a, b)) == pytest.approx(2.0 * per_image.mean(), rel=1e-5)


def test_perceptual_loss_weights_layers_and_ranges():
    """Per-layer weights add up as documented, and value_range (0, 255) takes pixels."""
    layers = ["block1_conv1", "block3_conv2"]
    both = PerceptualLoss(model="vgg11", layers=layers, layer_weights=[3.0, 0.25],
                          weights=None, preprocessing="torch")
    a, b = images(4), images(5)
    features_a, features_b = both.features(a), both.features(b)
    expected = sum(w * ((to_numpy(fa) - to_numpy(fb)) ** 2).mean(axis=(1, 2, 3))
                   for w, fa, fb in zip([3.0, 0.25], features_a, features_b)).mean()
    assert float(both(a, b)) == pytest.approx(expected, rel=1e-5)
    pixels = PerceptualLoss.from_config({**both.get_config(), "value_range": (0, 255)})
    pixels.extractor.set_weights(both.extractor.get_weights())
    assert float(pixels(a * 255, b * 255)) == pytest.approx(float(both(a, b)), rel=1e-5)


@pytest.mark.backend
def test_style_loss_equals_a_numpy_gram_computation():
    """Gram = F^T F / (H W C) per image, squared Frobenius distance, summed over layers with
    their weights, mean over the batch: equal to 1e-5 relative."""
    loss = StyleLoss(model="vgg11", layers=["block1_conv1"], layer_weights=[10.0],
                     weights=None, preprocessing="torch")
    a, b = images(6), images(7)

    def gram(f):
        n, h, w, c = f.shape
        flat = f.reshape(n, h * w, c)
        return np.einsum("npc,npd->ncd", flat, flat) / (h * w * c)

    fa, fb = hand_block1_conv1(loss, a), hand_block1_conv1(loss, b)
    expected = 10.0 * ((gram(fa) - gram(fb)) ** 2).sum(axis=(1, 2)).mean()
    assert float(loss(a, b)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(a, a)) == 0.0
    np.testing.assert_allclose(to_numpy(gram_matrix(keras.ops.convert_to_tensor(fa, "float32"))),
                               gram(fa), rtol=1e-5)


@pytest.mark.backend
def test_the_vgg_stays_frozen_in_inference_mode_while_a_model_trains_with_the_loss():
    """Two ``fit`` steps of a one-conv generator trained with the loss: the generator moves,
    every VGG weight (batch-norm statistics included: inference mode) stays bit-equal, and
    the loss keeps the one VGG it built."""
    keras.utils.set_random_seed(0)
    loss = PerceptualLoss(model="vgg11_bn", layers=["block1_conv1_relu", "block2_conv1_relu"],
                          weights=None, preprocessing="torch")
    extractor = loss.extractor
    vgg_before = [np.array(w) for w in extractor.get_weights()]
    generator = keras.Sequential([keras.Input((32, 32, 3)),
                                  keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid")])
    generator_before = [np.array(w) for w in generator.get_weights()]
    generator.compile(keras.optimizers.Adam(1e-2), loss=loss)
    generator.fit(images(8, 4), images(9, 4), batch_size=2, epochs=1, verbose=0)
    assert loss.extractor is extractor and not extractor.trainable_weights
    for before, after in zip(vgg_before, extractor.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(b, a) for b, a in zip(generator_before,
                                                        generator.get_weights()))


def test_the_loss_saves_and_loads_with_the_model(tmp_path):
    """A generator compiled with the loss (its VGG from a weights file) round-trips through a
    .keras file under safe_mode=True: the same config and the same loss values."""
    vgg_file = tmp_path / "vgg11_notop.weights.h5"
    VGG11(include_top=False, input_shape=(32, 32, 3)).save_weights(vgg_file)
    loss = PerceptualLoss(model="vgg11", layers=["block2_conv1"], weights=vgg_file,
                          preprocessing="torch", value_range=(0, 1))
    generator = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Activation("sigmoid")])
    generator.compile("adam", loss=loss)
    generator.save(tmp_path / "generator.keras")
    loaded = keras.saving.load_model(tmp_path / "generator.keras", safe_mode=True)
    reloaded = loaded.loss
    assert isinstance(reloaded, PerceptualLoss)
    assert reloaded.get_config() == loss.get_config()
    a, b = images(10), images(11)
    assert float(reloaded(a, b)) == pytest.approx(float(loss(a, b)), rel=1e-6)


@pytest.mark.parametrize("cls", [PerceptualLoss, StyleLoss])
def test_config_holds_every_argument_and_round_trips(cls):
    loss = cls(model="vgg11", weights=None, preprocessing="caffe", value_range=(-1, 1))
    config = loss.get_config()
    assert set(inspect.signature(cls.__init__).parameters) - {"self"} == set(config)
    assert cls.from_config(config).get_config() == config
    default = {"layers": ["block2_conv1"]} if cls is PerceptualLoss else {
        "layers": ["block1_conv1", "block2_conv1", "block3_conv2", "block4_conv2"]}
    assert {k: config[k] for k in default} == default


@pytest.mark.parametrize("arguments, message", [
    ({"layers": ["block1_conv1", "block9_conv9"]},
     "Expected `layers` to name layers of vgg11 (one of ['block1_conv1', 'block1_pool', "),
    ({"layers": "block1_conv1"}, "Expected `layers` to be a non-empty list of layer names"),
    ({"layer_weights": [1.0, 2.0]}, "Expected `layer_weights` to be 1 numbers, one per layer"),
    ({"distance": "l3"}, "Expected `distance` to be one of ['l1', 'l2']. Received: distance='l3'"),
    ({"value_range": (1, 0)}, "Expected `value_range` to be (low, high) with low < high"),
    ({"preprocessing": None}, "does not record its preprocessing"),
])
def test_bad_arguments_say_what_was_expected(arguments, message):
    kwargs = {"model": "vgg11", "weights": None, "preprocessing": "torch", **arguments}
    with pytest.raises(ValueError) as error:
        PerceptualLoss(**kwargs)
    assert message in str(error.value)
