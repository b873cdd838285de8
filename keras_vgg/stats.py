"""Figures with their uncertainty: an accuracy with its count and 95% Wilson interval, and the
paired difference of two models scored on the same images (Newcombe's interval).

Every accuracy the package prints or writes goes through :func:`accuracy`; every comparison
of two models (compressed vs control, bfloat16 vs float32, a quantised file vs its Keras
model) goes through :func:`paired_difference`, and a target such as "within 1 point" is
judged on the interval by :meth:`PairedDifference.judge`, which says when the split is too
small to tell.

References: E. B. Wilson (1927), "Probable inference, the law of succession, and statistical
inference"; R. G. Newcombe (1998), "Improved confidence intervals for the difference between
binomial proportions based on paired data", Statistics in Medicine 17, method 10.

Example:
    >>> from keras_vgg.stats import accuracy, paired_difference
    >>> print(accuracy(97, 100))
    97.0% (97/100 images; 95% CI 91.5%-99.0%)
    >>> diff = paired_difference([0, 1, 1, 0], [0, 1, 1, 1], [0, 1, 0, 1])
    >>> diff.changed, diff.only_first, diff.only_second, diff.difference
    (1, 1, 0, 0.25)
    >>> diff.judge(0.01)
    'undecided'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def wilson_interval(correct: int, count: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``correct / count``; (0, 1) when ``count`` is 0."""
    if count <= 0:
        return 0.0, 1.0
    p = correct / count
    denominator = 1 + z * z / count
    centre = (p + z * z / (2 * count)) / denominator
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Accuracy:
    """``correct`` of ``count`` images right, with its 95% Wilson interval [low, high]."""

    correct: int
    count: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.correct / self.count if self.count else 0.0

    def to_json(self) -> dict:
        """What metrics.json and the reports hold: the value, count and interval."""
        return {"accuracy": round(self.value, 6), "correct": self.correct,
                "count": self.count, "ci95": [round(self.low, 6), round(self.high, 6)]}

    @classmethod
    def from_json(cls, figures: dict) -> "Accuracy":
        """A :meth:`to_json` record (metrics.json, a report) back as an Accuracy."""
        return cls(figures["correct"], figures["count"], *figures["ci95"])

    def __str__(self) -> str:
        return (f"{self.value:.1%} ({self.correct:,}/{self.count:,} images; 95% CI "
                f"{self.low:.1%}-{self.high:.1%})")


def accuracy(correct: int, count: int) -> Accuracy:
    """``correct`` of ``count`` as an :class:`Accuracy` with its interval."""
    correct, count = int(correct), int(count)
    if not 0 <= correct <= count:
        raise ValueError(f"Expected 0 <= correct <= count. Received: correct={correct}, "
                         f"count={count}")
    return Accuracy(correct, count, *wilson_interval(correct, count))


def accuracy_of(labels, predicted) -> Accuracy:
    """The :class:`Accuracy` of ``predicted`` class indices against ``labels``."""
    labels, predicted = np.asarray(labels).reshape(-1), np.asarray(predicted).reshape(-1)
    return accuracy(int((labels == predicted).sum()), labels.size)


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of the first model minus the second's, on the same ``count`` images.

    ``only_first``: images the first gets right and the second wrong; ``only_second`` the
    reverse; ``changed``: images whose predicted class differs (right or wrong);
    ``difference`` = (only_first - only_second) / count, with its 95% interval [low, high]."""

    count: int
    first: Accuracy
    second: Accuracy
    only_first: int
    only_second: int
    changed: int
    difference: float
    low: float
    high: float

    def judge(self, margin: float) -> str:
        """Whether the second model is within ``margin`` (a fraction, 0.01 = 1 point) below
        the first: "met" when the whole interval of the drop is within it, "missed" when
        the whole interval is past it, else "undecided" (the split is too small to tell)."""
        if self.high <= margin:
            return "met"
        if self.low > margin:
            return "missed"
        return "undecided"

    def verdict(self, margin: float) -> str:
        """:meth:`judge` in words, for a report line."""
        word = self.judge(margin)
        if word == "undecided":
            return (f"undecided: the interval of the drop spans {margin * 100:.1f} points "
                    f"({self.count:,} images are too few to tell)")
        return f"{word} (drop within {margin * 100:.1f} points)" if word == "met" else \
            f"{word} (drop over {margin * 100:.1f} points)"

    def to_json(self) -> dict:
        values = asdict(self)
        values["first"], values["second"] = self.first.to_json(), self.second.to_json()
        for key in ("difference", "low", "high"):
            values[key] = round(values[key], 6)
        values["ci95"] = [values.pop("low"), values.pop("high")]
        return values

    @classmethod
    def from_json(cls, figures: dict) -> "PairedDifference":
        """A :meth:`to_json` record back as a PairedDifference."""
        values = dict(figures)
        low, high = values.pop("ci95")
        return cls(**{**values, "first": Accuracy.from_json(values["first"]),
                      "second": Accuracy.from_json(values["second"]), "low": low, "high": high})

    def __str__(self) -> str:
        return (f"{self.difference * 100:+.1f} points (95% CI {self.low * 100:+.1f} to "
                f"{self.high * 100:+.1f}) on {self.count:,} images; {self.changed:,} changed "
                f"answer ({self.only_first:,} right only before, {self.only_second:,} right "
                f"only after)")


def paired_difference(labels, first, second) -> PairedDifference:
    """The paired difference of two models' predicted classes ``first`` and ``second`` on
    the same images with true ``labels``: accuracy(first) - accuracy(second)."""
    labels = np.asarray(labels).reshape(-1)
    first, second = np.asarray(first).reshape(-1), np.asarray(second).reshape(-1)
    if not labels.size == first.size == second.size:
        raise ValueError("Expected labels and both predictions of the same length. Received: "
                         f"{labels.size}, {first.size} and {second.size}")
    right1, right2 = first == labels, second == labels
    both, only1 = int((right1 & right2).sum()), int((right1 & ~right2).sum())
    only2, neither = int((~right1 & right2).sum()), int((~right1 & ~right2).sum())
    n = labels.size
    low, high = _newcombe(both, only1, only2, neither)
    return PairedDifference(
        count=n, first=accuracy(both + only1, n), second=accuracy(both + only2, n),
        only_first=only1, only_second=only2, changed=int((first != second).sum()),
        difference=(only1 - only2) / n if n else 0.0, low=low, high=high)


def _newcombe(a: int, b: int, c: int, d: int) -> tuple[float, float]:
    """Newcombe's method 10 for p1 - p2 with p1 = (a+b)/n, p2 = (a+c)/n (paired 2x2 table:
    a both right, b first only, c second only, d neither)."""
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n)
    l2, u2 = wilson_interval(a + c, n)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    # Newcombe's corrected phi: without the n/2, a table with no discordant pair (b = c = 0)
    # and a = d gives phi = 1 and an interval of width 0.
    concordance = max(a * d - b * c - n / 2, 0) if a * d > b * c else a * d - b * c
    phi = concordance / math.sqrt(margins) if margins else 0.0
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    epsilon = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2)
                            + (p2 - l2) ** 2))
    theta = p1 - p2
    return max(-1.0, theta - delta), min(1.0, theta + epsilon)
