"""Checks of an export against the Keras model: the figures, and the gates that refuse it.

Every file is held to a max |diff| (SavedModel, float32, float16: ``TOLERANCE``) and to an
:class:`AgreementGate`: by default dynamic and int8 files must agree with the Keras model's
top-1 on ``MIN_AGREEMENT`` of the real sample images; ``min_agreement`` sets another figure
for every file, 0 turns the gate off; random images cannot judge it. A file within
``NEAR_TIE`` of every Keras probability passes whatever its agreement: each answer it
changed was a near tie of the Keras model.

Example:
    >>> import numpy as np
    >>> from keras_vgg.export.checks import agreement_gate, compare
    >>> reference = np.array([[0.75, 0.25], [0.25, 0.75]])  # the Keras model's probabilities
    >>> outputs = np.array([[0.25, 0.75], [0.25, 0.75]])  # an export's
    >>> compare(reference, outputs, labels=np.array([0, 1]))
    {'max_abs_diff': 0.5, 'top1_agreement': 0.5, 'changed': 1, 'accuracy': 0.5}
    >>> agreement_gate("int8", None, real=True)
    AgreementGate(min_agreement=0.8, rule='default')
    >>> agreement_gate("int8", None, real=False).to_json()  # cannot judge: no real images
    {'min_agreement': None, 'rule': 'random images'}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_vgg.export.formats import (
    AGREEMENT_GATED,
    MIN_AGREEMENT,
    NEAR_TIE,
    TOLERANCE,
    ExportError,
    tolerance_key,
)
from keras_vgg.preprocessing import resize_uint8


def as_images(images, size, name):
    """``images`` as uint8 RGB at ``size``; ``name`` is the argument named in the error."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected `{name}` to be RGB images (N, H, W, 3) with values "
                         f"0-255. Received shape {images.shape}.")
    return np.asarray(resize_uint8(images, size))


def compare(reference, outputs, labels=None) -> dict:
    """Max abs difference, top-1 agreement, images whose top-1 changed and (with labels)
    accuracy of ``outputs``."""
    same = outputs.argmax(-1) == reference.argmax(-1)
    row = {"max_abs_diff": float(np.max(np.abs(outputs - reference))),
           "top1_agreement": float(np.mean(same)), "changed": int(np.sum(~same))}
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


@dataclass(frozen=True)
class AgreementGate:
    """The top-1 agreement with the Keras model a file must reach to be written.

    ``min_agreement``: the fraction, None when no agreement gate applies. ``rule``: why:
    ``"default"`` (``MIN_AGREEMENT``, dynamic and int8 files on real images), ``"given"``
    (the caller's ``min_agreement``, every file), ``"off"`` (``min_agreement=0``),
    ``"random images"`` (a default gate that random images cannot judge), ``"max |diff|"``
    (a float file, held to its max |diff| tolerance instead)."""

    min_agreement: float | None
    rule: str

    def to_json(self) -> dict:
        return {"min_agreement": self.min_agreement, "rule": self.rule}


def agreement_gate(quantize, min_agreement, real) -> AgreementGate:
    """The :class:`AgreementGate` of a file of ``quantize`` mode (None for a SavedModel):
    ``min_agreement`` when given (0: off), else ``MIN_AGREEMENT`` for dynamic and int8 files
    checked on ``real`` images."""
    if min_agreement is not None:
        return AgreementGate(float(min_agreement), "given") if min_agreement > 0 else \
            AgreementGate(None, "off")
    if quantize not in AGREEMENT_GATED:
        return AgreementGate(None, "max |diff|")
    return AgreementGate(MIN_AGREEMENT, "default") if real else \
        AgreementGate(None, "random images")


def check_row(row, gate: AgreementGate, images: int) -> str | None:
    """Raises ExportError when ``row`` is past its tolerance or below its ``gate`` on the
    ``images`` sample images, saying by how much and how to change the gate. Else how it
    passed the gate: ``"passed"``, ``"near ties"`` (under ``min_agreement``, but within
    ``NEAR_TIE`` of every Keras probability), or None (no agreement gate)."""
    limit = TOLERANCE.get(tolerance_key(row))
    if limit is not None and not row["max_abs_diff"] <= limit:
        raise ExportError(f"{row['file']} differs from the Keras model by "
                          f"{row['max_abs_diff']:.3g} (allowed {limit:g}); nothing was written.")
    if gate.min_agreement is None:
        return None
    if row["top1_agreement"] >= gate.min_agreement:
        return "passed"
    if row["max_abs_diff"] <= NEAR_TIE:
        return "near ties"
    source = (f"min_agreement={gate.min_agreement:g}" if gate.rule == "given" else
              "the default min_agreement for dynamic and int8 files")
    hint = (" An int8 file this far from its Keras model was usually calibrated on images "
            "unlike the sample: check `representative_data` (--representative-data)."
            if row["quantize"] == "int8" else "")
    raise ExportError(
        f"{row['file']} agrees with the Keras model's top-1 on {row['top1_agreement']:.1%} "
        f"of the sample ({row['changed']} of {images} images changed answer; required "
        f"{gate.min_agreement:.1%}: {source}) and differs from it by "
        f"{row['max_abs_diff']:.2g} (more than {NEAR_TIE:g}: not near ties); nothing was "
        f"written.{hint} To write it anyway, pass a lower `min_agreement` "
        "(--min-agreement), or 0 to turn the gate off.")
