"""Structured filter pruning: every conv keeps its strongest filters and the model is
rebuilt narrower (a plain keras_vgg model of other widths, not a mask over the old one).

Filters are ranked by the L1 norm of their kernel (Li et al. 2017, "Pruning Filters for
Efficient ConvNets") or, in the batch-norm forms, by the magnitude of their BatchNorm scale
(Liu et al. 2017, "Learning Efficient Convolutional Networks through Network Slimming").
Every conv keeps the same share of its filters: the largest share that meets a FLOPs or a
parameter target. A removed filter takes with it its BatchNorm entries, the next conv's
input channels, and fc1's rows after ``flatten`` (or the head's rows after the pooling).
The result records its widths (``model.widths``), and saves, loads, fine-tunes and exports
like any other keras_vgg model; ``build_vgg(variant, widths=model.widths)`` rebuilds it.

Works on a keras_vgg model (``build_vgg``, ``VGG16``...) and on a classifier fine-tuned
from one (``image -> base -> head``, as ``keras-vgg finetune`` writes it). A pruned model
that keeps every filter computes what the original computed. An LRN's channel window
(A-LRN, VGG-F/M/S) spans other neighbours once channels go: fine-tune after pruning.

Example:
    >>> import keras_vgg
    >>> from keras_vgg.pruning import model_cost, prune
    >>> model = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> small = prune(model, flops=0.3)
    >>> small.widths
    (35, 70, 139, 139, 279, 279, 279, 279)
    >>> model_cost(small).flops / model_cost(model).flops <= 0.3
    True
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import keras
import numpy as np

from keras_vgg._helpers import expected, find_nested
from keras_vgg.choices import CRITERIA
from keras_vgg.configs import VGGConfig, get_config
from keras_vgg.vgg_model import VGGModel

# Layers a VGG chain may hold besides Conv2D, BatchNormalization and Dense (none has weights).
_PASS_THROUGH = ("InputLayer", "Activation", "ReLU", "MaxPooling2D", "CeilMaxPooling2D",
                 "LocalResponseNormalization", "ZeroPadding2D", "Dropout", "Flatten",
                 "GlobalAveragePooling2D", "GlobalMaxPooling2D", "AdaptiveAveragePooling2D",
                 "UpSampling2D", "Identity")


@dataclass(frozen=True)
class Cost:
    """FLOPs (multiply-adds of the convs and Dense layers x 2, batch 1) and parameters."""

    flops: int
    params: int


def vgg_base(model) -> VGGModel:
    """The keras_vgg model in ``model``: itself, or the base of a fine-tuned classifier."""
    base = find_nested(model, lambda m: isinstance(m, VGGModel) and m.variant is not None
                       and any(layer.name == "block1_conv1" for layer in m.layers))
    if base is None:
        raise expected("`model` to be a keras_vgg model (build_vgg, VGG16, get_model...) or a "
                       "classifier fine-tuned from one (image -> base -> head)",
                       model=getattr(model, "name", model))
    return base


def _leaves(model):
    """The layers of ``model`` in graph order, nested models opened, inputs left out."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def _chain(model) -> list:
    """``model``'s layers, checked to be a VGG chain whose convs are the base's."""
    base = vgg_base(model)
    layers = list(_leaves(model))
    for layer in layers:
        kind = type(layer).__name__
        if kind not in _PASS_THROUGH and not isinstance(
                layer, (keras.layers.Conv2D, keras.layers.BatchNormalization, keras.layers.Dense)):
            raise expected("`model` to be a keras_vgg model or a classifier fine-tuned from one, "
                           f"a chain of VGG layers; it holds {kind} layer {layer.name!r}",
                           model=model.name)
    convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    if [c.name for c in convs] != [c.name for c in _leaves(base)
                                   if isinstance(c, keras.layers.Conv2D)]:
        raise expected("`model`'s convolutions to be those of its keras_vgg base",
                       model=model.name)
    return layers


def conv_names(model) -> list[str]:
    """The names of the convs pruning acts on, in order."""
    return [layer.name for layer in _chain(model) if isinstance(layer, keras.layers.Conv2D)]


def conv_widths(model) -> tuple[int, ...]:
    """The filters of each conv pruning acts on, in order."""
    return tuple(int(layer.kernel.shape[-1]) for layer in _chain(model)
                 if isinstance(layer, keras.layers.Conv2D))


def _batch_norm_after(layers, i):
    after = layers[i + 1] if i + 1 < len(layers) else None
    return after if isinstance(after, keras.layers.BatchNormalization) else None


def filter_scores(model, criterion="auto") -> dict[str, np.ndarray]:
    """Each conv's filter scores (higher is kept): ``"l1"`` the L1 norm of the filter's
    kernel, ``"bn_scale"`` the magnitude of its BatchNorm scale, ``"auto"`` the BN scale
    where the conv has a BatchNorm, else L1."""
    if criterion not in CRITERIA:
        raise expected(f"`criterion` to be one of {CRITERIA}", criterion=criterion)
    layers, scores = _chain(model), {}
    for i, layer in enumerate(layers):
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        bn = _batch_norm_after(layers, i)
        if criterion == "bn_scale" or (criterion == "auto" and bn is not None):
            if bn is None or not bn.scale:
                raise expected("`criterion='bn_scale'` only for models with a BatchNorm scale "
                               f"after every conv ({layer.name} has none)", criterion=criterion)
            scores[layer.name] = np.abs(keras.ops.convert_to_numpy(bn.gamma))
        else:
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            scores[layer.name] = np.abs(kernel).sum(axis=(0, 1, 2))
    return scores


def model_cost(model, widths=None) -> Cost:
    """FLOPs and parameters of ``model``, or of it pruned to ``widths`` (one int per conv)."""
    layers = _chain(model)
    names = [layer.name for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    widths = dict(zip(names, widths)) if widths is not None else {}
    flops = params = 0
    channels, positions = None, 1  # the current width; map positions a Dense row sees
    for layer in layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width = layer.output.shape[1:3]
            if height is None or width is None:
                raise expected("a model with a fixed input size to count FLOPs (build it with "
                               "input_shape=(height, width, 3))", model=model.name)
            k_h, k_w, c_in, c_out = layer.kernel.shape
            c_in, c_out = channels or c_in, widths.get(layer.name, c_out)
            flops += 2 * height * width * k_h * k_w * c_in * c_out
            params += k_h * k_w * c_in * c_out + (c_out if layer.use_bias else 0)
            channels = c_out
        elif isinstance(layer, keras.layers.BatchNormalization):
            params += len(layer.weights) * channels
        elif isinstance(layer, keras.layers.Flatten):
            positions = math.prod(layer.input.shape[1:-1])
        elif isinstance(layer, keras.layers.Dense):
            rows, units = layer.kernel.shape
            rows = positions * channels if channels else rows
            flops += 2 * rows * units
            params += rows * units + (units if layer.use_bias else 0)
            channels, positions = units, 1
    return Cost(int(flops), int(params))


def plan_widths(model, flops=None, params=None) -> tuple[int, ...]:
    """Conv widths that keep the same share of every conv's filters, the largest share for
    which the model keeps at most ``flops`` of its FLOPs or ``params`` of its parameters
    (fractions in (0, 1])."""
    if (flops is None) == (params is None):
        raise expected("one of `flops` or `params` (the fraction of the model's FLOPs or "
                       "parameters to keep)", flops=flops, params=params)
    arg, fraction = ("flops", flops) if flops is not None else ("params", params)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction <= 1:
        raise expected(f"`{arg}` to be the fraction to keep, in (0, 1] (0.3 keeps 30%)",
                       **{arg: fraction})
    full = conv_widths(model)

    def widths(share):
        return tuple(max(1, round(share * n)) for n in full)

    def kept(share):
        cost = model_cost(model, widths(share))
        return getattr(cost, arg) / getattr(model_cost(model), arg)

    smallest = kept(0.0)
    if smallest > fraction:
        raise expected(
            f"`{arg}` of at least {smallest:.4f}: a smaller target would leave some conv with "
            "no filter (each keeps one at least; Dense layers keep their units)",
            **{arg: fraction})
    low, high = 0.0, 1.0
    if kept(high) <= fraction:
        return widths(high)
    for _ in range(40):  # bisection on the share: kept() grows with it
        middle = (low + high) / 2
        low, high = (middle, high) if kept(middle) <= fraction else (low, middle)
    return widths(low)


def prune(model, flops=None, params=None, widths=None, criterion="auto") -> keras.Model:
    """A narrower copy of ``model``: each conv keeps its highest-scoring filters
    (``filter_scores``), as many as ``widths`` says (one int per conv) or as
    ``plan_widths(model, flops, params)`` finds. Same structure, names and record (with
    ``widths``); ``model`` is left as it was.

    Example:
        >>> import keras_vgg
        >>> model = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3))
        >>> prune(model, widths=(8, 16, 32, 32, 64, 64, 64, 64)).output_shape
        (None, 1, 1, 64)
    """
    if widths is None:
        widths = plan_widths(model, flops, params)
    elif flops is not None or params is not None:
        raise expected("either `widths` or a `flops`/`params` target, not both",
                       widths=widths, flops=flops, params=params)
    return prune_filters(model, kept_filters(model, widths, criterion))


def prune_filters(model, keep: dict) -> keras.Model:
    """A narrower copy of ``model`` in which each conv keeps the filters ``keep`` names
    (``{conv name: indices}``, as :func:`kept_filters` gives them). The filters may be chosen
    on another model of the same graph: ``model`` can be that model folded and cast for
    inference (``keras_vgg.batch_norm.inference_model``), which keeps each filter's
    weights in place, so the copy equals the chosen model pruned, then folded and cast.

    Example:
        >>> import keras_vgg
        >>> model = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3))
        >>> keep = kept_filters(model, (8, 16, 32, 32, 64, 64, 64, 64))
        >>> prune_filters(model, keep).widths
        (8, 16, 32, 32, 64, 64, 64, 64)
    """
    widths = tuple(len(k) for k in keep.values())
    recorded = pruned_widths(get_config(vgg_base(model).variant).with_widths(widths))
    pruned = _rebuilt(model, {name: len(k) for name, k in keep.items()}, recorded)
    _copy_weights(model, pruned, keep)
    return pruned


def kept_filters(model, widths, criterion="auto") -> dict[str, np.ndarray]:
    """Which filters each conv keeps when ``model`` is pruned to ``widths``: ``{conv name:
    the kept filters' indices, ascending}``, as :func:`prune` keeps them.

    Example:
        >>> import keras_vgg
        >>> model = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3))
        >>> [len(k) for k in kept_filters(model, (8, 16, 32, 32, 64, 64, 64, 64)).values()]
        [8, 16, 32, 32, 64, 64, 64, 64]
    """
    names = conv_names(model)
    widths = _checked_widths(widths, names, model)
    scores = filter_scores(model, criterion)
    return {name: np.sort(np.argsort(-scores[name], kind="stable")[:n])
            for name, n in zip(names, widths)}


def block_outputs(model) -> dict[str, str]:
    """``{pooling layer: the conv whose filters it carries}``: each block's output (its
    pool, in the keras_vgg base) and the last conv before it, in order.

    Example:
        >>> import keras_vgg
        >>> block_outputs(keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3)))["block3_pool"]
        'block3_conv2'
    """
    outputs, conv = {}, None
    for layer in _chain(vgg_base(model)):
        if isinstance(layer, keras.layers.Conv2D):
            conv = layer.name
        elif "MaxPooling2D" in type(layer).__name__ and conv:
            outputs[layer.name] = conv
    return outputs


def _checked_widths(widths, names, model):
    full = list(conv_widths(model))
    try:
        widths = tuple(widths)
    except TypeError:
        widths = None
    if widths is None or len(widths) != len(names) or not all(
            isinstance(w, (int, np.integer)) and not isinstance(w, bool) and 1 <= w <= n
            for w, n in zip(widths, full)):
        raise expected(f"`widths` to be {len(names)} ints, one per conv, each from 1 to the "
                       f"conv's filters {full}", widths=widths)
    return tuple(int(w) for w in widths)


def pruned_widths(config: VGGConfig):
    """What a model of ``config`` records as its widths (``model.widths``): its conv widths
    when they differ from its variant's in the table (a pruned network), else None.

    Example:
        >>> from keras_vgg.configs import get_config
        >>> vgg11 = get_config("vgg11")
        >>> pruned_widths(vgg11), pruned_widths(vgg11.with_widths([8] * 8))
        (None, (8, 8, 8, 8, 8, 8, 8, 8))
    """
    widths = config.conv_widths
    return None if widths == get_config(config.name).conv_widths else widths


def _rebuilt(model, filters: dict, widths) -> keras.Model:
    """``model``'s architecture from its config with each conv's ``filters`` and every
    channel count downstream of them changed; fresh weights."""
    state = {"channels": None}

    def narrow(entry):
        entry = {k: v for k, v in entry.items() if k not in ("build_config",
                                                            "build_input_shape")}
        kind, config = entry.get("class_name"), entry.get("config")
        if not isinstance(config, dict):
            return entry
        config = dict(config)
        if "layers" in config:  # a model: its layers in order, its record
            config.pop("build_input_shape", None)
            config["layers"] = [narrow(layer) for layer in config["layers"]]
            if kind == "VGGModel" or "widths" in config:
                config["widths"] = None if widths is None else list(widths)
        elif kind == "InputLayer" and state["channels"] is not None:
            config["batch_shape"] = [*config["batch_shape"][:-1], state["channels"]]
        elif config.get("name") in filters and "filters" in config:
            config["filters"] = state["channels"] = filters[config["name"]]
        elif kind == "Dense":
            state["channels"] = None
        return {**entry, "config": config}

    top = narrow({"class_name": type(model).__name__, "config": copy.deepcopy(model.get_config())})
    return type(model).from_config(top["config"])


def _copy_weights(model, pruned, keep: dict):
    """Each layer's weights into its narrower twin, the removed channels cut out."""
    channels, flat_shape = None, None
    for old, new in zip(_leaves(model), _leaves(pruned)):
        weights = [keras.ops.convert_to_numpy(w) for w in old.weights]
        if isinstance(old, keras.layers.Conv2D):
            kernel = weights[0] if channels is None else weights[0][:, :, channels]
            out = keep[old.name]
            weights = [kernel[..., out]] + [b[out] for b in weights[1:]]
            channels = out
        elif isinstance(old, keras.layers.BatchNormalization) and channels is not None:
            weights = [w[channels] for w in weights]
        elif isinstance(old, keras.layers.Flatten):
            flat_shape = tuple(old.input.shape[1:])
        elif isinstance(old, keras.layers.Dense):
            if channels is not None:
                rows = np.arange(math.prod(flat_shape)).reshape(flat_shape)[..., channels] \
                    if flat_shape else channels
                weights = [weights[0][rows.reshape(-1)]] + weights[1:]
            channels, flat_shape = None, None
        new.set_weights(weights)
