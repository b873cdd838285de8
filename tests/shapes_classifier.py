"""A classifier of the built-in shapes, trained once per test process (about 35 s on 2 CPU
cores), for the Grad-CAM and embedding tests: VGG11-BN from random weights at 32x32,
nested inside the model as ``keras_vgg.finetune`` builds it (image -> base -> head).

The images are the built-in dataset's (``keras_vgg.finetune.builtin.render``, drawn at
32x32 here so no resize blurs them): 150 per class plus their mirror images for training,
two epochs; 20 held-out images per class from another seed (93% of them right when written).
"""

import functools

import keras
import numpy as np

from keras_vgg.finetune.builtin import SHAPES, render
from keras_vgg.finetune.recipe import Recipe
from keras_vgg.finetune.model import build_finetune_model
from keras_vgg.pixels import model_inputs
from keras_vgg.precision import precision_scope

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


@functools.lru_cache(maxsize=None)
def trained_shapes_classifier():
    """``(model, held-out images, their labels)``; the model records its class names and
    preprocessing, like a fine-tuned run's best.keras."""
    keras.utils.set_random_seed(0)
    with precision_scope("auto"):  # bfloat16 where the CPU is fast at it
        recipe = Recipe().but({"model.name": "vgg11_bn", "model.image_size": SIZE,
                               "model.head_dropout": 0.0})
        model = build_finetune_model(recipe, len(SHAPES), class_names=list(SHAPES))
    model.preprocessing = "torch"
    images, labels = draw(150, seed=0)
    images, labels = np.concatenate([images, images[:, :, ::-1]]), np.concatenate([labels] * 2)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(model_inputs(model, images), labels, batch_size=32, epochs=2, verbose=0)
    held_out, held_out_labels = draw(20, seed=1)
    return model, held_out, held_out_labels
