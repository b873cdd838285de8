"""Embeddings of image files: a folder in, an ``.npz`` out (``embed_files``), and the
nearest neighbours of image files in such a file (``nearest_files``).

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.inference.embed import embed_files, nearest_files
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
import numpy as np

from keras_vgg._helpers import OutputExists, expected
from keras_vgg.configs import get_config
from keras_vgg.embeddings import Embedder, Embeddings, check_layer, nearest, progress_bar
from keras_vgg.inference.predict import ImageReader, NothingReadable, image_files, image_paths
from keras_vgg.models import build_vgg
from keras_vgg.pixels import Results
from keras_vgg.saving import load_model

OFFLINE_HINT = "or pass its path as `weights`"  # weights.fetch's advice, for build_vgg


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
    try:
        return build_vgg(str(model), include_top=False, weights="imagenet",
                         input_shape=(224, 224, 3)), str(model)
    except ValueError as error:  # offline: name what embed takes, not finetune's --weights
        message = str(error)
        if OFFLINE_HINT not in message:
            raise
        raise ValueError(message[:message.index(OFFLINE_HINT)] + "or give `model` (MODEL) as "
                         "a run folder or a .keras file holding the weights. Received: "
                         f"model={str(model)!r}") from None


def embed_files(model, images, output=None, layer=None, batch_size=32, precision="auto",
                preprocessing=None, overwrite=False, verbose=1) -> Embeddings:
    """The embeddings of image files (see ``keras_vgg.embeddings.embed``), saved to ``output``.

    Args:
        model: a keras_vgg model, the path of a ``.keras`` file or a run folder, or a variant
            name (``"vgg16"``: headless with ImageNet weights, at 224x224).
        images: image files and folders of them (a folder's files sorted, recursively).
        output: the ``.npz`` to write (whole or not at all), or None to write nothing.
        layer, batch_size, precision, preprocessing: as ``embed``.
        overwrite: replace an existing ``output``.
        verbose: 1 shows a progress bar when standard output is a terminal, 0 none.

    Returns:
        The :class:`Embeddings` of the files that could be read, names being their paths as
        given, ``model`` the variant name or the model file's absolute path ("" for a model
        passed in memory), and ``skipped`` the files that could not be read (missing, empty,
        not an image, corrupt: ``keras_vgg.pixels.Skipped`` records with their reasons).
        When none could be read, a ValueError says why and nothing is written.
    """
    if output is not None and Path(output).exists() and not overwrite:
        raise OutputExists(f"{output} exists. Expected a new file, or overwrite=True "
                           "(--overwrite) to replace it.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise expected("`batch_size` to be an int >= 1", batch_size=batch_size)
    model, source = _model(model)
    embedder = Embedder(model, check_layer(model, layer), precision, preprocessing)
    reader = ImageReader(image_files([images] if isinstance(images, (str, Path)) else images))
    bar = progress_bar(len(reader.files), verbose)
    names, rows, batch = [], [], []
    for file, pixels in reader:
        names.append(file.path)
        batch.append(pixels)
        if len(batch) == batch_size:
            rows.append(embedder(batch))
            batch = []
        bar.update(len(names) + len(reader.skipped))
    if batch:
        rows.append(embedder(batch))
    bar.update(len(reader.files), finalize=True)
    reader.check()
    embeddings = Embeddings(np.concatenate(rows), names, embedder.layer, source,
                            list(reader.skipped))
    if output is not None:
        embeddings.save(output)
    return embeddings


@dataclass
class Neighbours:
    """A query image's nearest files, best first, with their cosine similarities."""

    image: str
    names: list
    scores: list


def nearest_files(embeddings, images, k=5, model=None, precision="auto") -> Results:
    """The ``k`` nearest files in ``embeddings`` (a file written by ``embed_files``) of each
    query image. A query that is in the file (the same path, relative or absolute) is looked
    up, and is not its own neighbour; others are embedded by ``model`` (as ``embed_files``
    takes it), by default the model the file records (a path or a variant name), at the
    file's layer. Returns a list of :class:`Neighbours` (``keras_vgg.pixels.Results``) with
    ``.skipped``: the queries that could not be read (a ValueError when none could)."""
    saved = Embeddings.load(embeddings)
    queries = image_paths([images] if isinstance(images, (str, Path)) else images)
    index = {os.path.abspath(name): i for i, name in enumerate(saved.names)}
    found = [index.get(os.path.abspath(query)) for query in queries]
    most = len(saved.names) - (0 if None in found and len(set(found)) == 1 else 1)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= most:
        raise expected(f"`k` to be an int in [1, {most}]", k=k)
    vectors, skipped = _embed_queries(saved, [q for q, r in zip(queries, found) if r is None],
                                      model, precision, embeddings)
    results = Results(skipped=skipped)
    for query, row in zip(queries, found):
        if row is None and query not in vectors:
            continue  # unreadable: in .skipped
        vector = saved.vectors[row] if row is not None else vectors[query]
        rows, scores = nearest(saved.vectors, vector, min(k + 1, len(saved.names)))
        kept = [(saved.names[r], float(s)) for r, s in zip(rows[0], scores[0]) if r != row][:k]
        results.append(Neighbours(query, [n for n, _ in kept], [s for _, s in kept]))
    if not results:
        raise NothingReadable(skipped)
    return results


def _embed_queries(saved, queries, model, precision, embeddings):
    """``({query: its vector}, [Skipped])`` for the queries not in the file ``embeddings``."""
    if not queries:
        return {}, []
    if model is None and not saved.model:
        raise expected(f"`model` to embed the queries not in {embeddings} (it was written "
                       "from a model in memory, so it records none)", model=model)
    try:
        new = embed_files(saved.model if model is None else model, queries,
                          layer=saved.layer, precision=precision, verbose=0)
    except NothingReadable as error:
        return {}, error.skipped
    return dict(zip(new.names, new.vectors)), new.skipped
