"""Image embeddings for retrieval: a VGG's pooled features, L2-normalised, and the
nearest neighbours of a query by cosine similarity.

An embedding is the global average over height and width of a layer's output (by default
the VGG's last block output, ``block5_pool``), divided by its L2 norm, so the dot product
of two embeddings is their cosine similarity. ``Embeddings`` keeps them with their names
in one ``.npz`` file.

Example:
    >>> import numpy as np
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.embeddings import embed, nearest
    >>> model = VGG11(include_top=False, input_shape=(32, 32, 3))
    >>> images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    >>> vectors = embed(model, images, batch_size=2, preprocessing="caffe", verbose=0)
    >>> vectors.shape, bool(np.allclose(np.linalg.norm(vectors, axis=1), 1))
    ((5, 512), True)
    >>> indices, scores = nearest(vectors, vectors[3], k=2)
    >>> int(indices[0, 0]), round(float(scores[0, 0]), 4)  # an image is its own nearest
    (3, 1.0)
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_vgg._helpers import expected, find_nested
from keras_vgg.batch_norm import inference_model
from keras_vgg.features import block_outputs, feature_extractor
from keras_vgg.pixels import model_inputs


def check_layer(model, layer) -> str:
    """``layer``, or by default the VGG's last block output; a ValueError listing the
    valid names when ``model`` holds no such layer in its VGG."""
    base = find_nested(model, block_outputs)
    if base is None:
        raise expected("`model` to be a keras_vgg model or a model holding one (layers named "
                       "block1_..., block2_...)", model=getattr(model, "name", model))
    if layer is None:
        return block_outputs(base)[-1]
    valid = [item.name for item in base.layers[1:]]
    if layer not in valid:
        raise expected(f"`layer` to name a layer of {base.name}, one of {valid}", layer=layer)
    return layer


def normalize(vectors) -> np.ndarray:
    """Rows divided by their L2 norm (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, "float32")
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Embedder:
    """``model``'s embeddings of one batch at a time: calling it with images (as
    ``keras_vgg.pixels`` takes them) gives float32 ``(N, C)`` rows of L2 norm 1. The
    feature extractor is built once, in ``precision`` (see ``embed`` for the arguments).

    >>> from keras_vgg import VGG11
    >>> embedder = Embedder(VGG11(include_top=False, input_shape=(32, 32, 3)),
    ...                     preprocessing="caffe")
    >>> embedder.layer, embedder(np.zeros((2, 40, 40, 3), np.uint8)).shape
    ('block5_pool', (2, 512))
    """

    def __init__(self, model, layer=None, precision="auto", preprocessing=None):
        self.model, self.layer, self.preprocessing = model, check_layer(model, layer), \
            preprocessing
        self.extractor = inference_model(feature_extractor(model, layers=[self.layer]),
                                         precision)  # BatchNorm folded, then cast

    def __call__(self, images) -> np.ndarray:
        x = model_inputs(self.model, images, self.preprocessing)
        out = keras.ops.convert_to_numpy(self.extractor(x, training=False)).astype("float32")
        return normalize(out.mean(axis=(1, 2)) if out.ndim == 4 else out.reshape(len(out), -1))


def embed(model, images, layer=None, batch_size=32, precision="auto", preprocessing=None,
          verbose=1) -> np.ndarray:
    """The embeddings ``(N, C)`` of ``images``, in batches with a progress bar.

    Args:
        model: a keras_vgg model (headless, with its top, or fine-tuned).
        images: RGB pixels in [0, 255] (see ``keras_vgg.pixels``): an array
            ``(N, H, W, 3)``, one image ``(H, W, 3)``, or any sequence of ``(H, W, 3)``
            images; each is resized to the model's input size. (Image files:
            ``keras_vgg.inference.embed.embed_files``, which skips and reports unreadable ones.)
        layer: the layer whose output is pooled; default the VGG's last block output.
        batch_size: images per step.
        precision: what the VGG computes in: ``"auto"`` (this machine's fastest, bfloat16
            where the hardware has it; see ``keras_vgg.precision``), ``"float32"``, ...;
            the weights too are held in it (a copy for predicting, as ``predict`` makes).
        preprocessing: a mode such as ``"caffe"``; default the model's own.
        verbose: 1 shows a progress bar (``keras.utils.Progbar``) when standard output is a
            terminal (none in a log or a pipe), 0 none.

    Returns:
        float32 ``(N, C)``, each row of L2 norm 1.
    """
    layer = check_layer(model, layer)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise expected("`batch_size` to be an int >= 1", batch_size=batch_size)
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]  # one image
    total = len(images)
    if total == 0:
        raise expected("`images` to hold at least one image", images=images)
    embedder = Embedder(model, layer, precision, preprocessing)
    bar = progress_bar(total, verbose)
    rows = []
    for start in range(0, total, batch_size):
        batch = [images[i] for i in range(start, min(start + batch_size, total))]
        rows.append(embedder(batch))
        bar.add(len(batch))
    return np.concatenate(rows)


def progress_bar(total, verbose) -> keras.utils.Progbar:
    """A Keras progress bar over ``total`` images, shown only when ``verbose`` and standard
    output is a terminal (or a notebook): Keras's bar rewrites its line with ``\\r`` and
    backspaces, which a log or a pipe keeps as they are."""
    terminal = (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()) or \
        "ipykernel" in sys.modules
    shown = bool(verbose) and terminal
    return keras.utils.Progbar(total, verbose=1 if shown else 0, unit_name="image")


def nearest(vectors, queries, k=5) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``vectors`` most cosine-similar to each query, best first.

    Args:
        vectors: embeddings ``(N, C)`` (normalised here, whether or not they are).
        queries: one embedding ``(C,)`` or several ``(Q, C)``.
        k: neighbours per query (at most N).

    Returns:
        ``(indices, scores)``, each ``(Q, k)``: row numbers in ``vectors`` and cosine
        similarities.
    """
    vectors = normalize(vectors)
    queries = normalize(np.atleast_2d(queries))
    if vectors.ndim != 2 or queries.ndim != 2 or queries.shape[1] != vectors.shape[1]:
        raise expected(f"`queries` of shape (C,) or (Q, C) with C={vectors.shape[-1]}, as "
                       "`vectors` (N, C)", queries=f"shape {queries.shape}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(vectors):
        raise expected(f"`k` to be an int in [1, {len(vectors)}]", k=k)
    scores = queries @ vectors.T
    indices = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return indices, np.take_along_axis(scores, indices, axis=1)


@dataclass
class Embeddings:
    """Embeddings with the names of their images, kept in one ``.npz`` file (arrays
    ``vectors``, ``names``, ``layer``, ``model``: where they came from, for later queries).
    ``skipped``: the files ``embed_files`` could not read (``keras_vgg.pixels.Skipped``
    records, not kept in the file).

    >>> import tempfile
    >>> saved = Embeddings(np.eye(2, dtype="float32"), ["a.png", "b.png"], "block5_pool",
    ...                    "vgg11").save(tempfile.mkdtemp() + "/e.npz")
    >>> loaded = Embeddings.load(saved)
    >>> loaded.names, loaded.layer, loaded.vectors.shape
    (['a.png', 'b.png'], 'block5_pool', (2, 2))
    """

    vectors: np.ndarray
    names: list = field(default_factory=list)
    layer: str = ""
    model: str = ""
    skipped: list = field(default_factory=list)

    def save(self, path) -> Path:
        """Writes the file whole or not at all (a temporary file renamed into place), with
        the usual permissions (0o666 less the umask, as ``open`` makes files)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = _new_file(path.parent, f".{path.name}.")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, vectors=np.asarray(self.vectors, "float32"),
                         names=np.asarray(self.names, dtype=str), layer=np.asarray(self.layer),
                         model=np.asarray(self.model))
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return path

    @classmethod
    def load(cls, path) -> "Embeddings":
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["vectors"], [str(n) for n in data["names"]],
                           str(data["layer"]), str(data["model"]))
        except (OSError, KeyError, ValueError) as error:
            raise expected("an embeddings file written by keras-vgg embed (.npz with vectors, "
                           "names, layer, model)", path=str(path)) from error


def _new_file(folder: Path, prefix: str):
    """``(descriptor, path)`` of a new empty file in ``folder``, opened for writing, with the
    permissions ``open`` gives (``tempfile.mkstemp`` makes 0o600: unreadable to others)."""
    while True:
        path = folder / f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(path)
        except FileExistsError:
            continue
