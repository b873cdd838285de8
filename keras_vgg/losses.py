"""Losses in a VGG's feature space: perceptual (content) and style, as Keras losses.

``PerceptualLoss`` compares the features of ``y_pred`` and ``y_true`` at chosen layers
(Johnson et al. 2016, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution"); ``StyleLoss`` compares their Gram matrices (Gatys et al. 2015, "A Neural
Algorithm of Artistic Style"). Both take images in ``value_range`` (default [0, 1]), scale
them to [0, 255] pixels and apply the preprocessing of the VGG's weights, run a headless VGG
built once, frozen and called in inference mode, and return one value per image. They are
registered Keras objects: ``compile(loss=PerceptualLoss(...))`` saves and loads with the
model, and they work in custom loops and on every backend.

Example:
    >>> import numpy as np
    >>> from keras_vgg.losses import PerceptualLoss, StyleLoss
    >>> loss = PerceptualLoss(model="vgg11", layers=["block1_conv1", "block2_conv1"],
    ...                       weights=None, preprocessing="torch")
    >>> images = np.random.default_rng(0).random((2, 32, 32, 3), dtype="float32")
    >>> float(loss(images, images)), float(loss(images, 1 - images)) > 0
    (0.0, True)
    >>> style = StyleLoss(model="vgg11", weights=None, preprocessing="torch")
    >>> style.layers
    ['block1_conv1', 'block2_conv1', 'block3_conv2', 'block4_conv2']
"""

from __future__ import annotations

import os
import re

import keras
from keras import ops

from keras_vgg._helpers import expected
from keras_vgg.features import feature_extractor
from keras_vgg.models import build_vgg
from keras_vgg.preprocessing import as_preprocessing, model_preprocessing

DISTANCES = ("l1", "l2")
_CONV = re.compile(r"block(\d+)_conv\d+(_relu)?$")


def conv_outputs(model) -> dict[int, str]:
    """``{block: name}``: the rectified output of each block's last convolution
    (``block2_conv2`` in VGG16, ``block2_conv2_relu`` in its batch-norm form)."""
    found = {}
    for layer in model.layers:
        match = _CONV.match(layer.name)
        if match:
            found[int(match.group(1))] = layer.name
    return found


def gram_matrix(features):
    """Gram matrices ``(N, C, C)`` of features ``(N, H, W, C)``, divided by ``H * W * C``
    (Johnson et al.), so layers of any size weigh alike."""
    shape = ops.shape(features)
    size = ops.cast(shape[1] * shape[2] * shape[3], features.dtype)
    return ops.einsum("nhwc,nhwd->ncd", features, features) / size


class _FeatureLoss(keras.losses.Loss):
    """What both losses share: the frozen VGG, the input scaling and preprocessing, layer
    checks and the config. Subclasses give ``DEFAULT_BLOCKS`` and ``term``."""

    DEFAULT_BLOCKS = ()

    def __init__(self, layers=None, layer_weights=None, model="vgg16", weights="imagenet",
                 value_range=(0.0, 1.0), preprocessing=None, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.model = model
        self.weights = os.fspath(weights) if isinstance(weights, os.PathLike) else weights
        self.value_range = _check_range(value_range)
        vgg = build_vgg(model, include_top=False, weights=self.weights,
                        input_shape=(None, None, 3))
        self.layers = self._check_layers(vgg, layers)
        self.layer_weights = _check_weights(layer_weights, self.layers)
        self.preprocessing = (model_preprocessing(vgg) if preprocessing is None
                              else as_preprocessing(preprocessing))
        self._given_preprocessing = preprocessing
        self.extractor = feature_extractor(vgg, layers=self.layers, as_dict=True)
        self.extractor.trainable = False  # frozen: a model trained with the loss never moves it

    def _check_layers(self, vgg, layers) -> list[str]:
        if layers is None:
            convs = conv_outputs(vgg)
            return [convs[block] for block in self.DEFAULT_BLOCKS if block in convs]
        if isinstance(layers, str) or not layers:
            raise expected("`layers` to be a non-empty list of layer names", layers=layers)
        valid = [layer.name for layer in vgg.layers if layer.name.startswith("block")]
        unknown = [name for name in layers if name not in valid]
        if unknown:
            raise expected(f"`layers` to name layers of {vgg.name} (one of {valid})",
                           layers=list(layers))
        return list(layers)

    def features(self, images) -> list:
        """The chosen layers' features of ``images`` (in ``value_range``), in inference mode."""
        low, high = self.value_range
        pixels = (ops.cast(images, "float32") - low) * (255.0 / (high - low))
        features = self.extractor(self.preprocessing(pixels), training=False)
        return [features[name] for name in self.layers]

    def term(self, true, pred):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        true, pred = self.features(y_true), self.features(y_pred)
        terms = [w * self.term(ops.cast(t, "float32"), ops.cast(p, "float32"))
                 for w, t, p in zip(self.layer_weights, true, pred)]
        return ops.cast(sum(terms[1:], terms[0]), self.dtype)

    def get_config(self):
        return {**super().get_config(), "dtype": self._dtype_policy.name,
                "layers": self.layers, "layer_weights": self.layer_weights,
                "model": self.model, "weights": self.weights,
                "value_range": list(self.value_range),
                "preprocessing": None if self._given_preprocessing is None
                else self.preprocessing.to_json()}


@keras.saving.register_keras_serializable(package="keras_vgg")
class PerceptualLoss(_FeatureLoss):
    """Perceptual (feature reconstruction) loss: the weighted sum over ``layers`` of the
    mean L1 or squared L2 distance between the features of ``y_true`` and ``y_pred``
    (mean over height, width and channels: normalised by size). One value per image.

    Args:
        layers: layer names of the VGG (``block2_conv2``, ...); default the last conv of
            block 2 (``relu2_2``, Johnson et al.'s layer for super-resolution).
        layer_weights: one weight per layer (default 1 each).
        distance: ``"l2"`` (squared, the paper's) or ``"l1"``.
        model: the variant of the VGG (``"vgg16"``, ``"vgg19"``, ...), built headless.
        weights: ``"imagenet"`` (or a publisher, see ``keras_vgg.weights``), a weights file,
            or None (random weights: for tests only).
        value_range: ``(low, high)`` of the images given, mapped to pixels [0, 255]:
            (0, 1) (default) or (0, 255), or (-1, 1) for a tanh generator.
        preprocessing: a mode such as ``"caffe"``; default the weights' own (needed with
            ``weights=None``, which record none).
        name, reduction, dtype: as ``keras.losses.Loss``.

    Example:
        >>> import numpy as np
        >>> loss = PerceptualLoss(model="vgg11", layers=["block1_conv1"], distance="l1",
        ...                       weights=None, preprocessing="caffe", value_range=(0, 255))
        >>> x = np.zeros((1, 32, 32, 3), "float32")
        >>> float(loss(x, x + 255)) > 0, PerceptualLoss.from_config(loss.get_config()).distance
        (True, 'l1')
    """

    DEFAULT_BLOCKS = (2,)

    def __init__(self, layers=None, layer_weights=None, distance="l2", model="vgg16",
                 weights="imagenet", value_range=(0.0, 1.0), preprocessing=None,
                 name="perceptual_loss", reduction="sum_over_batch_size", dtype=None):
        if distance not in DISTANCES:
            raise expected(f"`distance` to be one of {list(DISTANCES)}", distance=distance)
        self.distance = distance
        super().__init__(layers, layer_weights, model, weights, value_range, preprocessing,
                         name, reduction, dtype)

    def term(self, true, pred):
        difference = true - pred
        distance = ops.abs(difference) if self.distance == "l1" else ops.square(difference)
        return ops.mean(distance, axis=(1, 2, 3))

    def get_config(self):
        return {**super().get_config(), "distance": self.distance}


@keras.saving.register_keras_serializable(package="keras_vgg")
class StyleLoss(_FeatureLoss):
    """Style loss: the weighted sum over ``layers`` of the squared Frobenius distance between
    the Gram matrices (``gram_matrix``) of ``y_true`` (the style) and ``y_pred``. One value per
    image.

    Args:
        layers: layer names; default the last conv of blocks 1-4 (``relu1_2``, ``relu2_2``,
            ``relu3_3``, ``relu4_3`` in VGG16, Johnson et al.'s style layers).
        layer_weights, model, weights, value_range, preprocessing, name, reduction, dtype:
            as :class:`PerceptualLoss`.

    Example:
        >>> import numpy as np
        >>> loss = StyleLoss(model="vgg11", layers=["block1_conv1"], weights=None,
        ...                  preprocessing="torch")
        >>> x = np.ones((1, 32, 32, 3), "float32")
        >>> float(loss(x, x)), float(loss(x, 0 * x)) > 0
        (0.0, True)
    """

    DEFAULT_BLOCKS = (1, 2, 3, 4)

    def __init__(self, layers=None, layer_weights=None, model="vgg16", weights="imagenet",
                 value_range=(0.0, 1.0), preprocessing=None, name="style_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(layers, layer_weights, model, weights, value_range, preprocessing,
                         name, reduction, dtype)

    def term(self, true, pred):
        return ops.sum(ops.square(gram_matrix(true) - gram_matrix(pred)), axis=(1, 2))


def _check_range(value_range) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        low = high = None
    if low is None or not low < high:
        raise expected("`value_range` to be (low, high) with low < high, such as (0, 1) or "
                       "(0, 255)", value_range=value_range)
    return low, high


def _check_weights(layer_weights, layers) -> list[float]:
    if layer_weights is None:
        return [1.0] * len(layers)
    try:
        weights = [float(w) for w in layer_weights]
    except (TypeError, ValueError):
        weights = []
    if len(weights) != len(layers):
        raise expected(f"`layer_weights` to be {len(layers)} numbers, one per layer of "
                       f"{layers}", layer_weights=layer_weights)
    return weights
