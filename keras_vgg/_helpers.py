"""The leaf every module may import: the one error helper and the nested-model search.

Imports nothing of ours.

Example:
    >>> from keras_vgg._helpers import expected
    >>> str(expected("`classes` to be a positive int", classes=0))
    'Expected `classes` to be a positive int. Received: classes=0'
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
