"""The leaf every module may import: the one error helper, the nested-model search and
the one table formatter, the closest name to a mistyped one, and the lazy front of a
package.

Imports nothing of ours, and not Keras either until a model is searched: the command line
reads its names without loading TensorFlow.

Example:
    >>> from keras_vgg._helpers import expected, format_table
    >>> str(expected("`classes` to be a positive int", classes=0))
    'Expected `classes` to be a positive int. Received: classes=0'
    >>> print(format_table(("model", "params"), [("vgg11", "132,863,336"), ("vgg_f", "61M")],
    ...                    right=(1,)))
    model       params
    -----  -----------
    vgg11  132,863,336
    vgg_f          61M
    >>> closest("vgg61", ["vgg11", "vgg16", "vgg19"]), did_you_mean("wieghts", ["weights"])
    ('vgg16', ". Did you mean 'weights'?")
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
import types


def closest(name, choices):
    """The choice most like ``name`` (difflib), or None when none is close. A choice with
    the same letters in another order wins a tie: "vgg61" is "vgg16", not "vgg19"."""
    choices = [str(choice) for choice in choices]
    matches = difflib.get_close_matches(str(name), choices, n=5, cutoff=0.6)
    same_letters = [match for match in matches if sorted(match) == sorted(str(name))]
    return (same_letters or matches or [None])[0]


def did_you_mean(name, choices, quote=True) -> str:
    """``". Did you mean 'vgg16'?"`` for the closest choice (quoted with repr, or as it is:
    ``". Did you mean --weights?"``), "" when none is close: the end of a one-line error."""
    match = closest(name, choices)
    if match is None:
        return ""
    return f". Did you mean {match!r}?" if quote else f". Did you mean {match}?"


class OutputExists(FileExistsError, ValueError):
    """The one error for "the output exists" (a bundle, a run folder, a compress, a converted
    file, a folder of pictures, an ``.npz``): nothing is overwritten unless ``overwrite=True``
    (``--overwrite``) says so. A ``FileExistsError``, and a ``ValueError`` as every other
    refused argument is, so code catching either sees it."""


def expected(what: str, **received) -> ValueError:
    """``ValueError("Expected WHAT. Received: name=value, ...")``, Keras's wording."""
    got = ", ".join(f"{name}={value!r}" for name, value in received.items())
    return ValueError(f"Expected {what}. Received: {got}")


def recorded(model, key):
    """What ``model``, or the first model nested in it, records under ``key``
    (``preprocessing``, ``class_names``); None when none does."""
    owner = find_nested(model, lambda m: getattr(m, key, None) is not None)
    return None if owner is None else getattr(owner, key)


def find_nested(model, holds):
    """``model`` itself, or the first model nested in it (e.g. a fine-tuned model's base),
    for which ``holds(model)`` is true; None if there is none."""
    import keras

    if holds(model):
        return model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found = find_nested(layer, holds)
            if found is not None:
                return found
    return None


def format_table(header, rows, right=()) -> str:
    """``header`` and ``rows`` (tuples of strings) as aligned columns under a rule of dashes;
    the columns whose index is in ``right`` are right-aligned (numbers), the rest left."""
    rows = [tuple(header)] + [tuple(row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class _KeepExports(types.ModuleType):
    """A lazy package: a submodule named as one of its exports (``keras_vgg.finetune.compress``
    beside the function ``compress``) does not replace the export when it loads, as an eager
    ``from .compress import compress`` in the package would not have let it."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("__all__", ()):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, lazy: dict):
    """PEP 562 for a package whose names load on first use: its ``__getattr__`` and
    ``__dir__``. ``lazy`` maps each module to the names the package takes from it; a name,
    once loaded, is the package's own attribute. Call at the end of the package's
    ``__init__``: ``__getattr__, __dir__ = lazy_exports(__name__, LAZY)``. A submodule
    (``keras_vgg.labels``) loads on first use too."""
    owner = {name: module for module, names in lazy.items() for name in names}
    front = sys.modules[package]
    front.__class__ = _KeepExports

    def __getattr__(name):
        if name not in owner:  # a submodule, as an eager package would have had it loaded
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}"):
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(owner[name]), name)
        front.__dict__[name] = value
        return value

    def __dir__():
        return sorted(set(front.__dict__) | set(owner))

    return __getattr__, __dir__


def new_folder(parent, prefix: str):
    """A new empty folder ``parent/PREFIXxxxxxxxx`` with the usual permissions (0o777 less
    the umask; ``tempfile.mkdtemp`` makes 0o700, which other users, such as a server,
    cannot read)."""
    import secrets
    from pathlib import Path

    while True:
        path = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def first_named(names, most: int = 5, rest: str = " and {} more") -> str:
    """The first ``most`` of ``names`` joined by commas, then ``rest`` with how many more
    (``"a.jpg, b.jpg and 3 more"``): how a message names a long list of files."""
    names = list(names)
    more = rest.format(len(names) - most) if len(names) > most else ""
    return ", ".join(names[:most]) + more
