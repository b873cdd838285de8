"""The built-in dataset: rendered shapes in class folders, made offline.

It exists so ``keras-vgg finetune`` runs end to end with no download. The
images are drawn with Pillow from a fixed seed, so every machine gets the same
files, and written as PNGs in class sub-folders, so they go through the same
folder loader as a user's own data.

Example:

>>> import tempfile
>>> from keras_vgg.finetune.builtin import make_shapes
>>> root = make_shapes(tempfile.mkdtemp(), images_per_class=2)
>>> sorted(p.name for p in root.iterdir())
['circle', 'cross', 'square', 'stripes', 'triangle']
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from keras_vgg._extras import require

SHAPES = ("circle", "cross", "square", "stripes", "triangle")
IMAGE_SIZE = 64
VERSION = 1


def default_root():
    """Where the built-in dataset lives: the Keras cache (``KERAS_HOME``)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras"
    )
    return Path(keras_home) / "datasets" / f"keras_vgg_shapes_v{VERSION}"


def _draw(draw, shape, box, colour, rng):
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "cross":
        w = max(2, (x1 - x0) // 4)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        draw.rectangle((cx - w // 2, y0, cx + w // 2, y1), fill=colour)
        draw.rectangle((x0, cy - w // 2, x1, cy + w // 2), fill=colour)
    else:  # stripes
        step = int(rng.integers(4, 8))
        for y in range(y0, y1, step):
            draw.rectangle((x0, y, x1, y + step // 2 - 1), fill=colour)


def render(shape, rng, size=IMAGE_SIZE):
    """One RGB image (uint8, size x size x 3) of ``shape`` in random colours."""
    Image = require("PIL.Image", "finetune", package="pillow")
    ImageDraw = require("PIL.ImageDraw", "finetune", package="pillow")

    background = rng.integers(0, 256, 3)
    colour = (background + rng.integers(96, 160, 3)) % 256
    image = Image.new("RGB", (size, size), tuple(int(c) for c in background))
    side = int(rng.integers(size * 3 // 8, size * 3 // 4))
    x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
    _draw(
        ImageDraw.Draw(image),
        shape,
        (x0, y0, x0 + side, y0 + side),
        tuple(int(c) for c in colour),
        rng,
    )
    pixels = np.asarray(image, dtype=np.int16)
    noise = rng.integers(-12, 13, pixels.shape)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def make_shapes(root=None, images_per_class=120, seed=0):
    """Writes the dataset (once) and returns its root folder.

    The folder is built in a temporary sibling and renamed into place, so an
    interrupted run never leaves a half-made dataset behind.
    """
    Image = require("PIL.Image", "finetune", package="pillow")

    root = Path(root) if root is not None else default_root()
    root = root / f"{images_per_class}_per_class_seed{seed}"
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root.parent))
    try:
        rng = np.random.default_rng(seed)
        for shape in SHAPES:
            (tmp / shape).mkdir()
            for i in range(images_per_class):
                Image.fromarray(render(shape, rng)).save(
                    tmp / shape / f"{shape}_{i:04d}.png"
                )
        try:
            tmp.rename(root)
        except OSError:  # another process finished first
            if not root.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
