"""Widths per layer by sensitivity (keras_vgg.finetune.sensitivity): the measured losses, the
reading between them, and a plan that meets its budget and spends it where the loss rises
least. Headless VGG11 at 32x32; losses made up where the planner is tested alone."""

import keras
import numpy as np
import pytest

from keras_vgg import build_vgg
from keras_vgg.finetune.sensitivity import (Sensitivity, measure_sensitivity,
                                            plan_by_sensitivity)
from keras_vgg.pruning import conv_names, conv_widths, model_cost, plan_widths

NAMES = ["block1_conv1", "block2_conv1", "block3_conv1", "block3_conv2", "block4_conv1",
         "block4_conv2", "block5_conv1", "block5_conv2"]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_vgg("vgg11", include_top=False, input_shape=(32, 32, 3), weights=None,
                     pooling="avg")


def made_up(rises: dict, shares=(0.75, 0.5, 0.25, 0.125)) -> Sensitivity:
    """A record whose conv ``name`` adds ``rises.get(name, 1.0) * (1 - share)`` to a loss of 1."""
    return Sensitivity(1.0, shares, {name: tuple(1.0 + rises.get(name, 1.0) * (1 - s)
                                                 for s in shares) for name in NAMES})


def test_each_conv_is_pruned_alone_at_each_share(model):
    seen = []

    def loss_of(pruned):
        seen.append(conv_widths(pruned))
        return float(sum(conv_widths(pruned)))

    sensitivity = measure_sensitivity(model, loss_of, shares=(0.5, 0.25))
    full = (64, 128, 256, 256, 512, 512, 512, 512)
    assert conv_names(model) == NAMES and conv_widths(model) == full
    assert len(seen) == 2 * 8 + 1 and seen[-1] == full  # the whole model last
    assert seen[0] == (32, *full[1:]) and seen[1] == (16, *full[1:])
    assert seen[15] == (*full[:7], 128)
    assert sensitivity.base_loss == sum(full)
    assert sensitivity.losses["block1_conv1"] == (sum(full) - 32, sum(full) - 48)
    assert sensitivity.to_json()["shares"] == [0.5, 0.25]


def test_a_share_between_two_measured_ones_is_read_on_the_line():
    sensitivity = Sensitivity(2.0, (0.5, 0.25), {"c": (3.0, 5.0)})
    assert sensitivity.increase("c", 1.0) == 0.0
    assert sensitivity.increase("c", 0.75) == pytest.approx(0.5)
    assert sensitivity.increase("c", 0.5) == pytest.approx(1.0)
    assert sensitivity.increase("c", 0.375) == pytest.approx(2.0)
    assert sensitivity.increase("c", 0.125) == pytest.approx(4.0)  # past the last: its slope


@pytest.mark.parametrize("target", [{"flops": 0.25}, {"flops": 0.125}, {"params": 0.3}])
def test_the_plan_meets_its_budget_and_uses_it(model, target):
    (arg, fraction), = target.items()
    widths = plan_by_sensitivity(model, made_up({}), **target)
    full = getattr(model_cost(model), arg)
    kept = getattr(model_cost(model, widths), arg) / full
    assert kept <= fraction
    # one step of 1/16 of the widest conv is the most the last move may overshoot by
    assert kept > fraction - 0.1


def test_the_least_sensitive_convs_go_first(model):
    """block5's convs cost nothing to prune: they go to 1/16 before any other conv loses a
    filter, and the sensitive block1 keeps every filter."""
    rises = {"block1_conv1": 100.0, "block5_conv1": 0.0, "block5_conv2": 0.0}
    widths = plan_by_sensitivity(model, made_up(rises), flops=0.6)
    assert widths[0] == 64
    assert widths[6:] == (32, 32)  # 1/16 of 512
    uniform = plan_widths(model, flops=0.6)
    assert widths != uniform and len(set(uniform[4:])) == 1


def test_a_target_below_the_floor_is_refused_as_the_uniform_plan_refuses(model):
    with pytest.raises(ValueError) as planned:
        plan_widths(model, flops=1e-6)
    with pytest.raises(ValueError) as sensitive:
        plan_by_sensitivity(model, made_up({}), flops=1e-6)
    assert str(sensitive.value) == str(planned.value)
    assert "flops=1e-06" in str(sensitive.value)


def test_the_same_record_gives_the_same_plan(model):
    record = made_up({name: float(i) for i, name in enumerate(NAMES)})
    plan = plan_by_sensitivity(model, record, flops=0.25)
    assert plan == plan_by_sensitivity(model, record, flops=0.25)
    assert plan[0] == 4  # block1_conv1 costs nothing to prune: down to 1/16 of 64
