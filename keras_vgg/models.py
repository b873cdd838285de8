"""``build_vgg`` (check, build, load weights) and the public builders, one per variant.

Example:
    >>> from keras_vgg import VGG16, build_vgg, get_model
    >>> build_vgg("vgg16", include_top=False, input_shape=(32, 32, 3), pooling="avg").output_shape
    (None, 512)
    >>> VGG16(include_top=False, input_shape=(32, 32, 3), pooling="max").output_shape
    (None, 512)
    >>> get_model("vgg11_bn", include_top=False).name
    'vgg11_bn'
"""

from __future__ import annotations

import os

import keras

from keras_vgg._helpers import expected
from keras_vgg.builder import build_graph, check_arguments, resolve_config, resolve_input_shape
from keras_vgg.configs import LRN, Conv, get_config
from keras_vgg.convert import SOURCE_SUFFIXES
from keras_vgg.precision import precision_scope
from keras_vgg.weights import NAMES, find_weights, load_weights

WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


def _check_published(weights, config, include_top, classes, classifier_activation):
    find_weights(config.name, include_top, weights)
    if include_top and classes != 1000:
        raise expected(
            f"`classes=1000` with `weights={weights!r}` and `include_top=True`", classes=classes)
    activation = keras.activations.get(classifier_activation)
    if include_top and activation not in (keras.activations.get("softmax"),
                                          keras.activations.get(None)):
        raise expected("`classifier_activation` None or 'softmax' with pretrained weights",
                       classifier_activation=classifier_activation)


def _check_weights_path(weights):
    if not isinstance(weights, (str, os.PathLike)):
        raise expected(f"`weights` to be None, one of {NAMES} or a path to a weights file",
                       weights=weights)
    if not os.path.isfile(weights):
        raise expected(
            f"`weights` to be None, one of {NAMES} or the path of an existing weights file",
            weights=os.fspath(weights))
    if not os.fspath(weights).lower().endswith(WEIGHTS_SUFFIXES + SOURCE_SUFFIXES):
        raise expected(
            f"`weights` to be a Keras weights file ({', '.join(WEIGHTS_SUFFIXES)}) or a file to "
            f"convert ({', '.join(SOURCE_SUFFIXES)})", weights=os.fspath(weights))


def _check_published_input(weights, config, include_top, input_shape):
    height, width, channels = input_shape
    if channels != 3:
        raise expected(f"3 channels with pretrained weights (`weights={weights!r}`)",
                       input_shape=input_shape)
    size = config.default_size
    if include_top and (height, width) != (size, size):
        raise expected(
            f"`input_shape=({size}, {size}, 3)` with include_top=True and weights={weights!r}",
            input_shape=input_shape)


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
    precision=None,
    widths=None,
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
        precision: what the layers compute in: ``"float32"``, ``"bfloat16"``, ``"float16"``
            (mixed precision: the weights stay float32, the classifier computes in float32),
            or ``"auto"``, the fastest this machine runs well (``keras_vgg.precision``).
            None (default): Keras's global dtype policy, float32 unless set.
        widths: the filters of every conv, in order, for a pruned model's narrower graph
            (``model.widths`` of a model ``keras_vgg.pruning`` made); None: the variant's own.

    Returns:
        A ``keras.Model``.

    Example:
        >>> model = build_vgg("vgg_m", input_shape=(64, 64, 3), classes=10)
        >>> model.get_layer("flatten").input.shape
        (None, 1, 1, 512)
    """
    config = resolve_config(variant, batch_norm, widths)
    check_arguments(config, include_top, pooling, classes, classifier_activation, dropout,
                    adaptive_pool)
    published = isinstance(weights, str) and weights in NAMES
    if published:
        if widths is not None:
            raise expected(f"`widths=None` with `weights={weights!r}` (published weights are "
                           "of the full width)", widths=widths)
        _check_published(weights, config, include_top, classes, classifier_activation)
        shape = resolve_input_shape(config, include_top, input_tensor, input_shape)
        _check_published_input(weights, config, include_top, shape)
    elif weights is not None:
        _check_weights_path(weights)
    with precision_scope(precision):
        model = build_graph(config, include_top=include_top, input_tensor=input_tensor,
                            input_shape=input_shape, pooling=pooling, classes=classes,
                            classifier_activation=classifier_activation, name=name,
                            dropout=dropout, adaptive_pool=adaptive_pool)
    if weights is not None:
        load_weights(model, weights, config.name, include_top)
    return model

_DOC = """{paper_name} ({name}): {summary}

Reference: {reference}.
Layers: {layers}; FC {fc}.
`batch_norm=True` {bn}.

Args:
    include_top, weights, input_tensor, input_shape, pooling, classes,
    classifier_activation, name: as ``keras.applications.VGG16``; see ``build_vgg``.
    batch_norm: add BatchNormalization after every conv (A-E only).
    dropout: Dropout rate after fc1 and fc2 (paper: 0.5).
    adaptive_pool: average-pool to n x n before flatten (torchvision's classifier: 7).
    precision: None (Keras's dtype policy), "auto", "float32", "bfloat16" or "float16".
    widths: one int per conv, a pruned network's widths (None: the variant's own).

Returns:
    A ``keras.Model``.

Example:
    >>> model = {func}(include_top=False, input_shape=(64, 64, 3), pooling="avg")
    >>> model.output_shape[-1]
    {channels}
"""


def _layer_text(layer) -> str:
    if isinstance(layer, Conv):
        return f"conv{layer.kernel}-{layer.filters}" + (f"/s{layer.stride}" if layer.stride > 1 else "")
    return "LRN" if isinstance(layer, LRN) else "pool"


def _describe_layers(config) -> str:
    return " | ".join(" ".join(_layer_text(layer) for layer in block) for block in config.blocks)


def _public_builder(func_name: str, variant: str, summary: str):
    config = get_config(variant)

    def builder(
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
        precision=None,
        widths=None,
    ):
        return build_vgg(
            variant,
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            batch_norm=batch_norm,
            dropout=dropout,
            adaptive_pool=adaptive_pool,
            precision=precision,
            widths=widths,
        )

    builder.__name__ = builder.__qualname__ = func_name
    builder.__doc__ = _DOC.format(
        paper_name=config.paper_name,
        name=config.name,
        summary=summary,
        reference=config.reference,
        layers=_describe_layers(config),
        fc="-".join(str(u) for u in config.fc_units) + "-classes",
        bn="gives " + config.name + "_bn" if config.supports_batch_norm else "is not available",
        func=func_name,
        channels=[l for b in config.blocks for l in b if isinstance(l, Conv)][-1].filters,
    )
    return builder


VGG11 = _public_builder("VGG11", "vgg11", "11 weight layers, the shallowest deep net")
VGG11LRN = _public_builder("VGG11LRN", "vgg11_lrn", "VGG11 with LRN after the first conv")
VGG13 = _public_builder("VGG13", "vgg13", "13 weight layers")
VGG16C = _public_builder("VGG16C", "vgg16c", "VGG13 plus a 1x1 conv in blocks 3-5")
VGG16 = _public_builder("VGG16", "vgg16", "16 weight layers; keras.applications layer names")
VGG19 = _public_builder("VGG19", "vgg19", "19 weight layers; keras.applications layer names")
VGGF = _public_builder("VGGF", "vgg_f", "the fast net (AlexNet-like, 11x11/4 first conv)")
VGGM = _public_builder("VGGM", "vgg_m", "the medium net (7x7/2 first conv)")
VGGM2048 = _public_builder("VGGM2048", "vgg_m_2048", "VGG-M with a 2048-wide fc2")
VGGM1024 = _public_builder("VGGM1024", "vgg_m_1024", "VGG-M with a 1024-wide fc2")
VGGM128 = _public_builder("VGGM128", "vgg_m_128", "VGG-M with a 128-wide fc2")
VGGS = _public_builder("VGGS", "vgg_s", "the slow net (7x7/2 first conv, 3x3/3 pools). "
                      "conv2 is unpadded as in the released model (the paper's Table 1 says pad 1)")

BUILDERS = {
    f.__name__: f
    for f in (VGG11, VGG11LRN, VGG13, VGG16C, VGG16, VGG19, VGGF, VGGM, VGGM2048, VGGM1024,
              VGGM128, VGGS)
}


def get_model(variant, **kwargs):
    """Build a variant by name (``"vgg16"``, ``"vgg16_bn"``, ``"D"``, ``"VGGM"``, ...).

    Keyword arguments are those of :func:`build_vgg`.

    Example:
        >>> get_model("vgg_s", include_top=False, input_shape=(64, 64, 3)).output_shape
        (None, 1, 1, 512)
    """
    if isinstance(variant, str) and variant in BUILDERS:
        return BUILDERS[variant](**kwargs)
    return build_vgg(variant, **kwargs)
