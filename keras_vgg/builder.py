"""One graph builder for every VGG variant in the config table: layers only, no weights.

``keras_vgg.build_vgg`` (in ``models.py``) checks its arguments once into a
``keras_vgg.spec.BuildSpec``, builds it with :func:`build_graph` and loads the weights.

Example:
    >>> from keras_vgg.builder import build_graph
    >>> from keras_vgg.spec import build_spec
    >>> spec = build_spec("vgg16", include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> build_graph(spec).output_shape
    (None, 512)
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import keras
from keras import layers

from keras_vgg.configs import LRN, Conv, Pool, describe, layer_names
from keras_vgg.layers import CeilMaxPooling2D, Conv2D, LocalResponseNormalization
from keras_vgg.pruning import pruned_widths
from keras_vgg.spec import BuildSpec
from keras_vgg.vgg_model import VGGModel


def build_graph(spec: BuildSpec) -> VGGModel:
    """The layers ``spec`` says, as a Functional model, weights as Keras initialises them.

    Example:
        >>> from keras_vgg.spec import build_spec
        >>> build_graph(build_spec("vgg_m", input_shape=(64, 64, 3), classes=10)).get_layer(
        ...     "flatten").input.shape
        (None, 1, 1, 512)
    """
    config = spec.config
    if spec.include_top and not spec.adaptive_pool:
        _warn_if_fc1_changes(spec)
    inputs = spec.input_tensor
    if inputs is None:
        inputs = keras.Input(shape=spec.input_shape)
    x = _features(inputs, config)
    if spec.include_top:
        x = _top(x, spec)
    elif spec.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif spec.pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model_inputs = inputs
    if spec.input_tensor is not None:
        model_inputs = keras.utils.get_source_inputs(spec.input_tensor)
        if len(model_inputs) == 1:
            model_inputs = model_inputs[0]
    return VGGModel(model_inputs, x, name=spec.name or config.name, variant=config.name,
                    widths=pruned_widths(config))


def _warn_if_fc1_changes(spec: BuildSpec):
    """A top at another size than the variant's own gives fc1 another input: say so."""
    config, input_shape = spec.config, spec.input_shape
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
        "torchvision does), or include_top=False for a headless model.", stacklevel=4)


def _conv_block(x, conv: Conv, name: str, batch_norm: bool):
    if conv.stride == 1 and 2 * conv.pad == conv.kernel - 1:
        padding = "same"
    else:
        padding = "valid"
        if conv.pad:  # symmetric zero padding, as Caffe/PyTorch (Keras "same" is asymmetric)
            x = layers.ZeroPadding2D(conv.pad, name=f"{name}_pad")(x)
    activation = None if batch_norm else "relu"
    x = Conv2D(
        conv.filters, conv.kernel, strides=conv.stride, padding=padding,
        activation=activation, name=name,
    )(x)
    if batch_norm:  # torchvision's *_bn: conv (with bias) -> BN -> ReLU; its eps and momentum
        x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def _features(x, config):
    # Whether x is >= 0: a conv block ends in a ReLU; LRN (x times a positive factor) and
    # max pooling keep the sign. A ceil pool pads a non-negative input with 0 (exact, one
    # TFLite PAD) and any other input with its minimum (a REDUCE_MIN and a PADV2).
    non_negative = False
    for layer_name, layer in layer_names(config):
        if isinstance(layer, Conv):
            x = _conv_block(x, layer, layer_name, config.batch_norm)
            non_negative = True
        elif isinstance(layer, LRN):
            x = LocalResponseNormalization(**dataclasses.asdict(layer), name=layer_name)(x)
        elif isinstance(layer, Pool) and layer.ceil:
            pad_value = 0.0 if non_negative else None
            x = CeilMaxPooling2D(layer.size, layer.stride, pad_value=pad_value, name=layer_name)(x)
        else:
            x = layers.MaxPooling2D(layer.size, layer.stride, name=layer_name)(x)
    return x


def _adaptive_average_pool(x, n):
    """torchvision's AdaptiveAvgPool2d((n, n)) as layer ``avgpool``. Keras 3.15's
    AdaptiveAveragePooling2D fails for an output of 1 and for a 1x1 input (AvgPool with a
    negative size), so those two cases use the layers that compute the same: a global
    average, and a copy of the one pixel into every bin."""
    if n == 1:
        return layers.GlobalAveragePooling2D(keepdims=True, name="avgpool")(x)
    if tuple(x.shape[1:3]) == (1, 1):
        return layers.UpSampling2D(n, name="avgpool")(x)
    return layers.AdaptiveAveragePooling2D((n, n), name="avgpool")(x)


def _top(x, spec: BuildSpec):
    if spec.adaptive_pool:
        x = _adaptive_average_pool(x, int(spec.adaptive_pool))
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(spec.config.fc_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
        if spec.dropout:
            x = layers.Dropout(spec.dropout, name=f"fc{i}_dropout")(x)
    # float32 whatever the dtype policy: a softmax in bfloat16/float16 loses the small classes.
    return layers.Dense(spec.classes, activation=spec.classifier_activation, name="predictions",
                        dtype="float32")(x)
