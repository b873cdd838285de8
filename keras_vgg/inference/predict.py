"""``predict``: the top classes of images, from a Keras model or any saved form of one
(``.keras``, a run folder, a SavedModel, an export bundle, a ``.tflite``).

Example:
    >>> import numpy as np
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.inference.predict import predict
    >>> model = VGG11(input_shape=(32, 32, 3), classes=3, adaptive_pool=1)
    >>> model.preprocessing, model.class_names = "torch", ["cat", "dog", "fox"]
    >>> images = np.zeros((2, 50, 40, 3), dtype=np.uint8)  # any size: resized to 32x32
    >>> [(p.image, len(p.classes), p.classes[0] in model.class_names)
    ...  for p in predict(model, images, top_k=2)]
    [('0', 2, True), ('1', 2, True)]
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vgg._helpers import expected, recorded
from keras_vgg.export.runners import KerasRunner, load_predictor
from keras_vgg.export.serving import serving_model
from keras_vgg.pixels import Results, Skipped, describe_skipped
from keras_vgg.preprocessing import model_preprocessing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FORMATS = "JPEG, PNG, BMP or GIF"


@dataclass
class Prediction:
    """One image's top classes, best first: ``image`` is its path (or its index in an
    array), ``classes`` the names (indices as text when the model names none)."""

    image: str
    classes: list
    scores: list


@dataclass(frozen=True)
class ImageFile:
    """A file to read: its ``path``, and its ``name`` relative to the folder it was found
    in (``cat/img_00.jpg`` under ``photos/``), or its file name when it was named itself."""

    path: str
    name: str


def image_files(arguments) -> list[ImageFile]:
    """The files named, with a folder standing for the images in it (sorted, recursively;
    files of other suffixes are not listed)."""
    files = []
    for argument in arguments:
        folder = Path(argument)
        if not folder.is_dir():
            files.append(ImageFile(str(argument), folder.name))
            continue
        found = sorted(p for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ValueError(f"Expected image files ({', '.join(IMAGE_SUFFIXES)}) in the folder "
                             f"{argument}. Received: a folder without any.")
        files += [ImageFile(str(p), p.relative_to(folder).as_posix()) for p in found]
    return files


def image_paths(arguments) -> list[str]:
    """The paths of ``image_files(arguments)``."""
    return [file.path for file in image_files(arguments)]


class UnreadableImage(ValueError):
    """A file that is missing, empty, not an image, or corrupt: ``path`` and ``reason``."""

    def __init__(self, path, reason):
        super().__init__(f"Expected an image file. Could not read {path}: {reason}")
        self.path, self.reason = str(path), reason


def read_image(path) -> np.ndarray:
    """A JPEG/PNG/BMP/GIF file as uint8 RGB ``(H, W, 3)`` (a GIF's first frame; grey,
    palette, RGBA and CMYK images converted to RGB); an :class:`UnreadableImage` (a
    ValueError) saying why not."""
    if not os.path.isfile(path):
        raise UnreadableImage(path, "no such file")
    if os.path.getsize(path) == 0:
        raise UnreadableImage(path, "empty file")
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), channels=3,
                                   expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        reason = str(error).split("}}")[-1].split("[Op:")[0].strip()
        if reason.startswith("Unknown image file format"):
            raise UnreadableImage(path, f"not a {FORMATS} image") from None
        if reason.startswith("jpeg::Uncompress failed"):
            raise UnreadableImage(path, "corrupt or truncated JPEG") from None
        raise UnreadableImage(path, f"corrupt or truncated: {reason.rstrip('.')}") from None
    return image.numpy()


class ImageReader:
    """Iterating reads the files one by one, giving ``(file, pixels)`` for each that can be
    read; the others are kept, in order, in ``skipped`` (:class:`Skipped` records).
    ``check()`` then raises :class:`NothingReadable` when none could be read."""

    def __init__(self, files):
        self.files = list(files)
        self.skipped = []
        self.read = 0

    def __iter__(self):
        for file in self.files:
            try:
                pixels = read_image(file.path)
            except UnreadableImage as error:
                self.skipped.append(Skipped(error.path, error.reason))
                continue
            self.read += 1
            yield file, pixels

    def check(self):
        """A :class:`NothingReadable` when files were listed and none could be read."""
        if self.skipped and not self.read:
            raise NothingReadable(self.skipped)


class NothingReadable(ValueError):
    """No file could be read: one line naming them (the first few) and why; ``skipped``
    holds them all (:class:`Skipped` records)."""

    def __init__(self, skipped):
        self.skipped = list(skipped)
        if len(self.skipped) == 1:
            super().__init__(f"Expected an image file. Could not read {self.skipped[0].path}: "
                             f"{self.skipped[0].reason}")
        else:
            super().__init__(f"Expected image files ({FORMATS}). Could not read any of the "
                             f"{len(self.skipped)} files: {describe_skipped(self.skipped)}")


def _runner(model, precision):
    """``(run, class names)`` for a Keras model or a path (see ``load_predictor``)."""
    if isinstance(model, keras.Model):
        serving = serving_model(model, model_preprocessing(model), precision=precision)
        return KerasRunner(serving), recorded(model, "class_names")
    return load_predictor(model, precision)


def predict(model, images, top_k=5, precision="auto") -> Results:
    """The ``top_k`` classes of each image, by ``model``'s own preprocessing and names.

    Args:
        model: a Keras classifier that records its preprocessing (a keras_vgg model with
            weights, a fine-tuned one), or the path of a ``.keras`` file, a run folder, a
            SavedModel or export folder, or a ``.tflite`` file.
        images: image files and folders of them, or uint8 RGB images ``(N, H, W, 3)`` (or a
            list of ``(H, W, 3)`` arrays of any sizes); each is resized to the model's input.
        top_k: how many classes per image.
        precision: what a Keras model computes in: ``"auto"`` (this machine's fastest,
            bfloat16 on CPUs with AMX; see ``keras_vgg.precision``), ``"float32"``,
            ``"bfloat16"``, ``"float16"``. An exported file computes in its own (``"auto"``).

    Returns:
        A list (:class:`keras_vgg.pixels.Results`) of one :class:`Prediction` per image read,
        in order (a folder's files sorted), with ``.skipped``: the files that could not be
        read (missing, empty, not an image, corrupt), each a :class:`Skipped` with its
        reason. When none could be read, a ValueError says why.
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise expected("`top_k` to be an int >= 1", top_k=top_k)
    run, names = _runner(model, precision)
    reader = None
    if isinstance(images, (str, Path)) or (isinstance(images, (list, tuple))
                                           and all(isinstance(i, (str, Path)) for i in images)):
        reader = ImageReader(image_files([images] if isinstance(images, (str, Path))
                                          else images))
        read = ((file.path, pixels) for file, pixels in reader)
    else:
        read = ((str(i), image) for i, image in enumerate(list(images)))
    sources, probabilities = [], []
    for source, image in read:
        sources.append(source)
        probabilities.append(run(np.asarray(image)[None])[0])
    if reader is not None:
        reader.check()
    if names and probabilities and len(names) != len(probabilities[0]):
        warnings.warn(f"The class names ({len(names)}) do not match the model's "
                      f"{len(probabilities[0])} outputs; giving class indices instead.",
                      stacklevel=2)
        names = None
    label = (lambda i: names[i]) if names else str
    results = Results(skipped=reader.skipped if reader is not None else ())
    for source, p in zip(sources, probabilities):
        top = np.argsort(-p)[:top_k]
        results.append(Prediction(source, [label(i) for i in top], [float(p[i]) for i in top]))
    return results
