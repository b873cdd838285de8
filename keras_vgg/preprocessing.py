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
