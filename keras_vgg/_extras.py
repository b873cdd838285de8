"""Optional dependencies: the import of a package an extra brings, or an error naming it.

The base install is the library (builders, weights, features); fine-tuning, export and
conversion bring their own packages (``pip install "keras-vgg[finetune]"``). Imports
nothing of ours.

Example:
    >>> from keras_vgg._extras import require
    >>> require("json", "finetune").__name__
    'json'
    >>> try:
    ...     require("no_such_module_here", "finetune", package="nosuch")
    ... except ImportError as error:
    ...     print(error)
    nosuch is not installed (no module named 'no_such_module_here'). Expected the finetune extra: pip install "keras-vgg[finetune]"
"""

from __future__ import annotations

import importlib


class MissingExtra(ImportError):
    """An optional package is missing; the message names the extra that installs it."""


def require(module: str, extra: str, package: str | None = None):
    """``importlib.import_module(module)``, or :class:`MissingExtra` naming ``extra``.

    ``package`` is the name pip knows it by, when not the module's (``PIL``: pillow).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or module.split(".")[0] != error.name.split(".")[0]:
            raise  # the package is there but something it imports is not: its own error
        raise MissingExtra(
            f"{package or module.split('.')[0]} is not installed (no module named "
            f"{error.name!r}). Expected the {extra} extra: pip install \"keras-vgg[{extra}]\"",
            name=error.name,
        ) from error
