"""What one build builds: the arguments of ``build_vgg`` that shape the graph, checked once
into a frozen :class:`BuildSpec` that ``keras_vgg.builder.build_graph`` builds as it is.

Every bad argument is a ValueError naming it, what was expected and what was received.

Example:
    >>> from keras_vgg.spec import build_spec
    >>> spec = build_spec("D", batch_norm=True, include_top=False, input_shape=[32, 32, 3])
    >>> spec.config.name, spec.input_shape
    ('vgg16_bn', (32, 32, 3))
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Optional

import keras

from keras_vgg._helpers import expected as _error
from keras_vgg.configs import VGGConfig, get_config, is_int, min_input_size

POOLINGS = (None, "avg", "max")


@dataclasses.dataclass(frozen=True)
class BuildSpec:
    """One build, checked: the variant's config (its batch-norm form and widths applied) and
    the arguments of ``build_vgg`` that shape the graph, with its defaults. Make one with
    :func:`build_spec`, which checks them; ``input_shape`` is then the (H, W, C) built."""

    config: VGGConfig
    include_top: bool = True
    input_tensor: Any = None
    input_shape: Optional[tuple] = None
    pooling: Optional[str] = None
    classes: int = 1000
    classifier_activation: Any = "softmax"
    name: Optional[str] = None
    dropout: float = 0.5
    adaptive_pool: Optional[int] = None


def build_spec(variant, batch_norm=False, widths=None, **graph) -> BuildSpec:
    """Check ``variant`` (a name, alias or ``VGGConfig``), ``batch_norm``, ``widths`` and the
    graph arguments (``BuildSpec``'s fields, as keywords) once; the spec to build.

    Example:
        >>> build_spec("vgg_m", input_shape=(64, 64, 3), classes=10).input_shape
        (64, 64, 3)
    """
    spec = BuildSpec(resolve_config(variant, batch_norm, widths), **graph)
    _check_top(spec)
    _check_numbers(spec)
    return dataclasses.replace(spec, input_shape=_input_shape(spec), classes=int(spec.classes),
                               dropout=float(spec.dropout))


def resolve_config(variant, batch_norm: bool, widths=None) -> VGGConfig:
    """The variant's config, switched to its batch-norm form when asked, with ``widths``
    (one int per conv) when given.

    Example:
        >>> resolve_config("vgg11", True, (8, 16, 32, 32, 64, 64, 64, 64)).name
        'vgg11_bn'
    """
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


def _check_top(spec: BuildSpec):
    """The data format, and what goes on top of the convs: the FC layers or a pooling."""
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "keras_vgg builds channels_last models. Expected "
            "keras.config.image_data_format() == 'channels_last'. "
            f"Received: {keras.config.image_data_format()!r}"
        )
    if not isinstance(spec.include_top, bool):
        raise _error("`include_top` to be True or False", include_top=spec.include_top)
    if spec.pooling not in POOLINGS:
        raise _error("`pooling` to be None, 'avg' or 'max'", pooling=spec.pooling)
    if spec.include_top and spec.pooling is not None:
        raise _error("`pooling=None` when include_top=True (pooling applies to headless models)",
                     pooling=spec.pooling)
    adaptive_pool = spec.adaptive_pool
    if adaptive_pool is not None and (not spec.include_top or not is_int(adaptive_pool)
                                      or adaptive_pool < 1):
        raise _error("`adaptive_pool` None, or a positive int with include_top=True",
                     adaptive_pool=adaptive_pool)


def _check_numbers(spec: BuildSpec):
    """``classes``, ``dropout`` and ``classifier_activation``."""
    if not is_int(spec.classes) or spec.classes < 1:
        raise _error("`classes` to be a positive int", classes=spec.classes)
    dropout = spec.dropout
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise _error("`dropout` to be a rate in [0, 1)", dropout=dropout)
    try:
        keras.activations.get(spec.classifier_activation)
    except (ValueError, TypeError):
        raise _error(
            "`classifier_activation` to be None, a Keras activation name or a callable",
            classifier_activation=spec.classifier_activation,
        ) from None


def _input_shape(spec: BuildSpec) -> tuple:
    """The checked (H, W, C): ``input_tensor``'s, else ``input_shape``, else the default."""
    input_tensor, input_shape = spec.input_tensor, spec.input_shape
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
        size = spec.config.default_size if spec.include_top else None
        input_shape = (size, size, 3)
    return _checked_shape(input_shape, spec)


def _checked_shape(input_shape, spec: BuildSpec) -> tuple:
    """Check (H, W, C) against the variant's geometry; return it as a tuple of ints."""
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
    if spec.include_top and (height is None or width is None):
        raise _error(
            "a fixed `input_shape` (height, width, channels) when include_top=True, "
            "because the FC layers need a fixed size; use include_top=False for any size",
            input_shape=input_shape,
        )
    minimum = min_input_size(spec.config)
    if any(d is not None and d < minimum for d in (height, width)):
        raise _error(
            f"`input_shape` at least {minimum}x{minimum} for {spec.config.name} (smaller inputs "
            "leave a layer with an empty output)",
            input_shape=input_shape,
        )
    return tuple(None if d is None else int(d) for d in input_shape)
