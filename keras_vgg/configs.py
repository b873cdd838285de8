"""The VGG family as one declarative table.

Every variant is a :class:`VGGConfig`: a tuple of blocks of typed records
(:class:`Conv`, :class:`LRN`, :class:`Pool`) plus the widths of its fully
connected layers. The builder (``keras_vgg.builder``) and the shape/parameter
calculator (:func:`describe`) both walk this table, so a new variant is one
entry here plus its expected figures in the tests.

Sources:
    Deep nets A-E: Simonyan & Zisserman, "Very Deep Convolutional Networks for
    Large-Scale Image Recognition", arXiv:1409.1556, Table 1.
    Fast nets F/M/S: Chatfield et al., "Return of the Devil in the Details",
    BMVC 2014, Table 1, as released (Caffe model zoo / MatConvNet). Where the
    paper and the release differ (VGG-S conv2 padding: paper 1, release 0) the
    release is followed, because that is what its weights expect.

Example:
    >>> from keras_vgg.configs import get_config, describe
    >>> describe(get_config("vgg_f")).fc6_input
    (6, 6, 256)
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Union

from keras_vgg._helpers import did_you_mean


@dataclass(frozen=True)
class Conv:
    """A convolution followed by ReLU (and batch norm in the BN forms).

    ``pad`` is a symmetric zero padding in pixels, as Caffe and PyTorch write it.
    """

    filters: int
    kernel: int = 3
    stride: int = 1
    pad: int = 1


@dataclass(frozen=True)
class LRN:
    """Local response normalisation across channels, in TensorFlow's terms.

    ``alpha`` is per element (Caffe's ``alpha`` divided by ``local_size``);
    ``depth_radius=2`` is a window of 5 channels.
    """

    depth_radius: int = 2
    bias: float = 2.0
    alpha: float = 1e-4
    beta: float = 0.75


@dataclass(frozen=True)
class Pool:
    """Max pooling. ``ceil=True`` rounds the output size up, as Caffe does."""

    size: int = 2
    stride: int = 2
    ceil: bool = False


Layer = Union[Conv, LRN, Pool]


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class VGGConfig:
    """One VGG variant: its blocks, FC widths and where it comes from."""

    name: str
    paper_name: str
    blocks: tuple[tuple[Layer, ...], ...]
    fc_units: tuple[int, ...] = (4096, 4096)
    batch_norm: bool = False
    reference: str = ""
    default_size: int = 224

    @property
    def supports_batch_norm(self) -> bool:
        """BN forms exist for the LRN-free deep nets A, B, C, D, E."""
        return not self.batch_norm and not any(
            isinstance(layer, LRN) for block in self.blocks for layer in block
        )

    @property
    def conv_widths(self) -> tuple[int, ...]:
        """The filters of every conv, in table order."""
        return tuple(layer.filters for block in self.blocks for layer in block
                     if isinstance(layer, Conv))

    def with_widths(self, widths) -> "VGGConfig":
        """The same variant with other conv widths (one int per conv, in table order), as
        structured pruning leaves it; the name stays the variant's.

        Example:
            >>> get_config("vgg11").with_widths((8, 16, 32, 32, 64, 64, 64, 64)).conv_widths[:3]
            (8, 16, 32)
        """
        widths = tuple(widths) if isinstance(widths, (list, tuple)) else widths
        if (not isinstance(widths, tuple) or len(widths) != len(self.conv_widths)
                or not all(is_int(w) and w > 0 for w in widths)):
            raise ValueError(
                f"Expected `widths` to be {len(self.conv_widths)} positive ints, one per conv "
                f"of {self.name} (its own: {list(self.conv_widths)}). Received: widths={widths!r}")
        widths = iter(int(w) for w in widths)
        blocks = tuple(tuple(dataclasses.replace(layer, filters=next(widths))
                             if isinstance(layer, Conv) else layer for layer in block)
                       for block in self.blocks)
        return dataclasses.replace(self, blocks=blocks)

    def with_batch_norm(self) -> "VGGConfig":
        """The batch-norm form: a BatchNormalization after every conv."""
        return dataclasses.replace(
            self, name=self.name + "_bn", paper_name=self.paper_name + "-BN", batch_norm=True
        )


SIMONYAN = "Simonyan & Zisserman 2014, arXiv:1409.1556, Table 1"
CHATFIELD = "Chatfield et al. 2014, 'Return of the Devil in the Details', BMVC, Table 1"

_M = Pool()


def _convs(*filters: int) -> tuple[Layer, ...]:
    return tuple(Conv(f) for f in filters)


def _deep(*blocks: tuple[Layer, ...]) -> tuple[tuple[Layer, ...], ...]:
    return tuple(block + (_M,) for block in blocks)


_VGG_M_BLOCKS = (
    (Conv(96, 7, 2, 0), LRN(), Pool(3, 2, ceil=True)),
    (Conv(256, 5, 2, 1), LRN(), Pool(3, 2, ceil=True)),
    (Conv(512),),
    (Conv(512),),
    (Conv(512), Pool(3, 2, ceil=True)),
)

_BASE_CONFIGS = (
    VGGConfig(
        "vgg11", "A",
        _deep(_convs(64), _convs(128), _convs(256, 256), _convs(512, 512), _convs(512, 512)),
        reference=SIMONYAN,
    ),
    VGGConfig(
        "vgg11_lrn", "A-LRN",
        _deep(_convs(64) + (LRN(),), _convs(128), _convs(256, 256), _convs(512, 512),
              _convs(512, 512)),
        reference=SIMONYAN,
    ),
    VGGConfig(
        "vgg13", "B",
        _deep(_convs(64, 64), _convs(128, 128), _convs(256, 256), _convs(512, 512),
              _convs(512, 512)),
        reference=SIMONYAN,
    ),
    VGGConfig(
        "vgg16c", "C",
        _deep(_convs(64, 64), _convs(128, 128), _convs(256, 256) + (Conv(256, 1, 1, 0),),
              _convs(512, 512) + (Conv(512, 1, 1, 0),), _convs(512, 512) + (Conv(512, 1, 1, 0),)),
        reference=SIMONYAN,
    ),
    VGGConfig(
        "vgg16", "D",
        _deep(_convs(64, 64), _convs(128, 128), _convs(256, 256, 256), _convs(512, 512, 512),
              _convs(512, 512, 512)),
        reference=SIMONYAN,
    ),
    VGGConfig(
        "vgg19", "E",
        _deep(_convs(64, 64), _convs(128, 128), _convs(256, 256, 256, 256),
              _convs(512, 512, 512, 512), _convs(512, 512, 512, 512)),
        reference=SIMONYAN,
    ),
    VGGConfig(
        "vgg_f", "F",
        (
            (Conv(64, 11, 4, 0), LRN(), Pool(3, 2, ceil=True)),
            (Conv(256, 5, 1, 2), LRN(), Pool(3, 2, ceil=True)),
            (Conv(256),),
            (Conv(256),),
            (Conv(256), Pool(3, 2, ceil=True)),
        ),
        reference=CHATFIELD,
    ),
    VGGConfig("vgg_m", "M", _VGG_M_BLOCKS, reference=CHATFIELD),
    VGGConfig(
        "vgg_s", "S",
        (
            (Conv(96, 7, 2, 0), LRN(), Pool(3, 3, ceil=True)),
            # Released model: conv2 has no padding (the paper's Table 1 says 1).
            (Conv(256, 5, 1, 0), Pool(2, 2, ceil=True)),
            (Conv(512),),
            (Conv(512),),
            (Conv(512), Pool(3, 3, ceil=True)),
        ),
        reference=CHATFIELD,
    ),
    VGGConfig("vgg_m_2048", "M-2048", _VGG_M_BLOCKS, (4096, 2048), reference=CHATFIELD),
    VGGConfig("vgg_m_1024", "M-1024", _VGG_M_BLOCKS, (4096, 1024), reference=CHATFIELD),
    VGGConfig("vgg_m_128", "M-128", _VGG_M_BLOCKS, (4096, 128), reference=CHATFIELD),
)

CONFIGS: dict[str, VGGConfig] = {c.name: c for c in _BASE_CONFIGS}
CONFIGS.update(
    {c.name + "_bn": c.with_batch_norm() for c in _BASE_CONFIGS if c.supports_batch_norm}
)

# Other spellings users type: paper letters, dashes, "vgg16_c", "vgg-f".
ALIASES: dict[str, str] = {}
for _c in CONFIGS.values():
    ALIASES[_c.paper_name.lower()] = _c.name
    ALIASES[_c.name.replace("_", "-")] = _c.name
    ALIASES[_c.name.replace("_", "")] = _c.name
ALIASES.update({"vgg16_c": "vgg16c", "vgg16-c": "vgg16c"})


def list_models() -> list[str]:
    """Canonical names of every variant, in table order."""
    return list(CONFIGS)


def get_config(variant: Union[str, VGGConfig]) -> VGGConfig:
    """The config for a name, alias (``"D"``, ``"vgg-f"``) or a config itself.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if isinstance(variant, VGGConfig):
        return variant
    if not isinstance(variant, str):
        raise ValueError(
            f"Expected `variant` to be a variant name or a VGGConfig. Received: variant={variant!r}"
        )
    key = variant.strip().lower()
    key = ALIASES.get(key, key)
    if key not in CONFIGS:
        guess = did_you_mean(key, list_models() + sorted(ALIASES))
        raise ValueError(
            f"Unknown VGG variant. Expected one of {list_models()} (or a paper name such as "
            f"'D' or 'M-2048'). Received: variant={variant!r}{guess}"
        )
    return CONFIGS[key]


# --------------------------------------------------------------------------------------
# Shapes, parameters and FLOPs, computed from the table alone (no Keras model needed).


@dataclass(frozen=True)
class LayerInfo:
    name: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class Description:
    """What :func:`describe` finds: per-layer rows plus the totals."""

    layers: tuple[LayerInfo, ...]
    fc6_input: tuple[int, int, int]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def gflops(self) -> float:
        """Multiply-adds of convs and FC layers, counted as 2 FLOPs each, in billions."""
        return 2 * sum(layer.macs for layer in self.layers) / 1e9


def conv_output_size(size: int, conv: Conv) -> int:
    return (size + 2 * conv.pad - conv.kernel) // conv.stride + 1


def pool_output_size(size: int, pool: Pool) -> int:
    # Caffe's ceil((size - k) / s) + 1 is floor((size + s - 1 - k) / s) + 1: the builder pads
    # s - 1 pixels at the bottom/right and pools "valid", which gives exactly this.
    extra = pool.stride - 1 if pool.ceil else 0
    return (size + extra - pool.size) // pool.stride + 1


def layer_names(config: VGGConfig) -> list[tuple[str, Layer]]:
    """Keras layer names of the conv part: ``block{i}_conv{j}``, ``block{i}_lrn``, ``block{i}_pool``."""
    names = []
    for i, block in enumerate(config.blocks, start=1):
        n_conv = 0
        for layer in block:
            if isinstance(layer, Conv):
                n_conv += 1
                names.append((f"block{i}_conv{n_conv}", layer))
            elif isinstance(layer, LRN):
                names.append((f"block{i}_lrn", layer))
            else:
                names.append((f"block{i}_pool", layer))
    return names


def describe(
    config: Union[str, VGGConfig],
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classes: int = 1000,
) -> Description:
    """Walk the table at ``input_shape``: output shape, Keras-counted params, MACs per layer.

    Raises:
        ValueError: if some layer's output would be empty (input too small).
    """
    config = get_config(config)
    if len(input_shape) != 3 or not all(is_int(d) and d > 0 for d in input_shape):
        raise ValueError(
            "Expected `input_shape` to be a fixed (height, width, channels) of positive ints. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    h, w, c = input_shape
    rows = []
    for name, layer in layer_names(config):
        if isinstance(layer, Conv):
            h, w = conv_output_size(h, layer), conv_output_size(w, layer)
            params = layer.kernel * layer.kernel * c * layer.filters + layer.filters
            macs = max(h, 0) * max(w, 0) * layer.kernel * layer.kernel * c * layer.filters
            c = layer.filters
            if config.batch_norm:
                params += 4 * c  # gamma, beta, moving mean, moving variance
        elif isinstance(layer, Pool):
            h, w = pool_output_size(h, layer), pool_output_size(w, layer)
            params = macs = 0
        else:
            params = macs = 0
        if h < 1 or w < 1:
            raise ValueError(
                f"Input too small for {config.name}: layer {name} would have an empty output. "
                f"Expected an input of at least {min_input_size(config)}x{min_input_size(config)}. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        rows.append(LayerInfo(name, (h, w, c), params, macs))
    fc6_input = (h, w, c)
    if include_top:
        n_in = h * w * c
        for name, units in zip(("fc1", "fc2", "predictions"), config.fc_units + (classes,)):
            rows.append(LayerInfo(name, (units,), n_in * units + units, n_in * units))
            n_in = units
    return Description(tuple(rows), fc6_input)


def min_input_size(config: Union[str, VGGConfig]) -> int:
    """Smallest square input for which no layer's output is empty (32 for A-E)."""
    config = get_config(config)
    size = 1
    for _, layer in reversed(layer_names(config)):
        # Invert each layer: the smallest input giving an output of `size`.
        if isinstance(layer, Conv):
            size = (size - 1) * layer.stride + layer.kernel - 2 * layer.pad
        elif isinstance(layer, Pool):
            size = (size - 1) * layer.stride + layer.size - (layer.stride - 1 if layer.ceil else 0)
        size = max(size, 1)
    return size



def variant_table() -> str:
    """Every variant (``keras-vgg list``): paper name, parameters with and without top,
    GFLOPs, fc6 input and smallest input.

    Example:
        >>> print(variant_table().splitlines()[2])
        vgg11       A       132,863,336        9,220,480       15.22    7x7x512        32
    """
    from keras_vgg._helpers import format_table

    rows = []
    for name in list_models():
        top, headless = describe(name), describe(name, include_top=False)
        rows.append((name, get_config(name).paper_name, f"{top.params:,}",
                     f"{headless.params:,}", f"{top.gflops:.2f}",
                     "x".join(str(d) for d in top.fc6_input), str(min_input_size(name))))
    header = ("model", "paper", "params", "params (no top)", "GFLOPs@224", "fc6 input",
              "min size")
    return "\n".join([format_table(header, rows, right=range(2, 7)),
                      "GFLOPs: multiply-adds of convs and FC layers x 2, at 224x224x3, batch 1."])
