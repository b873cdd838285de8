"""A run folder's model exported on its own data: ``keras-vgg export RUN -o OUT``.

:func:`export_run` exports a run folder's ``best.keras`` (or any ``.keras`` file) with
``keras_vgg.export.export``, int8 calibrated on the run's training split and every file
checked on its held-out images; :class:`ExportOptions` says how.

Example:
    >>> ExportOptions(quantize=("none", "int8"), overwrite=True).formats
    ('saved_model', 'tflite')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_vgg._helpers import OutputExists
from keras_vgg.choices import SAMPLE_IMAGES
from keras_vgg.export.formats import DEFAULT_FORMATS
from keras_vgg.finetune import data as data_lib
from keras_vgg.finetune.recipe import DataSection, ModelSection, Recipe
from keras_vgg.finetune.run_folder import read_recipe
from keras_vgg.run_folder import RunFolder
from keras_vgg.saving import load_model, record_of


@dataclass(frozen=True)
class ExportOptions:
    """How :func:`export_run` exports.

    Attributes:
        formats, quantize, image_size, int8_io, precision, overwrite, verbose: as
            ``keras_vgg.export.export``.
        min_agreement: as ``keras_vgg.export.export``: by default (None) dynamic and int8
            files must agree with Keras's top-1 on 80% of the sample images (the run's
            held-out split, or ``sample_data``); a fraction gates every file; 0 turns it off.
        preprocessing: the weights' mode; default what the model records.
        representative_data: a folder or ``tfds:NAME`` of training images to calibrate int8;
            default the run's training split.
        sample_data: a folder or ``tfds:NAME`` of labelled images to check on, all of them
            (up to SAMPLE_IMAGES); default the run's test split (else its validation split),
            else the representative data's validation split.
    """

    formats: tuple = DEFAULT_FORMATS
    quantize: tuple = ("none",)
    preprocessing: object = None
    image_size: int | None = None
    representative_data: object = None
    sample_data: object = None
    int8_io: str = "uint8"
    min_agreement: float | None = None
    precision: str = "float32"
    overwrite: bool = False
    verbose: bool = True


def export_run(model, out, formats=DEFAULT_FORMATS, quantize=("none",), *, preprocessing=None,
               image_size=None, representative_data=None, sample_data=None, int8_io="uint8",
               min_agreement=None, precision="float32", overwrite=False, verbose=True) -> dict:
    """``keras-vgg export``: a run folder's ``best.keras`` (or any ``.keras`` file) exported
    into ``out`` with ``keras_vgg.export.export``, on the data the run names; returns the
    export report. The arguments are :class:`ExportOptions`'s.

    Example (what the README's run gives, int8 calibrated on its own data):
        export_run("runs/shapes", "exported/", quantize=["none", "int8"])
    """
    return _export(model, out, ExportOptions(
        formats, quantize, preprocessing=preprocessing, image_size=image_size,
        representative_data=representative_data, sample_data=sample_data, int8_io=int8_io,
        min_agreement=min_agreement, precision=precision, overwrite=overwrite,
        verbose=verbose))


def _export(model, out, options: ExportOptions) -> dict:
    """:func:`export_run` on its options, gathered in one record."""
    from keras_vgg.export import export

    out = Path(out)
    if out.exists() and not options.overwrite:  # before loading any data
        raise OutputExists(f"{out} exists; pass overwrite=True to replace it.")
    loaded = load_model(model)
    record = record_of(loaded)
    preprocessing = options.preprocessing or record["preprocessing"]
    if preprocessing is None:
        raise ValueError(f"Expected `preprocessing` (--preprocessing): {model} does not record "
                         "the weights' mode (built with weights=None, saved outside a run).")
    size = _square_size(loaded, options.image_size)
    data = _export_data(Path(model), size, options)
    representative, sample, labels, data_names = data
    if options.min_agreement and sample is None:  # 0 (the gate off) needs no images
        raise ValueError("Expected `sample_data` (--sample-data DIR|tfds:NAME, real images) "
                         "with `min_agreement`: top-1 agreement on random images means "
                         f"nothing. Received: min_agreement={options.min_agreement} and no "
                         "images to check on.")
    if ("int8" in options.quantize and "tflite" in options.formats
            and representative is None):
        raise ValueError("Expected `representative_data` (--representative-data "
                         "DIR|tfds:NAME, training images to calibrate on) with quantize int8. "
                         f"Received: {model} brings no data (no recipe.json).")
    names = record["class_names"] or data_names
    if labels is not None and data_names != names:
        raise ValueError(f"The data's classes {data_names} are not the model's {names}; "
                         "expected `sample_data` (--sample-data) with the classes the model "
                         f"was trained on. Received: sample_data={options.sample_data!r}")
    return export(loaded, out, options.formats, options.quantize, preprocessing=preprocessing,
                  class_names=names, image_size=options.image_size,
                  representative_data=representative, sample=sample, sample_labels=labels,
                  int8_io=options.int8_io, min_agreement=options.min_agreement,
                  precision=options.precision, overwrite=options.overwrite,
                  verbose=options.verbose)


def _square_size(model, image_size):
    """The side of ``model``'s square input, else ``image_size`` when it is open."""
    height, width = model.input_shape[1:3]
    if height != width:
        raise ValueError(f"Expected a square model input; received {model.input_shape}. "
                         "Export non-square models with keras_vgg.export.export and image "
                         "arrays.")
    size = height or image_size
    if size is None:
        raise ValueError("Expected `image_size` (--image-size): the model's input size is "
                         "open.")
    return size


def _export_data(model_path, image_size, options):
    """(representative, sample, labels, class names of the sample) for ``export_run``:
    each option's data, else the run's own (training split to calibrate, validation split
    to check on), else the representative data's validation split to check on."""
    representative_data, sample_data = options.representative_data, options.sample_data
    representative = sample = labels = names = None
    if representative_data is not None:
        splits = _splits_of(representative_data, image_size)
        representative, sample, labels = data_lib.export_arrays(splits)
        names = splits.class_names
    if (RunFolder(model_path).recipe_file.is_file()
            and (representative is None or sample_data is None)):
        recipe = read_recipe(model_path)
        splits = data_lib.load_data(recipe)
        run_representative, sample, labels = data_lib.export_arrays(splits, recipe.seed)
        representative = run_representative if representative is None else representative
        names = splits.class_names
    if sample_data is not None:  # every image of it: both splits of the folder
        splits = _splits_of(sample_data, image_size)
        pairs = [(x.numpy(), int(y)) for x, y in splits.train.concatenate(splits.val)
                 .shuffle(10_000, seed=0).take(SAMPLE_IMAGES)]
        sample, labels = np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])
        names = splits.class_names
    return representative, sample, labels, names


def _splits_of(source, image_size):
    """A folder's or tfds dataset's splits at ``image_size`` (only the data keys matter:
    the recipe's model is not the exported one)."""
    source = str(source)
    data = source if Path(source).is_dir() or source.startswith("tfds:") else f"tfds:{source}"
    return data_lib.load_data(Recipe(name="export", data=DataSection(source=data),
                                     model=ModelSection(image_size=image_size)))
