"""``build_vgg`` (check once, build, load weights) and the public builders, one per variant
of the config table without BN (``VGG16``...), each with ``build_vgg``'s signature less
``variant``. The one registry is the table (``keras_vgg.configs``), as torchvision's:
``list_models()`` names every variant, ``get_model(name, ...)`` builds one by any of its
names (``"vgg16"``, ``"D"``, ``"VGG16"``, ``"vgg16_bn"``), ``get_model_builder(name)`` gives
its builder.

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

import inspect
import os

import keras

from keras_vgg._helpers import expected
from keras_vgg.builder import build_graph
from keras_vgg.configs import CONFIGS, LRN, Conv, get_config
from keras_vgg.convert import SOURCE_SUFFIXES
from keras_vgg.precision import precision_scope
from keras_vgg.spec import BuildSpec, build_spec
from keras_vgg.weights import NAMES, find_weights, load_weights

WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


def _check_weights(weights, spec: BuildSpec, widths):
    """``weights`` against the checked ``spec`` (and the ``widths`` as given)."""
    if isinstance(weights, str) and weights in NAMES:
        if widths is not None:
            raise expected(f"`widths=None` with `weights={weights!r}` (published weights are "
                           "of the full width)", widths=widths)
        _check_published(weights, spec)
        _check_published_input(weights, spec)
    elif weights is not None:
        _check_weights_path(weights)


def _check_published(weights, spec: BuildSpec):
    find_weights(spec.config.name, spec.include_top, weights)
    if spec.include_top and spec.classes != 1000:
        raise expected(f"`classes=1000` with `weights={weights!r}` and `include_top=True`",
                       classes=spec.classes)
    activation = keras.activations.get(spec.classifier_activation)
    if spec.include_top and activation not in (keras.activations.get("softmax"),
                                               keras.activations.get(None)):
        raise expected("`classifier_activation` None or 'softmax' with pretrained weights",
                       classifier_activation=spec.classifier_activation)


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


def _check_published_input(weights, spec: BuildSpec):
    height, width, channels = input_shape = spec.input_shape
    if channels != 3:
        raise expected(f"3 channels with pretrained weights (`weights={weights!r}`)",
                       input_shape=input_shape)
    size = spec.config.default_size
    if spec.include_top and (height, width) != (size, size):
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
    spec = build_spec(variant, batch_norm, widths, include_top=include_top,
                      input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                      classes=classes, classifier_activation=classifier_activation, name=name,
                      dropout=dropout, adaptive_pool=adaptive_pool)
    _check_weights(weights, spec, widths)
    with precision_scope(precision):
        model = build_graph(spec)
    if weights is not None:
        load_weights(model, weights, spec.config.name, spec.include_top)
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


# What every builder of one variant takes: build_vgg's parameters less `variant`.
BUILDER_SIGNATURE = inspect.signature(build_vgg).replace(
    parameters=list(inspect.signature(build_vgg).parameters.values())[1:])


def get_model_builder(variant):
    """The builder of one variant (any of its names, or a ``VGGConfig``): ``build_vgg`` with
    the variant filled in, with ``build_vgg``'s signature less ``variant``.

    Example:
        >>> builder = get_model_builder("D-BN")
        >>> builder.__name__, builder(include_top=False, input_shape=(32, 32, 3)).name
        ('vgg16_bn', 'vgg16_bn')
    """
    config = get_config(variant)

    def builder(*args, **kwargs):
        return build_vgg(config, **BUILDER_SIGNATURE.bind(*args, **kwargs).arguments)

    builder.__signature__ = BUILDER_SIGNATURE
    builder.__name__ = builder.__qualname__ = config.name
    builder.__doc__ = f"``build_vgg({config.name!r}, ...)``: {config.paper_name}, " \
                      f"{config.reference}."
    return builder


def get_model(variant, **kwargs):
    """Build a variant by any of its names (``"vgg16"``, ``"vgg16_bn"``, ``"D"``, ``"VGGM"``)
    or its ``VGGConfig``. Keyword arguments are those of :func:`build_vgg`.

    Example:
        >>> get_model("vgg_s", include_top=False, input_shape=(64, 64, 3)).output_shape
        (None, 1, 1, 512)
    """
    return get_model_builder(variant)(**kwargs)


def public_name(config) -> str:
    """The public builder of a variant without BN: ``VGG16`` for vgg16, ``VGGM2048`` for
    vgg_m_2048 (one of the variant's names in the table, ``get_config`` reads it).

    Example:
        >>> public_name(get_config("vgg11_lrn"))
        'VGG11LRN'
    """
    return config.name.replace("_", "").upper()


def _public_builder(variant: str, summary: str):
    """``get_model_builder(variant)`` named and documented as a public builder."""
    config = get_config(variant)
    builder = get_model_builder(config)
    func_name = public_name(config)
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
        channels=config.conv_widths[-1],
    )
    return builder


VGG11 = _public_builder("vgg11", "11 weight layers, the shallowest deep net")
VGG11LRN = _public_builder("vgg11_lrn", "VGG11 with LRN after the first conv")
VGG13 = _public_builder("vgg13", "13 weight layers")
VGG16C = _public_builder("vgg16c", "VGG13 plus a 1x1 conv in blocks 3-5")
VGG16 = _public_builder("vgg16", "16 weight layers; keras.applications layer names")
VGG19 = _public_builder("vgg19", "19 weight layers; keras.applications layer names")
VGGF = _public_builder("vgg_f", "the fast net (AlexNet-like, 11x11/4 first conv)")
VGGM = _public_builder("vgg_m", "the medium net (7x7/2 first conv)")
VGGM2048 = _public_builder("vgg_m_2048", "VGG-M with a 2048-wide fc2")
VGGM1024 = _public_builder("vgg_m_1024", "VGG-M with a 1024-wide fc2")
VGGM128 = _public_builder("vgg_m_128", "VGG-M with a 128-wide fc2")
VGGS = _public_builder("vgg_s", "the slow net (7x7/2 first conv, 3x3/3 pools). "
                       "conv2 is unpadded as in the released model (the paper's Table 1 says pad 1)")


def public_builders() -> dict:
    """The public builders by name, one per variant of the table without BN, in its order.

    Example:
        >>> list(public_builders())[:3]
        ['VGG11', 'VGG11LRN', 'VGG13']
    """
    return {public_name(c): globals()[public_name(c)] for c in CONFIGS.values()
            if not c.batch_norm}
