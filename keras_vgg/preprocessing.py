"""Input preprocessing for VGG weights: the mode travels with the weights.

Modes (channels last, RGB pixels in [0, 255] in):

- ``"caffe"``: RGB -> BGR, ImageNet channel means subtracted, no scaling (Keras's
  VGG16/VGG19 and the original Caffe/MatConvNet-trained VGG weights).
- ``"torch"``: scaled to [0, 1], then ImageNet mean/std per channel (torchvision, timm).
- ``"tf"``: scaled to [-1, 1].
- ``"mean_image"``: RGB kept, an average image (or mean pixel) subtracted, no scaling
  (MatConvNet's VGG-F/M/S and verydeep files: ``meta.normalization.averageImage``).

The first three are Keras's own ``imagenet_utils.preprocess_input`` modes. A model built
with published weights carries its :class:`Preprocessing` as ``model.preprocessing``, so
``preprocess_input(x, model=model)`` is right by construction.

Example:
    >>> import numpy as np
    >>> from keras_vgg.preprocessing import preprocess_input
    >>> x = np.full((1, 2, 2, 3), 255.0, dtype="float32")
    >>> preprocess_input(x, mode="tf")[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    >>> [round(float(v), 2) for v in preprocess_input(x, mode="caffe")[0, 0, 0]]
    [151.06, 138.22, 131.32]
    >>> float(x[0, 0, 0, 0])  # the input is left as it was
    255.0
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras.applications import imagenet_utils

from keras_vgg._helpers import recorded
from keras_vgg.choices import MODES, NAMED_MODES

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"Expected `mode` to be one of {MODES}. Received: mode={mode!r}")
    return mode


def _check_mean(mean, mode: str):
    if mode != "mean_image":
        if mean is not None:
            raise ValueError(f"Expected `mean` only with mode='mean_image'. Received: mode={mode!r}")
        return None
    array = None if mean is None else np.asarray(mean, dtype="float32")
    if array is None or array.shape[-1:] != (3,) or array.ndim not in (1, 3):
        shape = None if array is None else array.shape
        raise ValueError(
            "Expected `mean` (RGB, shape (3,) or (height, width, 3)) with mode='mean_image'. "
            f"Received: mean with shape {shape}"
        )
    return array


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """What a set of weights expects: a mode, plus the RGB mean for ``"mean_image"``.

    >>> Preprocessing("mean_image", mean=[1.0, 2.0, 3.0])(np.full((1, 1, 1, 3), 10.0))[0, 0, 0]
    array([9., 8., 7.], dtype=float32)
    """

    mode: str
    mean: np.ndarray | None = None

    def __post_init__(self):
        check_mode(self.mode)
        object.__setattr__(self, "mean", _check_mean(self.mean, self.mode))

    def __call__(self, x):
        return preprocess_input(x, self.mode, mean=self.mean)

    def __eq__(self, other):
        if not isinstance(other, Preprocessing):
            return NotImplemented
        same_mean = (self.mean is None and other.mean is None) or (
            self.mean is not None and other.mean is not None
            and np.array_equal(self.mean, other.mean))
        return self.mode == other.mode and same_mean

    def __hash__(self):
        return hash(self.mode)

    def mean_pixel(self) -> np.ndarray:
        """The mean as one RGB pixel (the average image averaged over its pixels)."""
        return self.mean.reshape(-1, 3).mean(axis=0)

    def to_json(self):
        """The mode's name, or ``{"mode": ..., "mean": [...]}`` when there is a mean."""
        return self.mode if self.mean is None else {"mode": self.mode, "mean": self.mean.tolist()}

    def describe(self) -> str:
        if self.mean is None:
            return self.mode
        return f"mean_image (RGB mean {np.round(self.mean_pixel(), 2).tolist()})"


def as_preprocessing(value, name: str = "preprocessing") -> Preprocessing:
    """A :class:`Preprocessing` from itself, a mode name or its ``to_json()`` form."""
    if isinstance(value, Preprocessing):
        return value
    if isinstance(value, dict) and set(value) <= {"mode", "mean"}:
        return Preprocessing(value.get("mode"), value.get("mean"))
    if value in NAMED_MODES:
        return Preprocessing(value)
    raise ValueError(
        f"Expected `{name}` to be one of {NAMED_MODES}, a Preprocessing or "
        f"{{'mode': 'mean_image', 'mean': [r, g, b]}}. Received: {name}={value!r}"
    )


def model_preprocessing(model) -> Preprocessing:
    """The preprocessing a model's weights expect (``model.preprocessing``, also when the VGG
    is nested inside a fine-tuned model)."""
    found = recorded(model, "preprocessing")
    if found is None:
        raise ValueError(
            f"Model {model.name!r} does not record its preprocessing (it was built with "
            "weights=None and not fine-tuned by keras_vgg). Expected the mode given "
            f"(`mode` or `preprocessing`), one of {MODES}."
        )
    return found


def preprocess_input(x, mode: str = "caffe", *, mean=None, model=None):
    """Preprocess a batch of RGB images (values 0-255) for a VGG model.

    Works on NumPy arrays (never changed in place, unlike Keras's own function) and on
    tensors (also inside ``tf.data`` maps).

    Args:
        x: images, channels last, RGB, 0-255.
        mode: one of ``MODES``.
        mean: the RGB mean pixel or average image for ``mode="mean_image"``; an average
            image of another size is resized (bilinear) to the images'.
        model: take mode and mean from the weights the model was built with instead.
    """
    if model is not None:
        return model_preprocessing(model)(x)
    check_mode(mode)
    mean = _check_mean(mean, mode)
    if isinstance(x, (np.ndarray, list, tuple)):
        x = np.array(x, dtype="float32")  # a copy: Keras's function writes into NumPy input
    elif _is_tf_tensor(x) and keras.backend.backend() != "tensorflow":
        return _tf_preprocess(x, mode, mean)  # a tf.data map under jax or torch
    else:
        x = keras.ops.cast(x, "float32")
    if mode != "mean_image":
        return imagenet_utils.preprocess_input(x, data_format="channels_last", mode=mode)
    if mean.ndim == 3 and tuple(mean.shape[:2]) != tuple(x.shape[-3:-1]):
        mean = keras.ops.image.resize(mean[None], tuple(x.shape[-3:-1]))[0]
        mean = keras.ops.convert_to_numpy(mean) if isinstance(x, np.ndarray) else mean
    return x - mean


def _is_tf_tensor(x) -> bool:
    return type(x).__module__.startswith("tensorflow")


def _tf_preprocess(x, mode, mean):
    """``preprocess_input`` in TensorFlow ops, for tf tensors whatever the Keras backend
    (Keras's function computes with the backend); the same formulas, in the same order."""
    import tensorflow as tf

    x = tf.cast(x, "float32")
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - tf.constant(TORCH_MEAN)) / tf.constant(TORCH_STD)
    if mode == "caffe":
        return x[..., ::-1] - tf.constant(CAFFE_MEAN_BGR)
    mean = tf.constant(mean, "float32")
    if mean.shape.rank == 3 and tuple(mean.shape[:2]) != tuple(x.shape[-3:-1]):
        mean = tf.image.resize(mean[None], tuple(x.shape[-3:-1]))[0]
    return x - mean


def preprocessing_affine(mode: str, mean=None):
    """Each mode as ``x @ matrix + offset`` on RGB pixels: one 1x1 convolution.

    This is how exported models carry their preprocessing (a TFLite CONV_2D that
    quantises like any other layer).

    >>> import numpy as np
    >>> matrix, offset = preprocessing_affine("caffe")
    >>> x = np.array([[10.0, 20.0, 30.0]])
    >>> np.allclose(x @ matrix + offset, preprocess_input(x[None, None], mode="caffe")[0, 0])
    True
    """
    check_mode(mode)
    mean = _check_mean(mean, mode)
    if mode == "mean_image":
        if mean.ndim != 1:
            raise ValueError(
                "An average image is not a 1x1 convolution. Expected `mean` of shape (3,) "
                f"(e.g. Preprocessing.mean_pixel()). Received: mean with shape {mean.shape}"
            )
        return np.eye(3), -mean.astype("float64")
    if mode == "caffe":  # RGB -> BGR, minus the BGR means
        return np.eye(3)[::-1].copy(), -np.array(CAFFE_MEAN_BGR)
    if mode == "torch":
        std = np.array(TORCH_STD)
        return np.diag(1.0 / (255.0 * std)), -np.array(TORCH_MEAN) / std
    return np.eye(3) / 127.5, -np.ones(3)


def resize_uint8(images, size):
    """Bilinear resize to ``size`` (int or (height, width)), rounded back to uint8 pixels.

    The one resize used by the recipes' pipeline and by every exported model.
    """
    import tensorflow as tf

    size = (size, size) if isinstance(size, int) else tuple(size)
    resized = tf.image.resize(images, size)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
