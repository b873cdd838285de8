"""Pixels in, model inputs out: images checked (rank, channels, range), resized to the
model's input size and preprocessed the way its weights expect.

What Grad-CAM and the embeddings take: RGB images, channels last, values in [0, 255]
(uint8, or floats in that range), as one array ``(N, H, W, 3)``, one image ``(H, W, 3)``
or a list of images of any sizes.

Example:
    >>> import numpy as np
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.pixels import model_inputs
    >>> model = VGG11(include_top=False, input_shape=(32, 32, 3))
    >>> x = model_inputs(model, np.full((2, 50, 40, 3), 255, np.uint8), preprocessing="tf")
    >>> x.shape, float(x.max())
    ((2, 32, 32, 3), 1.0)
    >>> model_inputs(model, np.zeros((32, 32)), preprocessing="tf")
    Traceback (most recent call last):
    ...
    ValueError: Expected `images` as RGB pixels (N, H, W, 3) or one image (H, W, 3). Received: images=an array of shape (32, 32)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_vgg._helpers import expected, first_named
from keras_vgg.preprocessing import as_preprocessing, model_preprocessing, resize_uint8


def check_pixels(image, argument: str = "images") -> np.ndarray:
    """``image`` as float32 ``(N, H, W, 3)``, or a ValueError naming ``argument`` when it is
    not RGB (rank 3 or 4, 3 channels) or not in [0, 255]: negative or preprocessed values,
    and floats that all lie in [0, 1] (scaled pixels: multiply them by 255)."""
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
        raise expected(f"`{argument}` as RGB pixels (N, H, W, 3) or one image (H, W, 3)",
                       **{argument: _Text(f"an array of shape {np.shape(image)}")})
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise expected(f"`{argument}` of numbers", **{argument: _Text(f"dtype {array.dtype}")})
    floats = np.issubdtype(array.dtype, np.floating)
    array = array.astype("float32")
    low, high = float(np.min(array)), float(np.max(array))
    if not (low >= 0.0 and high <= 255.0) or (floats and 0.0 < high <= 1.0):  # NaN fails too
        raise expected(f"`{argument}` as pixel values in [0, 255] (raw RGB; not preprocessed, "
                       "not scaled to [0, 1])",
                       **{argument: _Text(f"values in [{low:g}, {high:g}]")})
    return array


@dataclass(frozen=True)
class Skipped:
    """An image file left out because it could not be read: its ``path`` as listed, and
    the ``reason`` (``"empty file"``, ``"not an image ..."``, ``"corrupt or truncated
    ..."``, ``"no such file"``)."""

    path: str
    reason: str


class Results(list):
    """A list of results, one per image that could be read, in order, with ``skipped``:
    the :class:`Skipped` files that could not (empty when every file was read). It is a
    plain list otherwise (indexing, ``len``, unpacking, ``==`` with a list).

    >>> results = Results(["a"], [Skipped("b.jpg", "empty file")])
    >>> results == ["a"], [s.path for s in results.skipped]
    (True, ['b.jpg'])
    """

    def __init__(self, items=(), skipped=()):
        super().__init__(items)
        self.skipped = list(skipped)


def describe_skipped(skipped, shown: int = 5) -> str:
    """The skipped files and why, on one line: the first ``shown``, then "... and N more".

    >>> describe_skipped([Skipped(f"{i}.jpg", "empty file") for i in range(7)], shown=2)
    '0.jpg (empty file), 1.jpg (empty file) ... and 5 more'
    """
    return first_named((f"{s.path} ({s.reason})" for s in skipped), shown, " ... and {} more")


def skipped_note(skipped) -> str:
    """``"skipped N file(s) that could not be read: ..."`` (see ``describe_skipped``), or
    ``""`` when nothing was skipped: what the commands print on standard error."""
    if not skipped:
        return ""
    return (f"skipped {len(skipped)} file{'s' if len(skipped) > 1 else ''} that could not be "
            f"read: {describe_skipped(skipped)}")


class _Text(str):
    """A description, printed in a message as it is (not quoted)."""

    def __repr__(self):
        return str(self)


def model_size(model, images: list) -> tuple[int, int]:
    """The (height, width) images are resized to: the model's own input size, or, when it
    is open, the images' (which must then all be one size)."""
    own = tuple(model.input_shape[1:3])
    if None not in own:
        return own
    sizes = {tuple(image.shape[1:3]) for image in images}
    if len(sizes) != 1:
        raise expected("`images` of one size for a model of open input size "
                       f"{model.input_shape}", images=_Text(f"sizes {sorted(sizes)}"))
    return sizes.pop()


def model_inputs(model, images, preprocessing=None, argument: str = "images") -> np.ndarray:
    """``images`` (see the module) as ``model`` takes them: float32 ``(N, H, W, 3)`` at its
    input size (bilinear, rounded to whole pixels as the recipes' pipeline does) and
    preprocessed by ``preprocessing`` (default: what the model records,
    ``model_preprocessing``)."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise expected(f"`{argument}` to hold at least one image", **{argument: images})
        batch = [check_pixels(image, argument) for image in images]
    else:
        batch = [check_pixels(images, argument)]
    preprocess = as_preprocessing(model_preprocessing(model) if preprocessing is None
                                  else preprocessing)
    size = model_size(model, batch)
    resized = [np.asarray(resize_uint8(b, size)) if b.shape[1:3] != size else b for b in batch]
    return np.asarray(preprocess(np.concatenate(resized).astype("float32")), "float32")
