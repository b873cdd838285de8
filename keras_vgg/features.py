"""Feature extraction: multi-output models by layer name, and the paper's dense evaluation.

Example:
    >>> from keras_vgg import VGG16
    >>> from keras_vgg.features import feature_extractor, to_dense
    >>> extractor = feature_extractor(VGG16(include_top=False, input_shape=(64, 64, 3)))
    >>> [tuple(o.shape[1:]) for o in extractor.outputs][-1]
    (2, 2, 512)
    >>> dense = to_dense(VGG16(input_shape=(32, 32, 3), classes=10))
    >>> dense.output_shape
    (None, None, None, 10)
"""

from __future__ import annotations

import re

import keras

from keras_vgg._helpers import find_nested
from keras_vgg.batch_norm import inference_model
from keras_vgg.models import build_vgg
from keras_vgg.precision import with_precision
from keras_vgg.saving import record_of
from keras_vgg.vgg_model import VGGModel

_BLOCK = re.compile(r"block(\d+)_")


def block_outputs(model: keras.Model) -> list[str]:
    """Name of the last layer of each ``block{i}_`` in ``model`` (its five block outputs)."""
    last = {}
    for layer in model.layers:
        match = _BLOCK.match(layer.name)
        if match:
            last[int(match.group(1))] = layer.name
    return [last[i] for i in sorted(last)]


def feature_extractor(model_or_name, layers=None, as_dict=False, precision=None,
                      inference=False, **build_kwargs) -> keras.Model:
    """A model returning the outputs of the named layers, for perceptual/style losses or Grad-CAM.

    Args:
        model_or_name: a keras_vgg model, a model holding one (e.g. a fine-tuned model whose base
            is a nested VGG), or a variant name (built with ``include_top=False`` and
            ``build_kwargs``).
        layers: layer names; default the output of every block (``block_outputs``).
        as_dict: return ``{layer name: tensor}`` instead of a list in the order of ``layers``.
        precision: what it computes in, ``"auto"`` (the fastest here), ``"float32"``,
            ``"bfloat16"``, ``"float16"``; None (default): the source model's. Another
            precision than the source's gives a copy (its own weights, in float32).
        inference: False (default): the layers of the source model, BatchNormalization and
            all (for losses that train through them). True: a copy to predict with
            (``keras_vgg.batch_norm.inference_model``): every BatchNormalization after a conv
            folded into it, then the weights too held in ``precision``; a BN form then runs
            in bfloat16 at the plain form's speed. The named layers' outputs are the same
            (a conv whose output is asked for keeps its norm).
        **build_kwargs: passed to ``build_vgg`` when a name is given (``input_shape``, ``weights``).

    Returns:
        A VGGModel taking the (nested) VGG's input and returning a list of tensors, in the
        order of ``layers`` (or a dict keyed by layer name with ``as_dict=True``). It shares
        weights with the source model and records its variant and preprocessing.

    Example:
        >>> extractor = feature_extractor("vgg19", layers=["block1_conv1", "block4_conv2"],
        ...                               input_shape=(32, 32, 3))
        >>> [tuple(o.shape) for o in extractor.outputs]
        [(None, 32, 32, 64), (None, 4, 4, 512)]
        >>> by_name = feature_extractor("vgg11", layers=["block2_pool"], as_dict=True,
        ...                             input_shape=(32, 32, 3))
        >>> {k: tuple(v.shape) for k, v in by_name.output.items()}
        {'block2_pool': (None, 8, 8, 128)}
        >>> fast = feature_extractor("vgg11_bn", precision="bfloat16", inference=True,
        ...                          input_shape=(32, 32, 3))
        >>> fast.get_layer("block1_conv1").compute_dtype, [l.name for l in fast.layers][1:3]
        ('bfloat16', ['block1_conv1', 'block1_conv1_relu'])
    """
    if isinstance(model_or_name, keras.Model):
        model = model_or_name
        if build_kwargs:
            raise ValueError(
                "Expected no build arguments when a model is given. "
                f"Received: {sorted(build_kwargs)}"
            )
    else:
        model = build_vgg(model_or_name, **{"include_top": False, **build_kwargs})
    if layers is None:
        base = find_nested(model, block_outputs)
        if base is None:
            raise ValueError(
                "Expected a VGG model (layers named block1_..., block2_...) or a model holding "
                f"one. Received: model_or_name={model.name!r}"
            )
        layers = block_outputs(base)
    else:
        if isinstance(layers, str) or not layers:
            raise ValueError(
                f"Expected `layers` to be a non-empty list of layer names. Received: layers={layers!r}"
            )
        layers = list(layers)
        base = find_nested(model, lambda m: set(layers) <= {layer.name for layer in m.layers})
        if base is None:
            raise ValueError(
                f"Expected `layers` to name layers of {model.name} or of a model nested in it. "
                f"Received: layers={layers}"
            )
    outputs = [base.get_layer(name).output for name in layers]
    if as_dict:
        outputs = dict(zip(layers, outputs))
    record = {**record_of(base), "class_names": None}  # features, not classes
    extractor = VGGModel(base.input, outputs, name=f"{base.name}_features", **record)
    return inference_model(extractor, precision) if inference else \
        with_precision(extractor, precision)


def to_dense(model: keras.Model) -> keras.Model:
    """The paper's dense evaluation: FC layers as convolutions, for inputs of any size.

    ``fc1`` becomes a ``k x k`` conv (``k`` = the spatial size entering ``flatten``, 7 for A-E and
    6 for F/M/S at 224), ``fc2`` and ``predictions`` become 1x1 convs, weights reshaped (Keras's
    Flatten is H, W, C order). At the model's own input size the output equals the original's;
    larger inputs give a class score map ``(N, H', W', classes)``; average it over space for the
    paper's single score. The result is a VGGModel with the source's variant, preprocessing and
    class names.

    Args:
        model: a keras_vgg model with ``include_top=True``.

    Example:
        >>> from keras_vgg import VGGF
        >>> to_dense(VGGF(input_shape=(64, 64, 3), classes=5)).output_shape
        (None, None, None, 5)
    """
    names = [layer.name for layer in model.layers]
    if not {"flatten", "fc1", "predictions"} <= set(names):
        raise ValueError(
            "Expected `model` built with include_top=True (layers flatten, fc1, ..., predictions). "
            f"Received: model={model.name!r} with layers ending {names[-3:]}"
        )
    flatten = model.get_layer("flatten")
    height, width = flatten.input.shape[1:3]
    inputs = keras.Input(shape=(None, None, model.input_shape[-1]))
    x = inputs
    for layer in model.layers[1 : names.index("flatten")]:
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
    kernel_size = (height, width)  # fc1's; fc2 and predictions are 1x1
    for layer in model.layers[names.index("flatten") + 1 :]:
        if isinstance(layer, keras.layers.Dropout):
            continue
        kernel, bias = layer.get_weights()
        units = kernel.shape[1]
        conv = keras.layers.Conv2D(units, kernel_size, activation=layer.activation, name=layer.name)
        x = conv(x)
        conv.set_weights([kernel.reshape(kernel_size + (-1, units)), bias])
        kernel_size = (1, 1)
    return VGGModel(inputs, x, name=f"{model.name}_dense", **record_of(model))
