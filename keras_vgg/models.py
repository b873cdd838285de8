"""Public builders, one per variant, each a single call of :func:`build_vgg`.

Example:
    >>> from keras_vgg import VGG16, get_model
    >>> VGG16(include_top=False, input_shape=(32, 32, 3), pooling="max").output_shape
    (None, 512)
    >>> get_model("vgg11_bn", include_top=False).name
    'vgg11_bn'
"""

from __future__ import annotations

from keras_vgg.builder import build_vgg
from keras_vgg.configs import LRN, Conv, get_config

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
