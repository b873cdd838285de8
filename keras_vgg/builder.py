"""One graph builder for every VGG variant in the config table: layers only, no weights.

``keras_vgg.build_vgg`` (in ``models.py``) checks the weights, builds with this and loads them.

Example:
    >>> from keras_vgg.builder import build_graph
    >>> model = build_graph("vgg16", include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> model.output_shape
    (None, 512)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
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
from keras_vgg._helpers import expected as _error
from keras_vgg.layers import CeilMaxPooling2D, Conv2D, LocalResponseNormalization
from keras_vgg.vgg_model import VGGModel

POOLINGS = (None, "avg", "max")


def resolve_config(variant, batch_norm: bool, widths=None) -> VGGConfig:
    """The variant's config, switched to its batch-norm form when asked, with ``widths``
    (one int per conv) when given."""
    config = get_config(variant)
    if widths is not None:
        config = config.with_widths(widths)
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


def _validate_input_shape(input_shape, config, include_top):
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
    if include_top:
        if height is None or width is None:
            raise _error(
                "a fixed `input_shape` (height, width, channels) when include_top=True, "
                "because the FC layers need a fixed size; use include_top=False for any size",
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


def check_arguments(config, include_top, pooling, classes, classifier_activation, dropout,
                    adaptive_pool):
    """Check the arguments that shape the graph (not the input); return (classes, dropout)."""
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
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError):
        raise _error(
            "`classifier_activation` to be None, a Keras activation name or a callable",
            classifier_activation=classifier_activation,
        ) from None
    return int(classes), float(dropout)


def resolve_input_shape(config, include_top, input_tensor=None, input_shape=None) -> tuple:
    """The checked (H, W, C): ``input_tensor``'s, else ``input_shape``, else the default."""
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
    return _validate_input_shape(input_shape, config, include_top)


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


def _top(x, config, classes, classifier_activation, dropout, adaptive_pool):
    if adaptive_pool:
        x = _adaptive_average_pool(x, int(adaptive_pool))
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(config.fc_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    # float32 whatever the dtype policy: a softmax in bfloat16/float16 loses the small classes.
    return layers.Dense(classes, activation=classifier_activation, name="predictions",
                        dtype="float32")(x)


def build_graph(
    variant,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    batch_norm=False,
    dropout=0.5,
    adaptive_pool=None,
    widths=None,
):
    """Check the arguments and build the variant's layers as a Functional model, weights
    as Keras initialises them. Arguments as ``keras_vgg.build_vgg`` (less ``weights``).

    Example:
        >>> build_graph("vgg_m", input_shape=(64, 64, 3), classes=10).get_layer(
        ...     "flatten").input.shape
        (None, 1, 1, 512)
    """
    config = resolve_config(variant, batch_norm, widths)
    classes, dropout = check_arguments(config, include_top, pooling, classes,
                                       classifier_activation, dropout, adaptive_pool)
    input_shape = resolve_input_shape(config, include_top, input_tensor, input_shape)
    if include_top and not adaptive_pool:
        _warn_if_fc1_changes(config, input_shape)
    inputs = keras.Input(shape=input_shape) if input_tensor is None else input_tensor
    x = _features(inputs, config)
    if include_top:
        x = _top(x, config, classes, classifier_activation, dropout, adaptive_pool)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model_inputs = inputs
    if input_tensor is not None:
        model_inputs = keras.utils.get_source_inputs(input_tensor)
        if len(model_inputs) == 1:
            model_inputs = model_inputs[0]
    return VGGModel(model_inputs, x, name=name or config.name, variant=config.name,
                    widths=pruned_widths(config))


def pruned_widths(config: VGGConfig):
    """``config``'s conv widths when they differ from its variant's in the table, else None."""
    widths = config.conv_widths
    return None if widths == get_config(config.name).conv_widths else widths


def __getattr__(name):
    if name == "build_vgg":
        raise AttributeError(
            "keras_vgg.builder builds graphs only (build_graph); build_vgg, which also loads "
            "weights, is keras_vgg.build_vgg (keras_vgg.models.build_vgg).")
    raise AttributeError(f"module 'keras_vgg.builder' has no attribute {name!r}")
