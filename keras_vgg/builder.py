"""One builder for every VGG variant in the config table.

Example:
    >>> from keras_vgg import build_vgg
    >>> model = build_vgg("vgg16", include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> model.output_shape
    (None, 512)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import warnings

import keras
from keras import layers

from keras_vgg.configs import (
    LRN,
    Conv,
    Pool,
    VGGConfig,
    describe,
    get_config,
    is_int,
    layer_names,
    min_input_size,
)
from keras_vgg.layers import CeilMaxPooling2D, LocalResponseNormalization
from keras_vgg.convert import SOURCE_SUFFIXES
from keras_vgg.weights import NAMES, find_weights, load_weights

POOLINGS = (None, "avg", "max")
WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


def _error(expected: str, **received) -> ValueError:
    got = ", ".join(f"{k}={v!r}" for k, v in received.items())
    return ValueError(f"Expected {expected}. Received: {got}")


def resolve_config(variant, batch_norm: bool) -> VGGConfig:
    """The variant's config, switched to its batch-norm form when asked."""
    config = get_config(variant)
    if not isinstance(batch_norm, bool):
        raise _error("`batch_norm` to be True or False", batch_norm=batch_norm)
    if batch_norm and not config.batch_norm:
        if not config.supports_batch_norm:
            raise _error(
                "`batch_norm=True` only for the variants without LRN (A, B, C, D, E: "
                f"vgg11, vgg13, vgg16c, vgg16, vgg19); {config.name} uses LRN",
                batch_norm=batch_norm,
            )
        config = config.with_batch_norm()
    return config


def _validate_weights(weights, config, include_top, classes, classifier_activation):
    if weights is None:
        return
    if isinstance(weights, str) and weights in NAMES:
        find_weights(config.name, include_top, weights)
        if include_top and classes != 1000:
            raise _error(
                f"`classes=1000` with `weights={weights!r}` and `include_top=True`", classes=classes
            )
        activation = keras.activations.get(classifier_activation)
        if include_top and activation not in (
            keras.activations.get("softmax"),
            keras.activations.get(None),
        ):
            raise _error(
                "`classifier_activation` None or 'softmax' with pretrained weights",
                classifier_activation=classifier_activation,
            )
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise _error(f"`weights` to be None, one of {NAMES} or a path to a weights file",
                     weights=weights)
    if not os.path.isfile(weights):
        raise _error(
            f"`weights` to be None, one of {NAMES} or the path of an existing weights file",
            weights=os.fspath(weights),
        )
    if not os.fspath(weights).lower().endswith(WEIGHTS_SUFFIXES + SOURCE_SUFFIXES):
        raise _error(
            f"`weights` to be a Keras weights file ({', '.join(WEIGHTS_SUFFIXES)}) or a file to "
            f"convert ({', '.join(SOURCE_SUFFIXES)})",
            weights=os.fspath(weights),
        )


def _validate_input_shape(input_shape, config, include_top, weights):
    """Check (H, W, C) against the variant's geometry; return it as a tuple."""
    try:
        input_shape = tuple(input_shape)
    except TypeError:
        pass
    if (
        not isinstance(input_shape, tuple)
        or len(input_shape) != 3
        or not all(d is None or (is_int(d) and d > 0) for d in input_shape)
        or input_shape[2] is None
    ):
        raise _error(
            "`input_shape` to be a tuple (height, width, channels) of positive ints "
            "(height/width may be None when include_top=False)",
            input_shape=input_shape,
        )
    height, width, channels = input_shape
    if channels is not None and channels > 4 and height in (1, 3, 4):
        raise _error(
            "channels last: `input_shape` as (height, width, channels) such as (224, 224, 3); "
            f"{input_shape} looks channels first", input_shape=input_shape)
    published = isinstance(weights, str) and weights in NAMES
    if published and channels != 3:
        raise _error(f"3 channels with pretrained weights (`weights={weights!r}`)",
                     input_shape=input_shape)
    if include_top:
        if height is None or width is None:
            raise _error(
                "a fixed `input_shape` (height, width, channels) when include_top=True, "
                "because the FC layers need a fixed size; use include_top=False for any size",
                input_shape=input_shape,
            )
        size = config.default_size
        if published and (height, width) != (size, size):
            raise _error(
                f"`input_shape=({size}, {size}, 3)` with include_top=True and weights={weights!r}",
                input_shape=input_shape,
            )
    minimum = min_input_size(config)
    if any(d is not None and d < minimum for d in (height, width)):
        raise _error(
            f"`input_shape` at least {minimum}x{minimum} for {config.name} (smaller inputs leave "
            "a layer with an empty output)",
            input_shape=input_shape,
        )
    return tuple(None if d is None else int(d) for d in input_shape)


def _warn_if_fc1_changes(config, input_shape):
    """A top at another size than the variant's own gives fc1 another input: say so."""
    size = config.default_size
    if tuple(input_shape[:2]) == (size, size):
        return
    flatten_in = describe(config, tuple(input_shape)).fc6_input
    usual = describe(config).fc6_input
    warnings.warn(
        f"{config.name} with include_top=True at input_shape={tuple(input_shape)}: fc1 takes a "
        f"{'x'.join(map(str, flatten_in))} map ({math.prod(flatten_in):,} inputs) instead of "
        f"{'x'.join(map(str, usual))} at {size}x{size}, so ImageNet-shaped fc weights will not "
        f"fit. Pass adaptive_pool={usual[0]} to pool to {usual[0]}x{usual[1]} first (as "
        "torchvision does), or include_top=False for a headless model.", stacklevel=3)


def _conv_block(x, conv: Conv, name: str, batch_norm: bool):
    if conv.stride == 1 and 2 * conv.pad == conv.kernel - 1:
        padding = "same"
    else:
        padding = "valid"
        if conv.pad:  # symmetric zero padding, as Caffe/PyTorch (Keras "same" is asymmetric)
            x = layers.ZeroPadding2D(conv.pad, name=f"{name}_pad")(x)
    activation = None if batch_norm else "relu"
    x = layers.Conv2D(
        conv.filters, conv.kernel, strides=conv.stride, padding=padding,
        activation=activation, name=name,
    )(x)
    if batch_norm:  # torchvision's *_bn: conv (with bias) -> BN -> ReLU; its eps and momentum
        x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def build_vgg(
    variant,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    batch_norm=False,
    dropout=0.5,
    adaptive_pool=None,
):
    """Build any VGG variant as a Keras Functional model.

    Args:
        variant: a name from ``list_models()`` (``"vgg16"``, ``"vgg16_bn"``, ``"vgg_m_2048"``),
            a paper name (``"D"``, ``"A-LRN"``) or a ``VGGConfig``.
        include_top: keep the three FC layers (flatten, fc1, fc2, predictions).
        weights: None; ``"imagenet"`` or a publisher (``"keras"``, ``"torchvision"``,
            ``"matconvnet"``) where published (see ``keras_vgg.weights.WEIGHTS``); or a path:
            a Keras weights file, a torchvision/timm state dict (.pth, .pt, .safetensors, .npz)
            or a MatConvNet .mat. The model then knows its preprocessing
            (``model.preprocessing``; ``preprocess_input(x, model=model)``).
        input_tensor: optional Keras tensor to use as the model's input.
        input_shape: (height, width, channels); default (224, 224, 3) with the top and
            (None, None, 3) without.
        pooling: with include_top=False, None (4D output), ``"avg"`` or ``"max"`` (2D output).
        classes: number of classes of the top layer.
        classifier_activation: activation of the top layer (None gives logits).
        name: model name; defaults to the variant's name.
        batch_norm: add a BatchNormalization after every conv (A-E only); a ``*_bn`` variant
            name gives the BN form whatever this says.
        dropout: rate of the Dropout after fc1 and fc2 (0.5 in the papers; 0 for none).
        adaptive_pool: with include_top, an int n: average-pool the last feature map to n x n
            before ``flatten`` (layer ``avgpool``), as torchvision's ``AdaptiveAvgPool2d``
            does, so its classifier (n=7) runs at any input size. None: no such layer.

    Returns:
        A ``keras.Model``.

    Example:
        >>> model = build_vgg("vgg_m", input_shape=(64, 64, 3), classes=10)
        >>> model.get_layer("flatten").input.shape
        (None, 1, 1, 512)
    """
    config = resolve_config(variant, batch_norm)
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "keras_vgg builds channels_last models. Expected "
            "keras.config.image_data_format() == 'channels_last'. "
            f"Received: {keras.config.image_data_format()!r}"
        )
    if not isinstance(include_top, bool):
        raise _error("`include_top` to be True or False", include_top=include_top)
    if pooling not in POOLINGS:
        raise _error("`pooling` to be None, 'avg' or 'max'", pooling=pooling)
    if include_top and pooling is not None:
        raise _error("`pooling=None` when include_top=True (pooling applies to headless models)",
                     pooling=pooling)
    if adaptive_pool is not None and (not include_top or not is_int(adaptive_pool)
                                      or adaptive_pool < 1):
        raise _error("`adaptive_pool` None, or a positive int with include_top=True",
                     adaptive_pool=adaptive_pool)
    if not is_int(classes) or classes < 1:
        raise _error("`classes` to be a positive int", classes=classes)
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise _error("`dropout` to be a rate in [0, 1)", dropout=dropout)
    classes, dropout = int(classes), float(dropout)
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError):
        raise _error(
            "`classifier_activation` to be None, a Keras activation name or a callable",
            classifier_activation=classifier_activation,
        ) from None
    _validate_weights(weights, config, include_top, classes, classifier_activation)

    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise _error("`input_tensor` to be a Keras tensor (from keras.Input or a layer)",
                         input_tensor=input_tensor)
        if len(input_tensor.shape) != 4:
            raise _error("`input_tensor` of rank 4 (batch, height, width, channels)",
                         input_tensor=input_tensor)
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise _error("`input_shape` to match `input_tensor`'s shape " f"{tensor_shape}",
                         input_shape=input_shape)
        input_shape = tensor_shape
    elif input_shape is None:
        size = config.default_size if include_top else None
        input_shape = (size, size, 3)
    input_shape = _validate_input_shape(input_shape, config, include_top, weights)
    if include_top and not adaptive_pool:
        _warn_if_fc1_changes(config, input_shape)
    inputs = keras.Input(shape=input_shape) if input_tensor is None else input_tensor

    x = inputs
    for layer_name, layer in layer_names(config):
        if isinstance(layer, Conv):
            x = _conv_block(x, layer, layer_name, config.batch_norm)
        elif isinstance(layer, LRN):
            x = LocalResponseNormalization(**dataclasses.asdict(layer), name=layer_name)(x)
        elif isinstance(layer, Pool) and layer.ceil:
            x = CeilMaxPooling2D(layer.size, layer.stride, name=layer_name)(x)
        else:
            x = layers.MaxPooling2D(layer.size, layer.stride, name=layer_name)(x)

    if include_top:
        if adaptive_pool:
            size = (int(adaptive_pool),) * 2
            x = layers.AdaptiveAveragePooling2D(size, name="avgpool")(x)
        x = layers.Flatten(name="flatten")(x)
        for i, units in enumerate(config.fc_units, start=1):
            x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
            if dropout:
                x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    model_inputs = inputs
    if input_tensor is not None:
        model_inputs = keras.utils.get_source_inputs(input_tensor)
        if len(model_inputs) == 1:
            model_inputs = model_inputs[0]
    model = keras.Model(model_inputs, x, name=name or config.name)
    if weights is not None:
        load_weights(model, weights, config.name, include_top)
    return model
