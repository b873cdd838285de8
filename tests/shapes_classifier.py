"""A classifier of the built-in shapes for the Grad-CAM and embedding tests: the README's main
job's best.keras (conftest's session-wide ``builtin_run``: VGG11-BN from random weights at
32x32 on the built-in dataset, nested as ``keras_vgg.finetune`` builds it: image -> base ->
head), so no test trains a classifier of its own (one took 35-47 s of CI per process).

The held-out images are drawn at 32x32 here (``keras_vgg.finetune.builtin.render``, so no
resize blurs them and their shapes' boxes can be re-derived from the pixels), 20 per class
from a seed the dataset does not use: 89% of them right when measured (2026-12-07).
"""

import functools

import numpy as np

import keras_vgg
from keras_vgg.finetune.builtin import SHAPES, render

SIZE = 32


def draw(per_class, seed):
    """``(images uint8 (N, 32, 32, 3), labels)``: ``per_class`` of each shape, interleaved."""
    rng = np.random.default_rng(seed)
    pairs = [(render(shape, rng, size=SIZE), label)
             for _ in range(per_class) for label, shape in enumerate(SHAPES)]
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def shape_boxes(images, threshold=48):
    """Where each shape was drawn, re-derived from the pixels: the bounding box of the pixels
    that differ from the background by more than ``threshold`` in some channel. The
    background is the median of the four 2x2 corners (a shape covers at most one corner;
    shape and background differ by 96-160 per channel, the noise is +-12)."""
    x = images.astype(np.int16)
    corners = np.concatenate([x[:, :2, :2], x[:, :2, -2:], x[:, -2:, :2], x[:, -2:, -2:]],
                             axis=1).reshape(len(x), -1, 3)
    background = np.median(corners, axis=1)[:, None, None]
    masks = np.abs(x - background).max(axis=-1) > threshold
    boxes = np.zeros_like(masks)
    for box, mask in zip(boxes, masks):
        rows, cols = np.nonzero(mask)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    return boxes


def trained_shapes_classifier(builtin_run):
    """``(model, held-out images, their labels)`` from the fixture ``builtin_run``; the model
    records its class names and preprocessing, as every run's best.keras does."""
    run, _ = builtin_run
    held_out, held_out_labels = draw(20, seed=1)
    return _loaded(str(run / "best.keras")), held_out, held_out_labels


@functools.lru_cache(maxsize=None)
def _loaded(path):
    return keras_vgg.load_model(path)
