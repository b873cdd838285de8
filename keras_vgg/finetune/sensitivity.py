"""Widths per layer by sensitivity (``compress --plan sensitivity``).

Each conv is pruned alone to a few shares of its filters and the held-out loss of the
model that results is measured, without fine-tuning (Li et al. 2017, "Pruning Filters for
Efficient ConvNets", section 3.3: prune each layer independently and evaluate). The
planner then takes filters away in steps of 1/16 of a conv, each time from the conv whose
loss rises least per FLOP (or parameter) saved, until the model is within the budget. The
loss of a share between two measured ones is read on the line between them; the effects
of several convs are assumed to add.

Example:
    >>> import keras_vgg
    >>> from keras_vgg.pruning import conv_widths
    >>> model = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> def loss_of(pruned):  # a stand-in for the held-out loss: only block 1's filters count
    ...     return float(64 - conv_widths(pruned)[0])
    >>> sensitivity = measure_sensitivity(model, loss_of, shares=(0.5,))
    >>> sensitivity.losses["block1_conv1"], sensitivity.losses["block2_conv1"]
    ((32.0,), (0.0,))
    >>> plan_by_sensitivity(model, sensitivity, flops=0.25)[0]  # block 1 kept whole
    64
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_vgg.pruning import (conv_names, conv_widths, kept_filters, model_cost,
                               plan_widths, prune_filters)

SHARES = (0.75, 0.5, 0.25, 0.125)  # each conv alone kept at these shares of its filters
STEP = 1 / 16  # the planner takes filters away in steps of this share of a conv


@dataclass(frozen=True)
class Sensitivity:
    """The held-out loss of the whole model (``base_loss``) and, for each conv, the loss
    with that conv alone pruned to each of ``shares`` (``losses[name][i]``)."""

    base_loss: float
    shares: tuple
    losses: dict

    def increase(self, name: str, share: float) -> float:
        """The loss added by keeping ``share`` of conv ``name``'s filters: read on the lines
        between the measured shares (1.0 adds nothing), extended past the smallest."""
        shares = np.array((1.0, *self.shares))[::-1]  # ascending for np.interp
        added = np.array((0.0, *(l - self.base_loss for l in self.losses[name])))[::-1]
        if share >= shares[0]:
            return float(np.interp(share, shares, added))
        slope = (added[1] - added[0]) / (shares[1] - shares[0])
        return float(added[0] + slope * (share - shares[0]))

    def to_json(self) -> dict:
        return {"base_loss": self.base_loss, "shares": list(self.shares),
                "losses": {name: list(losses) for name, losses in self.losses.items()}}


def measure_sensitivity(model, loss_of, criterion="auto", shares=SHARES,
                        served=None) -> Sensitivity:
    """Each conv of ``model`` pruned alone to each of ``shares`` (filters ranked by
    ``criterion`` on ``model``), scored by ``loss_of(pruned_model) -> float``.

    ``served``: the model that is pruned and scored, default ``model``; give ``model`` as
    it predicts (``inference_model``: its norms folded, its weights cast) and each pruned
    copy equals ``model`` pruned then made so, without folding and casting each again
    (``prune_filters``)."""
    names, full = conv_names(model), conv_widths(model)
    served = model if served is None else served
    losses = {}
    for i, name in enumerate(names):
        row = []
        for share in shares:
            widths = list(full)
            widths[i] = max(1, round(share * full[i]))
            keep = kept_filters(model, widths, criterion)
            row.append(float(loss_of(prune_filters(served, keep))))
        losses[name] = tuple(row)
    return Sensitivity(float(loss_of(served)), tuple(shares), losses)


def plan_by_sensitivity(model, sensitivity: Sensitivity, flops=None,
                        params=None) -> tuple[int, ...]:
    """Conv widths within ``flops`` (or ``params``) of the model's, spent where
    ``sensitivity`` says the loss rises least per FLOP (or parameter) saved."""
    plan_widths(model, flops, params)  # the target checked, as for the uniform plan
    arg, fraction = ("flops", flops) if flops is not None else ("params", params)
    full = conv_widths(model)

    def cost(shares):
        return getattr(model_cost(model, _widths(shares, full)), arg)

    shares = spend(sensitivity, conv_names(model), cost, fraction * cost([1.0] * len(full)))
    return _widths(shares, full)


def spend(sensitivity: Sensitivity, names, cost, budget, floor=STEP) -> list:
    """Each conv's share of its filters: taken away in steps of ``STEP``, each time from the
    conv whose loss rises least per unit of ``cost(shares)`` saved, until the cost is within
    ``budget`` or every conv is at ``floor``."""
    shares = [1.0] * len(names)
    while cost(shares) > budget:
        now = cost(shares)
        best = None
        for i, name in enumerate(names):
            if shares[i] - STEP < floor - STEP / 2:
                continue
            fewer = shares[:i] + [shares[i] - STEP] + shares[i + 1:]
            saved = now - cost(fewer)
            if saved <= 0:
                continue
            rise = sensitivity.increase(name, fewer[i]) - sensitivity.increase(name, shares[i])
            if best is None or rise / saved < best[0]:
                best = (rise / saved, i)
        if best is None:  # every conv at its least: the uniform plan's floor
            break
        shares[best[1]] -= STEP
    return shares


def _widths(shares, full) -> tuple[int, ...]:
    return tuple(max(1, round(s * n)) for s, n in zip(shares, full))
