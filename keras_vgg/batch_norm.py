"""BatchNorm folded into the conv before it: the BN forms served at the plain forms' cost.

At inference a BatchNormalization is an affine map per channel, ``y * s + t`` with
``s = gamma / sqrt(moving_variance + epsilon)`` and ``t = beta - moving_mean * s``; after a
linear conv it folds into the conv's kernel and bias (``W' = W * s``, ``b' = b * s + t``),
exactly up to float rounding (``s`` and ``t`` are computed as the layer computes them, in
float32, so a TFLite file holds the same weights whether the model was folded first or
the converter folded it). ``fold_batch_norm`` returns a new model that computes what
``model(x, training=False)`` computes with every such BatchNormalization gone: the graph is
rewired in the model's config (nested models too, such as a fine-tuned model's base), so
the copy is of the same class with the same record (a VGGModel keeps its variant,
preprocessing, class names...), names, trainable flags and dtype policies.

A BatchNormalization is folded when its one input is the output of a ``Conv1D``/``Conv2D``/
``Conv3D`` of the same model that has no activation, is called once and feeds nothing else
(keras_vgg's BN forms: ``conv -> {conv}_bn -> {conv}_relu``). Any other BatchNormalization
(after a pooling, a Dense, a conv with an activation or another consumer) is kept as it is.
The copy is for predicting and serving: a BN form's fine-tuning wants its BatchNormalization.

``inference_model(model, precision)`` is the one way the package builds a model to predict
with: folded first, then cast (``with_precision(..., inference=True)``), so a BatchNormalization
never computes in float32 between bfloat16 casts. ``predict`` and the export (through
``keras_vgg.export.serving_model``), ``embed``, ``feature_extractor(..., inference=True)``, a
run's feature cache, evaluation, report and compress all use it: VGG16-BN in bfloat16 then
runs at VGG16's speed (``benchmarks/fold_bn.py --library``; unfolded it ran at half).

Example:
    >>> import keras, numpy as np, keras_vgg
    >>> model = keras_vgg.build_vgg("vgg11_bn", include_top=False, input_shape=(32, 32, 3),
    ...                             pooling="avg")
    >>> folded = keras_vgg.fold_batch_norm(model)
    >>> [layer.name for layer in folded.layers[1:4]]
    ['block1_conv1', 'block1_conv1_relu', 'block1_pool']
    >>> any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    False
    >>> x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3))
    >>> bool(np.allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5))
    True
    >>> plain = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3))
    >>> folded.variant, keras_vgg.fold_batch_norm(plain) is plain
    ('vgg11_bn', True)
    >>> fast = inference_model(model, "bfloat16")
    >>> fast.get_layer("block1_conv1").compute_dtype, len(fast.layers) < len(model.layers)
    ('bfloat16', True)
"""

from __future__ import annotations

import keras

from keras_vgg._helpers import expected
from keras_vgg.precision import with_precision

# The convs a norm folds into (their kernel's last axis is the filters), and their outputs' rank.
CONVOLUTIONS = {"Conv1D": 3, "Conv2D": 4, "Conv3D": 5}


def fold_batch_norm(model) -> keras.Model:
    """A copy of ``model`` with every BatchNormalization that follows a linear conv folded
    into it (see the module's docstring); ``model`` itself, unchanged, when it has none.

    Args:
        model: a Keras model with a config: a keras_vgg model, a classifier fine-tuned from
            one (``image -> base -> head``), any Functional or Sequential model.

    Returns:
        A model of the same class, names and record computing ``model(x, training=False)``
        (to float rounding) with fewer layers; ``model`` is left as it was.
    """
    if not any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in model._flatten_layers(recursive=True)):
        return model
    try:
        config = _plain(keras.saving.serialize_keras_object(model))
    except Exception as error:  # a subclassed model without get_config
        raise expected("a model with a config (Functional, Sequential, a keras_vgg model) to "
                       f"fold its BatchNormalization into its convs ({error})",
                       model=model.name) from error
    folds = {}  # path of nested model names -> {conv name: batch norm name}
    _fold_config(config, (), folds)
    if not any(folds.values()):
        return model
    folded = keras.saving.deserialize_keras_object(config)
    _copy_weights(model, folded, (), folds)
    return folded


def inference_model(model, precision="auto") -> keras.Model:
    """A model to predict with: ``model``'s BatchNormalization folded into its convs
    (``fold_batch_norm``), then copied into ``precision`` with its weights held in it
    (``with_precision(..., inference=True)``); ``model`` itself when neither changes it,
    and never changed itself.

    Args:
        model: a Keras model; one without a config (subclassed) is not folded, and can
            only be given in the precision it computes in.
        precision: ``auto``, ``float32``, ``bfloat16``, ``float16``; None: the precision
            the model computes in (folded only).
    """
    try:
        folded = fold_batch_norm(model)
    except ValueError:  # no config: served as it is, as with_precision then says
        folded = model
    return with_precision(folded, precision, inference=True)


def _plain(node):
    """A copy of a serialized config with lists for tuples, as a ``.keras`` file holds it."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(value) for value in node]
    return node


def _name(entry) -> str:
    return entry["config"]["name"]


def _histories(node):
    """Every ``[layer name, node index, tensor index]`` reference in ``node`` (a layer's
    inbound nodes, a model's output layers), as the lists themselves (to rename in place)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _histories(value)
    elif isinstance(node, list):
        if len(node) == 3 and isinstance(node[0], str) and isinstance(node[1], int):
            yield node
        else:
            for value in node:
                yield from _histories(value)


def _linear_conv(entry) -> bool:
    config = entry["config"]
    return (entry.get("class_name") in CONVOLUTIONS and config.get("activation") in
            (None, "linear") and config.get("data_format", "channels_last") == "channels_last")


def _folds(conv, bn) -> bool:
    """``bn`` normalizes the channels of ``conv``, a linear conv (serialized layers)."""
    if not _linear_conv(conv) or bn.get("class_name") != "BatchNormalization":
        return False
    axis = bn["config"].get("axis")
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    return axis in (-1, CONVOLUTIONS[conv["class_name"]] - 1)


def _fold_config(config, path, folds):
    """Removes from ``config`` (a serialized model, in place, nested models first) the
    BatchNormalization layers that fold; records them in ``folds[path]``."""
    inner = config.get("config") or {}
    layers = inner.get("layers")
    if not isinstance(layers, list):
        return
    for entry in layers:
        _fold_config(entry, (*path, _name(entry)), folds)
    pairs = _functional_pairs(inner) if "output_layers" in inner else _sequential_pairs(layers)
    folds[path] = {_name(conv): _name(bn) for conv, bn in pairs}
    for conv, bn in pairs:
        conv["config"]["use_bias"] = True
        layers.remove(bn)
        if "output_layers" in inner:  # what read the norm's output reads the conv's
            for history in _histories([[e.get("inbound_nodes") for e in layers],
                                       inner["output_layers"]]):
                if history[0] == _name(bn):
                    history[0] = _name(conv)


def _sequential_pairs(layers):
    return [(conv, bn) for conv, bn in zip(layers, layers[1:]) if _folds(conv, bn)]


def _functional_pairs(inner):
    layers = {_name(entry): entry for entry in inner["layers"]}
    readers = {}
    for history in _histories([[e.get("inbound_nodes") for e in inner["layers"]],
                               inner["output_layers"]]):
        readers[history[0]] = readers.get(history[0], 0) + 1
    pairs = []
    for bn in inner["layers"]:
        nodes = bn.get("inbound_nodes") or []
        sources = list(_histories(nodes))
        if len(nodes) != 1 or len(sources) != 1 or nodes[0].get("kwargs", {}).get("training"):
            continue
        conv = layers.get(sources[0][0])
        if conv is not None and _folds(conv, bn) and readers[_name(conv)] == 1 \
                and len(conv.get("inbound_nodes") or []) == 1:
            pairs.append((conv, bn))
    return pairs


def _folded_weights(conv, bn):
    """``conv``'s kernel and bias with ``bn`` folded in, by the norm's own float32 arithmetic
    (``keras.ops.batch_normalization``'s ``rsqrt``): on TensorFlow these are, bit for bit, the
    weights TFLite's converter folds a BatchNormalization into."""
    def f32(variable):
        return keras.ops.cast(variable, "float32")

    scale = keras.ops.rsqrt(f32(bn.moving_variance) + bn.epsilon)
    if bn.scale:
        scale = scale * f32(bn.gamma)
    offset = -f32(bn.moving_mean) * scale
    if bn.center:
        offset = offset + f32(bn.beta)
    bias = f32(conv.bias) * scale + offset if conv.use_bias else offset
    return [keras.ops.convert_to_numpy(w) for w in (f32(conv.kernel) * scale, bias)]


def _copy_weights(source, target, path, folds):
    """Each layer's weights from ``source`` into its twin in ``target``; folded convs get
    their norm folded in."""
    for layer in target.layers:
        old = source.get_layer(layer.name)
        if (*path, layer.name) in folds:  # a nested model whose config was walked
            _copy_weights(old, layer, (*path, layer.name), folds)
        elif layer.name in folds[path]:
            bn = source.get_layer(folds[path][layer.name])
            layer.set_weights(_folded_weights(old, bn))
        else:
            layer.set_weights(old.get_weights())
