"""Run folders: naming a new one, checking one may be used, starting it, and exporting what
one holds (its ``best.keras``, calibrated and checked on the run's own data).

The one owner of run-folder names: ``finetune()`` and ``keras-vgg finetune`` both put a run
without a ``run_dir`` in ``runs/NAME``, or ``runs/NAME-2``, ``-3``... so that no run lands on
an earlier one.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from keras_vgg.finetune.run_folder import new_run_dir
    >>> root = Path(tempfile.mkdtemp())
    >>> new_run_dir("builtin", root).name
    'builtin'
    >>> (root / "builtin").mkdir()
    >>> new_run_dir("builtin", root).name
    'builtin-2'
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from keras_vgg.export.formats import DEFAULT_FORMATS
from keras_vgg.choices import SAMPLE_IMAGES
from keras_vgg.finetune import data as data_lib
from keras_vgg.finetune.config import Recipe
from keras_vgg.saving import load_model, record_of

RUNS = "runs"  # where runs go without a run_dir, relative to the working folder


def new_run_dir(name: str, root=RUNS) -> Path:
    """``root/NAME``, or ``root/NAME-2``, ``-3``...: the first that does not exist yet."""
    candidate, n = Path(root) / name, 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{name}-{n}"
    return candidate


def resolve_run_dir(run_dir, recipe, overwrite=False, resume=False) -> Path:
    """The folder a run uses: ``run_dir`` when given; else ``runs/NAME`` to overwrite, or a
    new one (``new_run_dir``). A resumed run must be named."""
    if run_dir is not None:
        return Path(run_dir)
    if resume:
        raise ValueError("Expected `run_dir` (the run to continue) with resume=True. "
                         "Received: run_dir=None")
    return Path(RUNS) / recipe.name if overwrite else new_run_dir(recipe.name)


def open_run_dir(run_dir, recipe, overwrite=False, resume=False):
    """Checks ``run_dir`` may be used; returns (recipe, state). Creates nothing yet."""
    run_dir = Path(run_dir)
    if overwrite and resume:
        raise ValueError("Expected at most one of `overwrite` and `resume`. Received both.")
    if resume:
        saved = run_dir / "recipe.json"
        if not saved.exists():
            raise ValueError(
                f"Nothing to resume: expected a run directory with recipe.json. "
                f"Received: run_dir={str(run_dir)!r}"
            )
        saved_recipe = Recipe.from_dict(json.loads(saved.read_text()), source=str(saved))
        if recipe is not None and recipe.to_dict() != saved_recipe.to_dict():
            differs = sorted(k for k, v in recipe.to_dict().items()
                             if saved_recipe.to_dict()[k] != v)
            raise ValueError(
                f"A resumed run keeps its own recipe; these keys differ from {saved}: {differs}. "
                "Resume without changes, or start a new run directory."
            )
        state_file = run_dir / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else new_state()
        if state.get("complete"):
            raise ValueError(f"The run in {run_dir} is complete; there is nothing to resume.")
        return saved_recipe, state
    if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise ValueError(
            f"The run directory {str(run_dir)!r} already holds a run. Pass overwrite=True "
            "to replace it, resume=True to continue it, or choose another run_dir."
        )
    return recipe, new_state()


def start_run_dir(run_dir, recipe):
    """A fresh run directory holding recipe.json (an earlier run there is removed)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_json(run_dir / "recipe.json", recipe.to_dict())


def new_state():
    """A run's state.json before its first phase."""
    return {"phases_done": [], "epoch": 0, "complete": False}


def write_json(path, value):
    """Written beside and renamed into place: a reader never sees half a file."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def export_run(model, out, formats=DEFAULT_FORMATS, quantize=("none",), *, preprocessing=None,
               image_size=None, representative_data=None, sample_data=None, int8_io="uint8",
               min_agreement=None, precision="float32", overwrite=False, verbose=True) -> dict:
    """``keras-vgg export``: a run folder's ``best.keras`` (or any ``.keras`` file) exported
    with ``keras_vgg.export.export``, on the data the run names.

    Args:
        model: a run folder or a ``.keras`` file.
        out, formats, quantize, image_size, int8_io, precision, overwrite, verbose: as
            ``keras_vgg.export.export``.
        min_agreement: as ``keras_vgg.export.export``: by default (None) dynamic and int8
            files must agree with Keras's top-1 on 80% of the sample images (the run's
            held-out split, or ``sample_data``); a fraction gates every file; 0 turns it off.
        preprocessing: the weights' mode; default what the model records.
        representative_data: a folder or ``tfds:NAME`` of training images to calibrate int8;
            default the run's training split.
        sample_data: a folder or ``tfds:NAME`` of labelled images to check on, all of them
            (up to SAMPLE_IMAGES); default the run's test split (else its validation split), else
            the representative data's validation split.

    Returns:
        The export report.
    """
    from keras_vgg.export import export

    out = Path(out)
    if out.exists() and not overwrite:  # before loading any data
        raise ValueError(f"{out} exists; pass overwrite=True to replace it.")
    loaded = load_model(model)
    record = record_of(loaded)
    preprocessing = preprocessing or record["preprocessing"]
    if preprocessing is None:
        raise ValueError(f"Expected `preprocessing` (--preprocessing): {model} does not record "
                         "the weights' mode (built with weights=None, saved outside a run).")
    size = _square_size(loaded, image_size)
    data = _export_data(Path(model), size, representative_data, sample_data)
    representative, sample, labels, data_names = data
    if min_agreement and sample is None:  # 0 (the gate off) needs no images
        raise ValueError("Expected `sample_data` (--sample-data DIR|tfds:NAME, real images) "
                         "with `min_agreement`: top-1 agreement on random images means "
                         f"nothing. Received: min_agreement={min_agreement} and no images to "
                         "check on.")
    if "int8" in quantize and "tflite" in formats and representative is None:
        raise ValueError("Expected `representative_data` (--representative-data "
                         "DIR|tfds:NAME, training images to calibrate on) with quantize int8. "
                         f"Received: {model} brings no data (no recipe.json).")
    names = record["class_names"] or data_names
    if labels is not None and data_names != names:
        raise ValueError(f"The data's classes {data_names} are not the model's {names}; "
                         "expected `sample_data` (--sample-data) with the classes the model "
                         f"was trained on. Received: sample_data={sample_data!r}")
    return export(loaded, out, formats, quantize, preprocessing=preprocessing,
                  class_names=names, image_size=image_size,
                  representative_data=representative, sample=sample, sample_labels=labels,
                  int8_io=int8_io, min_agreement=min_agreement, precision=precision,
                  overwrite=overwrite,
                  verbose=verbose)


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


def _export_data(model_path, image_size, representative_data, sample_data):
    """(representative, sample, labels, class names of the sample) for ``export_run``:
    each argument, else the run's own data (training split to calibrate, validation split
    to check on), else the representative data's validation split to check on."""
    representative = sample = labels = names = None
    if representative_data is not None:
        splits = _splits_of(representative_data, image_size)
        representative, sample, labels = data_lib.export_arrays(splits)
        names = splits.class_names
    recipe_file = model_path / "recipe.json"
    if recipe_file.is_file() and (representative is None or sample_data is None):
        recipe = Recipe.from_dict(json.loads(recipe_file.read_text()), source=str(recipe_file))
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
    return data_lib.load_data(Recipe(name="export", data=data, image_size=image_size))
