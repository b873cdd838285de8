"""``predict``: the top classes of images, from a Keras model or any saved form of one
(``.keras``, a run folder, a SavedModel, an export bundle, a ``.tflite``).

Example:
    >>> import numpy as np
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.export.predict import predict
    >>> model = VGG11(input_shape=(32, 32, 3), classes=3, adaptive_pool=1)
    >>> model.preprocessing, model.class_names = "torch", ["cat", "dog", "fox"]
    >>> images = np.zeros((2, 50, 40, 3), dtype=np.uint8)  # any size: resized to 32x32
    >>> [(p.image, len(p.classes), p.classes[0] in model.class_names)
    ...  for p in predict(model, images, top_k=2)]
    [('0', 2, True), ('1', 2, True)]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vgg._helpers import expected, recorded
from keras_vgg.export.runners import KerasRunner, load_predictor
from keras_vgg.export.serving import serving_model
from keras_vgg.preprocessing import model_preprocessing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclass
class Prediction:
    """One image's top classes, best first: ``image`` is its path (or its index in an
    array), ``classes`` the names (indices as text when the model names none)."""

    image: str
    classes: list
    scores: list


def image_paths(arguments) -> list[str]:
    """The files named, with a folder standing for the images in it (sorted, recursively)."""
    paths = []
    for argument in arguments:
        folder = Path(argument)
        if not folder.is_dir():
            paths.append(str(argument))
            continue
        found = sorted(str(p) for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ValueError(f"Expected image files ({', '.join(IMAGE_SUFFIXES)}) in the folder "
                             f"{argument}. Received: a folder without any.")
        paths += found
    return paths


def read_image(path) -> np.ndarray:
    """A JPEG/PNG/BMP/GIF file as uint8 RGB ``(H, W, 3)`` (a GIF's first frame)."""
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), channels=3,
                                   expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        reason = str(error).split("}}")[-1].split("[Op:")[0].strip()
        raise ValueError(f"Expected an image file. Could not read {path}: {reason}") from error
    return image.numpy()


def _runner(model, precision):
    """``(run, class names)`` for a Keras model or a path (see ``load_predictor``)."""
    if isinstance(model, keras.Model):
        serving = serving_model(model, model_preprocessing(model), precision=precision)
        return KerasRunner(serving), recorded(model, "class_names")
    return load_predictor(model, precision)


def predict(model, images, top_k=5, precision="auto") -> list[Prediction]:
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
        One :class:`Prediction` per image, in order (a folder's files sorted).
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise expected("`top_k` to be an int >= 1", top_k=top_k)
    run, names = _runner(model, precision)
    if isinstance(images, (str, Path)) or (isinstance(images, (list, tuple))
                                           and all(isinstance(i, (str, Path)) for i in images)):
        sources = image_paths([images] if isinstance(images, (str, Path)) else images)
        pixels = (read_image(path) for path in sources)
    else:
        pixels = list(images)
        sources = [str(i) for i in range(len(pixels))]
    probabilities = [run(np.asarray(image)[None])[0] for image in pixels]
    if names and probabilities and len(names) != len(probabilities[0]):
        warnings.warn(f"The class names ({len(names)}) do not match the model's "
                      f"{len(probabilities[0])} outputs; giving class indices instead.",
                      stacklevel=2)
        names = None
    label = (lambda i: names[i]) if names else str
    results = []
    for source, p in zip(sources, probabilities):
        top = np.argsort(-p)[:top_k]
        results.append(Prediction(source, [label(i) for i in top], [float(p[i]) for i in top]))
    return results
