"""Class names offline: the ImageNet class index ships with the package.

``keras_vgg/data/imagenet_class_index.json`` is Keras's ``imagenet_class_index.json`` format
(``{"0": ["n01440764", "tench"], ...}``), made by ``tools/make_imagenet_class_index.py``.

Example:
    >>> import numpy as np
    >>> from keras_vgg.labels import decode_predictions
    >>> scores = np.zeros((1, 1000)); scores[0, 1] = 0.9
    >>> decode_predictions(scores, top=1)
    [[('n01443537', 'goldfish', 0.9)]]
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np

from keras_vgg._helpers import recorded

CLASS_INDEX_FILE = os.path.join(os.path.dirname(__file__), "data", "imagenet_class_index.json")


@functools.cache
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 ILSVRC-2012 classes as (WordNet id, name), in the order of every VGG file."""
    with open(CLASS_INDEX_FILE, encoding="utf-8") as f:
        index = json.load(f)
    return tuple(tuple(index[str(i)]) for i in range(len(index)))


def decode_predictions(preds, top: int = 5, *, class_names=None, model=None):
    """The ``top`` classes of each row of ``preds`` as ``(class_id, name, score)``.

    Names come from ``class_names``, else from the model's weights (``model.class_names``,
    e.g. a MatConvNet file's own), else from the shipped ImageNet index. With 1000 classes
    the id is the WordNet id; otherwise it is the class's index as a string.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2:
        raise ValueError(f"Expected `preds` of shape (samples, classes). Received: {preds.shape}")
    if class_names is None and model is not None:
        class_names = recorded(model, "class_names")
    if class_names is None and preds.shape[1] != 1000:
        raise ValueError(
            "Expected `class_names` (or a model that records them) for predictions that are not "
            f"the 1000 ImageNet classes. Received: preds with {preds.shape[1]} classes"
        )
    if class_names is not None and len(class_names) != preds.shape[1]:
        raise ValueError(
            f"Expected `class_names` with one name per column of `preds` ({preds.shape[1]}). "
            f"Received: {len(class_names)} names"
        )
    imagenet = imagenet_classes()
    if preds.shape[1] == 1000:
        ids = [wnid for wnid, _ in imagenet]
        names = list(class_names) if class_names is not None else [name for _, name in imagenet]
    else:
        ids, names = [str(i) for i in range(preds.shape[1])], list(class_names)
    if not isinstance(top, int) or not 1 <= top <= preds.shape[1]:
        raise ValueError(f"Expected `top` between 1 and {preds.shape[1]}. Received: top={top!r}")
    return [
        [(ids[i], names[i], float(row[i])) for i in np.argsort(-row, kind="stable")[:top]]
        for row in preds
    ]
