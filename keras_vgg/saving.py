"""Reading saved models with their record: what a ``.keras`` file says of its variant,
preprocessing and class names, and ``load_model`` for a file or a run folder.

A VGGModel keeps its record in its config (``keras_vgg.vgg_model``). A model saved before
models carried one (an older run folder's ``best.keras``) gets it from what that run wrote
beside it: ``metrics.json`` (``final.preprocessing``, ``final.class_names``) or
``class_names.txt``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.saving import load_model, read_keras_record
    >>> path = Path(tempfile.mkdtemp()) / "vgg.keras"
    >>> model = VGG11(include_top=False, input_shape=(32, 32, 3))
    >>> model.preprocessing, model.class_names = "torch", None
    >>> model.save(path)
    >>> read_keras_record(path)["preprocessing"].mode, load_model(path).variant
    ('torch', 'vgg11')
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from keras_vgg._helpers import recorded
from keras_vgg import layers as _layers  # noqa: F401  registers the layers a .keras names
from keras_vgg.preprocessing import as_preprocessing
from keras_vgg.run_folder import BEST, METRICS, RunFolder
from keras_vgg.vgg_model import INFO_KEYS, VGGModel


def record_of(model) -> dict:
    """``{"variant", "preprocessing", "class_names"}`` as ``model`` (or a model nested in it,
    such as a fine-tuned model's base) records them; None where nothing does."""
    return {key: recorded(model, key) for key in INFO_KEYS}


def with_record(model, **record) -> VGGModel:
    """A VGGModel over ``model``'s layers and weights (its inputs and outputs) recording
    ``record`` on top of what ``model`` records (``record_of``)."""
    record = {**record_of(model), **record}
    return VGGModel(model.inputs, model.outputs, name=model.name, **record)


def read_keras_record(path) -> dict | None:
    """The record in a ``.keras`` file's config (without loading the model), or None when
    the file holds no VGGModel at its top."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    if config.get("class_name") != "VGGModel":
        return None
    record = {key: config.get("config", {}).get(key) for key in INFO_KEYS}
    if record["preprocessing"] is not None:
        record["preprocessing"] = as_preprocessing(record["preprocessing"])
    return record


def _record_beside(path: Path) -> dict:
    """The record of a model saved before models carried one (an older run's best.keras, or
    any .keras file), from the files beside it: a run's metrics.json (preprocessing, class
    names), else class_names.txt (class names)."""
    info = {}
    metrics = path.parent / METRICS
    if metrics.is_file():
        final = json.loads(metrics.read_text()).get("final", {})
        info = {k: final[k] for k in ("preprocessing", "class_names") if k in final}
    names = path.parent / "class_names.txt"
    if "class_names" not in info and names.is_file():
        info["class_names"] = names.read_text().splitlines()
    return info


def load_model(path, compile=True) -> keras.Model:
    """A ``.keras`` file, or a run folder holding ``best.keras``, with its record.

    Like ``keras.saving.load_model`` (``safe_mode`` on), with keras_vgg's classes
    registered. A model that records no preprocessing or class names, saved where a run
    wrote them beside it, comes back as a VGGModel recording them.

    Example:
        >>> load_model("no/such/run")
        Traceback (most recent call last):
        ...
        ValueError: Expected a .keras file or a run folder holding best.keras. Received: no/such/run
    """
    path = Path(path)
    if path.is_dir():
        path = RunFolder(path).best
    if path.suffix != ".keras" or not path.is_file():
        folder = path.parent if path.name == BEST else path
        raise ValueError(f"Expected a .keras file or a run folder holding best.keras. "
                         f"Received: {folder}")
    model = keras.saving.load_model(path, compile=compile)
    missing = {key: value for key, value in _record_beside(path).items()
               if recorded(model, key) is None}
    return with_record(model, **missing) if missing else model
