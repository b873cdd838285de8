"""Training augmentations drawn statelessly: each batch's flips, rotations, zooms and
contrast come from a seed of its own, (recipe seed, epoch, batch), so the same recipe gives
the same augmented batches in any process, and a resumed run sees those of an uninterrupted
one.

They do what Keras's ``RandomFlip("horizontal")``, ``RandomRotation(f)``, ``RandomZoom(f)``
and ``RandomContrast(f)`` do (angles in [-f, f] of a turn, zoom 1 +/- f, contrast factor
1 +/- f, reflected borders, bilinear resampling), with TensorFlow's stateless random ops in
place of the layers' seed generators, whose state advances in whatever order a parallel
``tf.data`` map calls them. They run inside ``tf.data``, so they feed every Keras backend.

Example:
    >>> import numpy as np
    >>> from keras_vgg.finetune.augment import augmentation
    >>> augment = augmentation(["flip", "rotation"], factor=0.1)
    >>> images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    >>> a, b = augment(images, [3, 0]), augment(images, [3, 0])
    >>> bool(np.array_equal(a, b)), tuple(a.shape)
    (True, (2, 8, 8, 3))
"""

from __future__ import annotations

import math

import tensorflow as tf

AUGMENTATIONS = ("flip", "rotation", "zoom", "contrast")


def _uniform(seed, n, low, high, op):
    """``n`` draws in [low, high) from the batch's seed, a stream of its own per ``op``."""
    seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), op)
    return tf.random.stateless_uniform([n], seed=seed, minval=low, maxval=high)


def _flip(images, seed):
    flip = _uniform(seed, tf.shape(images)[0], 0.0, 1.0, 1) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def _rotate_zoom(images, seed, turn, zoom):
    """One resampling: angle in [-turn, turn] of a full turn, scale 1 +/- zoom about the
    centre (scale > 1 zooms out), reflected borders."""
    n = tf.shape(images)[0]
    angle = _uniform(seed, n, -turn * 2 * math.pi, turn * 2 * math.pi, 2) if turn else tf.zeros([n])
    scale = _uniform(seed, n, 1.0 - zoom, 1.0 + zoom, 3) if zoom else tf.ones([n])
    height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a0, a1 = scale * tf.cos(angle), -scale * tf.sin(angle)
    b0, b1 = scale * tf.sin(angle), scale * tf.cos(angle)
    transforms = tf.stack([a0, a1, cx - a0 * cx - a1 * cy, b0, b1, cy - b0 * cx - b1 * cy,
                           tf.zeros([n]), tf.zeros([n])], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")


def _contrast(images, seed, factor):
    scale = _uniform(seed, tf.shape(images)[0], 1.0 - factor, 1.0 + factor, 4)
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return tf.clip_by_value((images - mean) * scale[:, None, None, None] + mean, 0.0, 255.0)


def augmentation(names, factor: float):
    """``augment(images, seed)`` for a float32 batch (N, H, W, 3) in [0, 255] and a seed of
    two integers, applying ``names`` (of AUGMENTATIONS) in their order; None for none."""
    names = list(names)
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"Expected augmentations from {list(AUGMENTATIONS)}. Received: "
                         f"{unknown}")
    if not names:
        return None

    def augment(images, seed):
        images = tf.cast(images, tf.float32)
        if "flip" in names:
            images = _flip(images, seed)
        if "rotation" in names or "zoom" in names:
            images = _rotate_zoom(images, seed, factor if "rotation" in names else 0.0,
                                  factor if "zoom" in names else 0.0)
        if "contrast" in names:
            images = _contrast(images, seed, factor)
        return images

    return augment
