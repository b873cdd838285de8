"""A ``.keras`` model and what it needs for an export: its preprocessing and class names.

They come from the model itself (a VGGModel carries them in its config, see
``keras_vgg.vgg_model``); for run folders written before models carried them, from the
``metrics.json`` / ``class_names.txt`` the run wrote beside ``best.keras``.

Example:
    >>> import json, tempfile, keras
    >>> from pathlib import Path
    >>> from keras_vgg.export.run_info import read_model_info
    >>> run = Path(tempfile.mkdtemp())
    >>> keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(run / "best.keras")
    >>> final = {"preprocessing": "torch", "class_names": ["cat", "dog"]}
    >>> _ = (run / "metrics.json").write_text(json.dumps({"final": final}))
    >>> model, info = read_model_info(run)
    >>> model.output_shape, info
    ((None, 2), {'preprocessing': 'torch', 'class_names': ['cat', 'dog']})
"""

import json
from pathlib import Path

import keras

from keras_vgg._helpers import recorded


def _beside(path: Path) -> dict:
    """What an older run folder wrote beside its best.keras."""
    info = {}
    metrics = path.parent / "metrics.json"
    if metrics.is_file():
        final = json.loads(metrics.read_text()).get("final", {})
        info = {k: final[k] for k in ("preprocessing", "class_names") if k in final}
    names = path.parent / "class_names.txt"
    if "class_names" not in info and names.is_file():
        info["class_names"] = names.read_text().splitlines()
    return info


def read_model_info(path):
    """A ``.keras`` file (or a run folder holding ``best.keras``) and what it records:
    ``(model, {"preprocessing": ..., "class_names": [...]})``, a key left out when unknown."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.keras"
    if path.suffix != ".keras" or not path.is_file():
        raise ValueError(f"Expected a .keras file or a run folder holding best.keras. "
                         f"Received: {path}")
    model = keras.saving.load_model(path)
    info = _beside(path)
    for key in ("preprocessing", "class_names"):
        value = recorded(model, key)
        if value is not None:
            info[key] = value.to_json() if key == "preprocessing" else value
    return model, info
