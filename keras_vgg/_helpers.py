"""The leaf every module may import: the one error helper, the nested-model search and
the one table formatter.

Imports nothing of ours.

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
"""

from __future__ import annotations

import keras


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
