"""Checks of an export against the Keras model: the figures, and the gates that refuse it.

Example:
    >>> import numpy as np
    >>> from keras_vgg.export.checks import compare
    >>> reference = np.array([[0.75, 0.25], [0.25, 0.75]])  # the Keras model's probabilities
    >>> outputs = np.array([[0.25, 0.75], [0.25, 0.75]])  # an export's
    >>> compare(reference, outputs, labels=np.array([0, 1]))
    {'max_abs_diff': 0.5, 'top1_agreement': 0.5, 'accuracy': 0.5}
"""

import numpy as np

from keras_vgg.export.formats import TOLERANCE, ExportError, tolerance_key
from keras_vgg.preprocessing import resize_uint8


def as_images(images, size, name):
    """``images`` as uint8 RGB at ``size``; ``name`` is the argument named in the error."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected `{name}` to be RGB images (N, H, W, 3) with values "
                         f"0-255. Received shape {images.shape}.")
    return np.asarray(resize_uint8(images, size))


def compare(reference, outputs, labels=None) -> dict:
    """Max abs difference, top-1 agreement and (with labels) accuracy of ``outputs``."""
    row = {"max_abs_diff": float(np.max(np.abs(outputs - reference))),
           "top1_agreement": float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))}
    if labels is not None:
        row["accuracy"] = float(np.mean(outputs.argmax(-1) == labels))
    if not np.all(np.isfinite(outputs)):
        row["max_abs_diff"] = float("inf")
    return row


def supported_figures(figures, row, real):
    """The ``figures`` of ``compare`` that the sample supports for the export of ``row``: on
    random images, only the max abs difference of the exports gated on it (SavedModel,
    float32, float16)."""
    if real:
        return figures
    return {"max_abs_diff": figures["max_abs_diff"]} if tolerance_key(row) in TOLERANCE else {}


def check_row(row, min_agreement):
    """Raises ExportError when ``row`` is past its tolerance or below ``min_agreement``."""
    limit = TOLERANCE.get(tolerance_key(row))
    if limit is not None and not row["max_abs_diff"] <= limit:
        raise ExportError(f"{row['file']} differs from the Keras model by "
                          f"{row['max_abs_diff']:.3g} (allowed {limit:g}); nothing was written.")
    if min_agreement is not None and row["top1_agreement"] < min_agreement:
        raise ExportError(f"{row['file']} agrees with the Keras model's top-1 on "
                          f"{row['top1_agreement']:.1%} of the sample (required "
                          f"{min_agreement:.1%}); nothing was written.")
