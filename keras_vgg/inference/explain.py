"""``explain``: Grad-CAM pictures of image files, for a classifier or a saved one (a
``.keras`` file or a run folder): each image beside its heatmap overlay, with the top
classes written under them, as PNGs.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.inference.explain import explain
    >>> model = VGG11(input_shape=(32, 32, 3), classes=2, adaptive_pool=1)
    >>> model.preprocessing, model.class_names = "torch", ["cat", "dog"]
    >>> folder = tempfile.mkdtemp()
    >>> Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(f"{folder}/grey.png")
    >>> [e] = explain(model, [f"{folder}/grey.png"], f"{folder}/out", top_k=2)
    >>> e.output.endswith("out/grey.png"), sorted(e.classes)
    (True, ['cat', 'dog'])
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_vgg._extras import require
from keras_vgg._helpers import OutputExists, expected, new_folder, recorded
from keras_vgg.inference.predict import ImageReader, image_files
from keras_vgg.gradcam import grad_cam, overlay, vgg_base
from keras_vgg.pixels import Results
from keras_vgg.saving import load_model

SIDE = 256  # pixels of each picture in a written PNG
BATCH = 16  # images per Grad-CAM call
FONT_SIZE = 15  # pixels: the captions' text (Pillow's own font)
LINE_HEIGHT = 20  # pixels per caption line


@dataclass
class Explained:
    """One image's picture: ``image`` its file, ``output`` the PNG written, ``classes``
    and ``scores`` its top classes (the first is the one the heatmap explains)."""

    image: str
    output: str
    classes: list
    scores: list


def _picture(pixels, heatmap, lines):
    """The image and its overlay side by side, scaled to ``SIDE``, text lines below."""
    Image = require("PIL.Image", "finetune", package="pillow")
    ImageDraw = require("PIL.ImageDraw", "finetune", package="pillow")

    scale = SIDE / max(pixels.shape[:2])
    size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
    left = Image.fromarray(pixels).resize(size, Image.BILINEAR)
    right = Image.fromarray(overlay(pixels, heatmap)).resize(size, Image.BILINEAR)
    canvas = Image.new("RGB", (2 * size[0] + 8, size[1] + 8 + LINE_HEIGHT * len(lines)),
                       (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (size[0] + 8, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for i, line in enumerate(lines):
        draw.text((4, size[1] + 4 + i * LINE_HEIGHT), line, fill=(0, 0, 0), font=font)
    return canvas


def _font():
    """Pillow's own font at ``FONT_SIZE`` (its default, 10 pixels, runs words together)."""
    ImageFont = require("PIL.ImageFont", "finetune", package="pillow")
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1, or without FreeType
        return ImageFont.load_default()


def _output_names(files) -> list[str]:
    """A PNG name per image: its path relative to the folder given (``cat/img_00.png``),
    or its file name for a file given; ``_2``, ``_3``... where two would be the same."""
    names, seen = [], set()
    for file in files:
        stem = Path(file.name).with_suffix("").as_posix()
        name, count = f"{stem}.png", 1
        while name in seen:
            count += 1
            name = f"{stem}_{count}.png"
        seen.add(name)
        names.append(name)
    return names


def explain(model, images, output, top_k=3, layer=None, preprocessing=None,
            overwrite=False) -> Results:
    """Writes a Grad-CAM picture of each image into the folder ``output``.

    Args:
        model: a keras_vgg classifier, or the path of a ``.keras`` file or a run folder.
        images: image files (JPEG/PNG/BMP/GIF) and folders of them.
        output: the folder to create; it appears whole once every picture is made, or not at
            all. A folder's images keep their sub-folders in it (``photos/cat/a.jpg`` given
            ``photos`` gives ``output/cat/a.png``); a file given goes to its name.
        top_k: classes written under each picture.
        layer: the conv-side layer to explain from (default the last conv block's output).
        preprocessing: a mode such as ``"caffe"``; default the model's own.
        overwrite: replace an existing ``output`` folder.

    Returns:
        A list (``keras_vgg.pixels.Results``) of one :class:`Explained` per image read, in
        order (a folder's files sorted), with ``.skipped``: the files that could not be read
        (``keras_vgg.pixels.Skipped``, with the reason). When none could, a ValueError says
        why and nothing is written.
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise expected("`top_k` to be an int >= 1", top_k=top_k)
    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputExists(f"{output} exists. Expected a new folder, or overwrite=True "
                           "(--overwrite) to replace it.")
    model = model if isinstance(model, keras.Model) else load_model(model, compile=False)
    vgg_base(model)  # before any file is read
    reader = ImageReader(image_files([images] if isinstance(images, (str, Path)) else images))
    read = list(reader)
    reader.check()
    files, pixels = zip(*read)
    cam = grad_cam(model, list(pixels), layer, preprocessing=preprocessing, batch_size=BATCH)
    names = recorded(model, "class_names")
    if not names or len(names) != cam.scores.shape[1]:
        names = [str(i) for i in range(cam.scores.shape[1])]
    temporary = new_folder(_parent(output), f".{output.name}.")
    try:
        results = Results(skipped=reader.skipped)
        for file, name, image, heatmap, row in zip(files, _output_names(files), pixels,
                                                    cam.heatmaps, cam.scores):
            top = np.argsort(-row, kind="stable")[:top_k]
            classes, top_scores = [names[i] for i in top], [float(row[i]) for i in top]
            lines = [f"Grad-CAM of {classes[0]} at {cam.layer}"] + [
                f"{c}: {s:.1%}" for c, s in zip(classes, top_scores)]
            (temporary / name).parent.mkdir(parents=True, exist_ok=True)
            _picture(image, heatmap, lines).save(temporary / name)
            results.append(Explained(file.path, str(output / name), classes, top_scores))
        if output.is_dir():
            shutil.rmtree(output)
        elif output.exists():
            output.unlink()
        temporary.rename(output)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return results


def _parent(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    return output.parent

