"""Input preprocessing for VGG weights: the mode travels with the weights.

Modes (channels last, RGB pixels in [0, 255] in):

- ``"caffe"``: RGB -> BGR, ImageNet channel means subtracted, no scaling (Keras's
  VGG16/VGG19 and the original Caffe/MatConvNet-trained VGG weights).
- ``"torch"``: scaled to [0, 1], then ImageNet mean/std per channel (torchvision, timm).
- ``"tf"``: scaled to [-1, 1].

The three are Keras's own ``imagenet_utils.preprocess_input`` modes; this module
names them and checks the argument.

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

import keras
import numpy as np
from keras.src.applications import imagenet_utils

MODES = ("caffe", "torch", "tf")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"Expected `mode` to be one of {MODES}. Received: mode={mode!r}")
    return mode


def preprocess_input(x, mode: str = "caffe"):
    """Preprocess a batch of RGB images (values 0-255) for a VGG model.

    Works on NumPy arrays (never changed in place, unlike Keras's own function) and on
    tensors (also inside ``tf.data`` maps).
    """
    check_mode(mode)
    if isinstance(x, (np.ndarray, list, tuple)):
        x = np.array(x, dtype="float32")  # a copy: Keras's function writes into NumPy input
    else:
        x = keras.ops.cast(x, "float32")
    return imagenet_utils.preprocess_input(x, data_format="channels_last", mode=mode)


def preprocessing_affine(mode: str):
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
