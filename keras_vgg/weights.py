"""Published weights: one record per file, and loading ``weights=`` into a model.

Today the table holds the Keras-published VGG16/VGG19 files (the same files
``keras.applications`` uses, so their layer names and hashes are the contract).

Example:
    >>> from keras_vgg.weights import available_weights
    >>> sorted(available_weights())
    ['vgg16', 'vgg19']
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import keras

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class WeightsRecord:
    """One published weights file and what it implies."""

    variant: str
    include_top: bool
    source: str
    url: str
    file_hash: str  # md5, as keras.applications checks it
    num_params: int
    preprocessing: str  # mode for keras_vgg preprocessing ("caffe": BGR, mean subtracted)
    input_size: int
    licence: str
    top1: float | None = None
    top5: float | None = None

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


WEIGHTS: tuple[WeightsRecord, ...] = (
    WeightsRecord(
        "vgg16", True, "keras", _KERAS_APPS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "64373286793e3c8b2b4e3219cbf3544b", 138_357_544, "caffe", 224, "CC BY 4.0", 0.713, 0.901,
    ),
    WeightsRecord(
        "vgg16", False, "keras",
        _KERAS_APPS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc", 14_714_688, "caffe", 224, "CC BY 4.0",
    ),
    WeightsRecord(
        "vgg19", True, "keras", _KERAS_APPS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        "cbe5617147190e668d6c5d5026f83318", 143_667_240, "caffe", 224, "CC BY 4.0", 0.713, 0.900,
    ),
    WeightsRecord(
        "vgg19", False, "keras",
        _KERAS_APPS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "253f8cb515780f3b799900260a226db6", 20_024_384, "caffe", 224, "CC BY 4.0",
    ),
)


def available_weights() -> set[str]:
    """Variants that have ``weights="imagenet"``."""
    return {record.variant for record in WEIGHTS}


def find_weights(variant: str, include_top: bool) -> WeightsRecord:
    for record in WEIGHTS:
        if record.variant == variant and record.include_top == include_top:
            return record
    raise ValueError(
        f"No published ImageNet weights for {variant}. Expected `weights` to be None or a file "
        f"path for this variant ('imagenet' exists for {sorted(available_weights())}). "
        f"Received: weights='imagenet'"
    )


def fetch(record: WeightsRecord) -> str:
    """Download (once, into the Keras cache) and hash-check a published file."""
    return keras.utils.get_file(
        record.file_name, record.url, cache_subdir="models", file_hash=record.file_hash
    )


def load_weights(model: keras.Model, weights: str | os.PathLike, variant: str, include_top: bool):
    """Load ``weights`` ("imagenet" or a path Keras can read) into ``model``."""
    if weights == "imagenet":
        weights = fetch(find_weights(variant, include_top))
    try:
        model.load_weights(os.fspath(weights))
    except OSError as error:
        raise ValueError(
            f"Could not read the weights file ({error}). Expected a complete Keras weights file. "
            f"Received: weights={os.fspath(weights)!r}"
        ) from error
    except ValueError as error:
        raise ValueError(
            f"The weights file does not fit {model.name} ({variant}, include_top={include_top}): "
            f"{_short_reason(str(error))}. Received: weights={os.fspath(weights)!r}"
        ) from error


def _short_reason(message: str) -> str:
    """Keras's load error without the dump of variable values: layer name and both shapes."""
    layer = re.search(r"object <\w+ name=([\w.-]+)", message)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", message)
    if layer and shapes:
        return f"layer {layer.group(1)} has shape {shapes.group(1)}, the file {shapes.group(2)}"
    return message.split("\n")[0][:300]
