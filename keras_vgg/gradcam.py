"""Grad-CAM: where a VGG classifier looks (Selvaraju et al. 2017, "Grad-CAM: Visual
Explanations from Deep Networks via Gradient-based Localization").

The map of a class is ``relu(sum_k alpha_k A_k)``: the feature maps ``A`` of a conv layer
weighted by the mean gradient ``alpha`` of the class's score (its logit, before the softmax)
with respect to them. It works on any keras_vgg classifier, including a fine-tuned one whose
VGG is nested inside it (where ``keras.Model(model.input, base_layer.output)`` fails with
"graph disconnected"): the model is cut at the layer level by level, and the gradient comes
from the backend's own autodiff (TensorFlow's GradientTape, ``jax.grad``, torch autograd).

Example:
    >>> import numpy as np
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.gradcam import grad_cam, overlay
    >>> model = VGG11(input_shape=(32, 32, 3), classes=3, adaptive_pool=1)
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    >>> cam = grad_cam(model, images, preprocessing="caffe")  # default: the last conv
    >>> cam.layer, cam.heatmaps.shape, cam.scores.shape, cam.classes.shape
    ('block5_conv2', (2, 32, 32), (2, 3), (2,))
    >>> bool(cam.heatmaps.min() >= 0 and cam.heatmaps.max() <= 1)
    True
    >>> overlay(images[0], cam.heatmaps[0]).shape  # the map resized onto the image
    (48, 48, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from keras_vgg._helpers import expected, find_nested
from keras_vgg.features import block_outputs
from keras_vgg.pixels import model_inputs


@dataclass
class GradCam:
    """What ``grad_cam`` returns: ``heatmaps`` ``(N, H, W)`` in [0, 1] at the model's input
    size, ``classes`` ``(N,)`` the class each map explains, ``scores`` ``(N, classes)`` the
    model's outputs (probabilities for a softmax classifier), and the ``layer`` used."""

    heatmaps: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    layer: str


def gradients(function, x):
    """The gradient of the scalar ``function(x)`` with respect to the tensor ``x``, by the
    Keras backend's own autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x)
        return tape.gradient(value, x)
    if backend == "jax":
        import jax

        return jax.grad(function)(x)
    if backend == "torch":
        import torch

        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(function(x), x)[0]
    raise expected("the tensorflow, jax or torch backend (Grad-CAM needs gradients)",
                   backend=backend)


def vgg_base(model):
    """The VGG (``block*`` layers) in ``model`` or nested in it, when ``model`` is a
    classifier (one ``(batch, classes)`` output); else a ValueError naming what it is."""
    if not isinstance(model, keras.Model):
        raise expected("`model` to be a keras_vgg classifier (a Keras model)",
                       model=type(model).__name__)
    base = find_nested(model, block_outputs)
    shapes = [tuple(output.shape) for output in model.outputs]
    if base is None or len(shapes) != 1 or len(shapes[0]) != 2:
        found = {"layers": "none named block1_..., block2_..."} if base is None else {}
        raise expected("`model` to be a VGG classifier: a keras_vgg model with its top or a "
                       "fine-tuned one, one (batch, classes) output",
                       model=model.name, outputs=shapes, **found)
    return base


def check_layer(base, layer) -> str:
    """``layer``, or by default the last conv block's output before its pool
    (``block5_conv3`` in VGG16); a ValueError listing the valid names otherwise."""
    names = [item.name for item in base.layers]
    valid = [item.name for item in base.layers
             if item.name.startswith("block") and len(item.output.shape) == 4]
    if layer is None:
        return names[names.index(block_outputs(base)[-1]) - 1]
    if layer not in valid:
        raise expected(f"`layer` to name a conv-side layer of {base.name}, one of {valid}",
                       layer=layer)
    return layer


def _path_to(model, name) -> list:
    """``[model, ..., owner]``: the models from ``model`` down to the one holding ``name``."""
    if name in [layer.name for layer in model.layers]:
        return [model]
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            path = _path_to(layer, name)
            if path:
                return [model] + path
    return []


def _single(tensors):
    tensors = keras.tree.flatten(tensors)
    if len(tensors) != 1:
        raise expected("a model with one input and one output at every level of nesting",
                       tensors=len(tensors))
    return tensors[0]


def _call_of(child, parent):
    """The node of ``child``'s one call inside ``parent``'s graph, whatever other graphs
    call it too (a Sequential keeps its graph in ``_functional``)."""
    graph = getattr(parent, "_functional", None) or parent
    nodes = [node for nodes in graph._nodes_by_depth.values() for node in nodes
             if node.operation is child]
    if len(nodes) != 1:
        raise expected(f"{child.name} called once inside {parent.name}", calls=len(nodes))
    return nodes[0]


def _cut(model, name):
    """``(head, tail)``: models from ``model``'s input to layer ``name``'s output and on to
    ``model``'s output, through every nested model between them."""
    path = _path_to(model, name)
    cut = _single(_call_of(path[-1].get_layer(name), path[-1]).output_tensors)
    heads = [keras.Model(path[-1].inputs[0], cut)]
    tails = [keras.Model(cut, _single(path[-1].outputs))]
    for parent, child in zip(path[-2::-1], path[:0:-1]):
        node = _call_of(child, parent)
        heads.insert(0, keras.Model(parent.inputs[0], _single(node.input_tensors)))
        tails.append(keras.Model(_single(node.output_tensors), _single(parent.outputs)))

    def run(models, x):
        for part in models:
            x = part(x, training=False)
        return x

    return (lambda x: run(heads, x)), (lambda x: run(tails, x))


def _output_activation(config) -> str | None:
    """Sets the activation of the serialized model's output layer (a Dense, or an
    Activation after one; in nested models too) to linear and returns what it was, or None
    when the output is no such layer."""
    inner = config.get("config", {})
    if isinstance(inner.get("layers"), list):
        if "output_layers" in inner:
            outputs = keras.tree.flatten(inner["output_layers"])
            name = outputs[0] if len(outputs) == 3 else None
        else:  # Sequential
            name = inner["layers"][-1]["config"]["name"] if inner["layers"] else None
        found = [item for item in inner["layers"] if item["config"].get("name") == name]
        return _output_activation(found[0]) if found else None
    if (config.get("class_name") in ("Dense", "Activation")
            and inner.get("activation") not in (None, "linear")):
        activation, inner["activation"] = inner["activation"], "linear"
        return activation
    return None


def with_logits(model):
    """``(a model giving logits, the output activation)``: ``model`` itself when its output
    has no activation, else a copy (same weights) whose output layer is linear."""
    config = keras.saving.serialize_keras_object(model)
    activation = _output_activation(config)
    if activation is None:
        return model, "linear"
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy, activation


def _check_classes(classes, count, total):
    if classes is None:
        return None
    chosen = np.broadcast_to(np.asarray(classes), (count,)) if np.ndim(classes) == 0 \
        else np.asarray(classes)
    if (chosen.shape != (count,) or not np.issubdtype(chosen.dtype, np.integer)
            or chosen.min() < 0 or chosen.max() >= total):
        raise expected(f"`classes` to be None, a class index or {count} indices in "
                       f"[0, {total})", classes=classes)
    return chosen.astype("int32")


def _maps(features, grads, size):
    """Grad-CAM maps from features and gradients ``(N, h, w, C)``: in [0, 1], at ``size``."""
    alpha = grads.mean(axis=(1, 2))
    maps = np.maximum(np.einsum("nhwc,nc->nhw", features, alpha), 0.0)
    peak = maps.max(axis=(1, 2), keepdims=True)
    maps = np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), 0.0).astype("float32")
    resized = keras.ops.image.resize(maps[..., None], size, interpolation="bilinear")
    return np.clip(keras.ops.convert_to_numpy(resized)[..., 0], 0.0, 1.0)


def _batch_cam(head, tail, x, chosen):
    """``(maps, classes, logits)`` of one batch ``x`` of model inputs; ``chosen`` None
    explains each image's top class."""
    # no autodiff graph kept through the head (torch would hold all its activations)
    features = keras.ops.stop_gradient(head(keras.ops.convert_to_tensor(x)))
    logits = keras.ops.convert_to_numpy(tail(features)).astype("float32")
    if chosen is None:
        chosen = np.argmax(logits, axis=-1).astype("int32")
    picked = keras.ops.convert_to_tensor(chosen[:, None])

    def score(f):
        return keras.ops.sum(keras.ops.take_along_axis(tail(f), picked, axis=1))

    grads = gradients(score, features)
    maps = _maps(keras.ops.convert_to_numpy(features).astype("float32"),
                 keras.ops.convert_to_numpy(grads).astype("float32"), x.shape[1:3])
    return maps, chosen, logits


def grad_cam(model, images, layer=None, classes=None, preprocessing=None,
             batch_size=16) -> GradCam:
    """Grad-CAM heatmaps of ``images`` for a keras_vgg classifier.

    Args:
        model: a keras_vgg model with its top, or a fine-tuned one (its VGG nested inside,
            as ``keras_vgg.finetune`` builds it).
        images: RGB pixels in [0, 255] (see ``keras_vgg.pixels``): ``(N, H, W, 3)``,
            ``(H, W, 3)`` or a list; resized to the model's input size.
        layer: the conv-side layer of the VGG to explain from; default its last conv block's
            output before the pool (``block5_conv3`` in VGG16).
        classes: the class to explain, per image or one for all; default each image's top
            class.
        preprocessing: a mode such as ``"caffe"``; default the model's own.
        batch_size: images per forward and backward pass.

    Returns:
        A :class:`GradCam` (heatmaps, classes, scores, layer).
    """
    base = vgg_base(model)
    layer = check_layer(base, layer)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise expected("`batch_size` to be an int >= 1", batch_size=batch_size)
    x = model_inputs(model, images, preprocessing)
    chosen = _check_classes(classes, len(x), model.outputs[0].shape[-1])
    logits_model, activation = with_logits(model)  # one copy, whatever the number of images
    head, tail = _cut(logits_model, layer)
    parts = [_batch_cam(head, tail, x[i:i + batch_size],
                        None if chosen is None else chosen[i:i + batch_size])
             for i in range(0, len(x), batch_size)]
    maps, picked, logits = (np.concatenate(part) for part in zip(*parts))
    scores = keras.ops.convert_to_numpy(keras.activations.get(activation)(logits))
    return GradCam(maps, picked, scores.astype("float32"), layer)


def colorize(heatmap) -> np.ndarray:
    """A heatmap in [0, 1] as uint8 RGB, blue (0) to red (1) through green (the jet map)."""
    h = np.clip(np.asarray(heatmap, "float32"), 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * h - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def overlay(image, heatmap, alpha=0.45) -> np.ndarray:
    """``image`` (uint8 RGB ``(H, W, 3)``) with ``heatmap`` (any size, resized to it)
    coloured on top, ``alpha`` the heatmap's share."""
    image = np.asarray(image)
    resized = keras.ops.image.resize(np.asarray(heatmap, "float32")[..., None],
                                     image.shape[:2], interpolation="bilinear")
    colour = colorize(keras.ops.convert_to_numpy(resized)[..., 0]).astype("float32")
    return (alpha * colour + (1 - alpha) * image.astype("float32")).round().astype(np.uint8)
