"""Embeddings of image files: a folder in, an ``.npz`` out (``embed_files``), and the
nearest neighbours of image files in such a file (``nearest_files``).

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.export.embed import embed_files, nearest_files
    >>> model = VGG11(include_top=False, input_shape=(32, 32, 3))
    >>> model.preprocessing = "caffe"
    >>> folder = Path(tempfile.mkdtemp())
    >>> for i, grey in enumerate([0, 10, 250]):
    ...     Image.fromarray(np.full((32, 32, 3), grey, np.uint8)).save(folder / f"{i}.png")
    >>> saved = embed_files(model, [folder], folder / "e.npz", verbose=0)
    >>> [Path(name).name for name in saved.names], saved.vectors.shape
    (['0.png', '1.png', '2.png'], (3, 512))
    >>> [(Path(q.image).name, [Path(n).name for n in q.names]) for q in
    ...  nearest_files(folder / "e.npz", [str(folder / "0.png")], k=1)]
    [('0.png', ['1.png'])]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras

from keras_vgg._helpers import expected
from keras_vgg.configs import get_config
from keras_vgg.embeddings import Embeddings, check_layer, embed, nearest
from keras_vgg.export.predict import image_paths, read_image
from keras_vgg.models import build_vgg
from keras_vgg.saving import load_model


class ImageFiles:
    """A sequence of image files read as they are indexed (uint8 RGB ``(H, W, 3)``)."""

    def __init__(self, paths):
        self.paths = list(paths)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return read_image(self.paths[index])


def _model(model):
    """``(a Keras model, what to record as its source)`` from a model (recorded as "": it
    cannot be found again), the path of a ``.keras`` file or run folder (recorded absolute),
    or a variant name (headless, ImageNet weights, 224x224)."""
    if isinstance(model, keras.Model):
        return model, ""
    if Path(model).exists():
        return load_model(model, compile=False), os.path.abspath(model)
    try:
        get_config(str(model))
    except ValueError:
        raise expected("`model` to be a .keras file, a run folder or a variant name "
                       "(keras-vgg list)", model=str(model)) from None
    return build_vgg(str(model), include_top=False, weights="imagenet",
                     input_shape=(224, 224, 3)), str(model)


def embed_files(model, images, output=None, layer=None, batch_size=32, precision="auto",
                preprocessing=None, overwrite=False, verbose=1) -> Embeddings:
    """The embeddings of image files (see ``keras_vgg.embeddings.embed``), saved to ``output``.

    Args:
        model: a keras_vgg model, the path of a ``.keras`` file or a run folder, or a variant
            name (``"vgg16"``: headless with ImageNet weights, at 224x224).
        images: image files and folders of them (a folder's files sorted, recursively).
        output: the ``.npz`` to write (whole or not at all), or None to write nothing.
        layer, batch_size, precision, preprocessing, verbose: as ``embed``.
        overwrite: replace an existing ``output``.

    Returns:
        The :class:`Embeddings`, names being the files' paths as given, ``model`` the variant
        name or the model file's absolute path ("" for a model passed in memory).
    """
    if output is not None and Path(output).exists() and not overwrite:
        raise FileExistsError(f"{output} exists. Expected a new file, or overwrite=True "
                              "(--overwrite) to replace it.")
    model, source = _model(model)
    layer = check_layer(model, layer)
    paths = image_paths([images] if isinstance(images, (str, Path)) else images)
    vectors = embed(model, ImageFiles(paths), layer, batch_size, precision, preprocessing,
                    verbose)
    embeddings = Embeddings(vectors, paths, layer, source)
    if output is not None:
        embeddings.save(output)
    return embeddings


@dataclass
class Neighbours:
    """A query image's nearest files, best first, with their cosine similarities."""

    image: str
    names: list
    scores: list


def nearest_files(embeddings, images, k=5, model=None, precision="auto") -> list[Neighbours]:
    """The ``k`` nearest files in ``embeddings`` (a file written by ``embed_files``) of each
    query image. A query that is in the file (the same path, relative or absolute) is looked
    up, and is not its own neighbour; others are embedded by ``model`` (as ``embed_files``
    takes it), by default the model the file records (a path or a variant name), at the
    file's layer."""
    saved = Embeddings.load(embeddings)
    queries = image_paths([images] if isinstance(images, (str, Path)) else images)
    index = {os.path.abspath(name): i for i, name in enumerate(saved.names)}
    found = [index.get(os.path.abspath(query)) for query in queries]
    most = len(saved.names) - (0 if None in found and len(set(found)) == 1 else 1)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= most:
        raise expected(f"`k` to be an int in [1, {most}]", k=k)
    missing = [q for q, row in zip(queries, found) if row is None]
    if missing:
        if model is None and not saved.model:
            raise expected(f"`model` to embed the queries not in {embeddings} (it was written "
                           "from a model in memory, so it records none)", model=model)
        new = embed_files(saved.model if model is None else model, missing,
                          layer=saved.layer, precision=precision, verbose=0)
        vectors = iter(new.vectors)
    results = []
    for query, row in zip(queries, found):
        vector = next(vectors) if row is None else saved.vectors[row]
        rows, scores = nearest(saved.vectors, vector, min(k + 1, len(saved.names)))
        kept = [(saved.names[r], float(s)) for r, s in zip(rows[0], scores[0]) if r != row][:k]
        results.append(Neighbours(query, [n for n, _ in kept], [s for _, s in kept]))
    return results
