"""The old name of :mod:`keras_vgg.finetune`, kept so that old imports still work.

Deprecated: import from ``keras_vgg.finetune`` instead. "Recipe" now means one thing, a file
that describes a run (the shipped ones are in the repository's ``recipes/`` folder); the
engine that runs them is ``keras_vgg.finetune``. Importing this package warns once and makes
``keras_vgg.recipes.config``, ``.data``, ``.builtin``, ``.model``, ``.train``, ``.report`` and
``.distribute`` the very modules of ``keras_vgg.finetune``.

Example:
    >>> import keras_vgg.finetune
    >>> from keras_vgg.recipes.data import load_data
    >>> load_data is keras_vgg.finetune.data.load_data
    True
"""

import sys
import warnings

from keras_vgg import finetune as _finetune
from keras_vgg.finetune import (  # noqa: F401  (the old submodules, by the same names)
    builtin,
    config,
    data,
    distribute,
    model,
    report,
    train,
)
from keras_vgg.finetune import Recipe, RunResult, finetune, load_recipe, shipped_recipes

warnings.warn(
    "keras_vgg.recipes is deprecated: import from keras_vgg.finetune instead "
    "(e.g. `from keras_vgg.finetune import finetune, load_recipe`).",
    DeprecationWarning,
    stacklevel=2,
)

SUBMODULES = ("builtin", "config", "data", "distribute", "model", "report", "train")
for _name in SUBMODULES:
    sys.modules[f"{__name__}.{_name}"] = getattr(_finetune, _name)

__all__ = ["Recipe", "RunResult", "finetune", "load_recipe", "shipped_recipes"]
