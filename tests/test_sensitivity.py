"""Widths per layer by sensitivity (keras_vgg.finetune.sensitivity): the measured losses, the
reading between them, and a plan that meets its budget and spends it where the loss rises
least. Headless VGG11 at 32x32; losses made up where the planner is tested alone."""

import dataclasses
import json

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg import build_vgg
from keras_vgg.cli import main
from keras_vgg.finetune import compress, load_recipe
from keras_vgg.finetune import data as data_lib
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


def test_pruning_the_served_model_equals_serving_the_pruned_one():
    """compress measures each pruning on the model as it predicts (its norms folded, its
    weights in bfloat16), pruned to the filters chosen on the trained model: the same
    weights and outputs, bit for bit, as the trained model pruned and then folded and cast
    (what it did before, one fold and cast a pruning more)."""
    from keras_vgg.batch_norm import inference_model
    from keras_vgg.pruning import kept_filters, prune, prune_filters

    keras.utils.set_random_seed(0)
    model = build_vgg("vgg11_bn", include_top=False, input_shape=(32, 32, 3), weights=None,
                      pooling="avg")
    rng = np.random.default_rng(1)
    for layer in model.layers:  # statistics and scales other than 0/1, so the folds count
        if isinstance(layer, keras.layers.BatchNormalization):
            for weight, low, high in zip(layer.weights, (0.5, -0.2, -0.1, 0.5),
                                         (1.5, 0.2, 0.1, 2.0)):
                weight.assign(rng.uniform(low, high, weight.shape))
    widths = (48, 64, 256, 128, 512, 256, 384, 512)
    served = prune_filters(inference_model(model, "bfloat16"),
                           kept_filters(model, widths, "auto"))
    reference = inference_model(prune(model, widths=widths), "bfloat16")
    assert served.widths == reference.widths == widths
    assert [w.path for w in served.weights] == [w.path for w in reference.weights]
    for a, b in zip(served.weights, reference.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(served(images)), np.asarray(reference(images)))


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


# -- compress --plan sensitivity, on a tiny fine-tuned run ----------------------------------


@pytest.fixture(scope="module")
def planned(tiny_run, tmp_path_factory):
    """The tiny run compressed to half its FLOPs by a sensitivity plan, no fine-tuning."""
    out = tmp_path_factory.mktemp("sensitivity") / "small"
    report = compress(tiny_run, out, flops=0.5, epochs=0, quantize=["none"], plan="sensitivity",
                      distill=False, verbose=0)
    keras.backend.clear_session()
    return out, report


def test_a_sensitivity_plan_meets_its_budget_and_reports_why(tiny_run, planned):
    out, report = planned
    plan = report["plan"]
    assert plan["planner"] == "sensitivity"
    record = plan["sensitivity"]
    model = keras_vgg.load_model(tiny_run / "best.keras")
    names = conv_names(model)
    assert record["split"] == "validation" and record["images"] == 5  # 1 a class
    assert list(record["losses"]) == names and record["shares"] == [0.75, 0.5, 0.25, 0.125]
    assert all(len(losses) == 4 for losses in record["losses"].values())
    assert report["flops"]["after"] <= 0.5 * report["flops"]["before"]
    # the widths are the planner's on the record it saved
    sensitivity = Sensitivity(record["base_loss"], tuple(record["shares"]),
                              {k: tuple(v) for k, v in record["losses"].items()})
    assert report["widths"]["after"] == list(plan_by_sensitivity(model, sensitivity, flops=0.5))
    assert json.loads((out / "state.json").read_text())["settings"]["planner"] == "sensitivity"
    assert (out / "sensitivity.json").is_file()


def test_the_command_line_takes_plan(tiny_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["compress", str(tiny_run), "--flops", "0.5", "--plan", "sensitve",
              "-o", str(tmp_path / "o")])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "keras-vgg compress: error: argument --plan: invalid choice: 'sensitve' (choose from "
        "'uniform', 'sensitivity'). Did you mean 'sensitivity'?")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_plan_is_named_and_nothing_is_written(tiny_run, tmp_path):
    with pytest.raises(ValueError) as info:
        compress(tiny_run, tmp_path / "o", flops=0.5, plan="sizes", verbose=0)
    assert str(info.value) == ("Expected `plan` to be one of ['uniform', 'sensitivity']. "
                               "Received: plan='sizes'")
    with pytest.raises(ValueError) as info:
        load_recipe("builtin", ["compress.plan=size"])
    assert "compress.plan" in str(info.value) and "'size'" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_no_validation_images_is_named_and_nothing_is_written(tiny_run, tmp_path):
    """load_data refuses a split with no image first, so a run always has some; the guard
    is met here by the run's real splits with the validation images taken away."""
    from keras_vgg.finetune.compress import Asked, _Job, _measured_plan, _settings
    from keras_vgg.finetune.run_folder import read_recipe
    from keras_vgg.run_folder import RunFolder

    recipe, model = read_recipe(RunFolder(tiny_run)), keras_vgg.load_model(tiny_run)
    splits = data_lib.load_data(recipe)
    splits = dataclasses.replace(splits, val=splits.val.take(0), val_labels=splits.val_labels[:0])
    settings = _settings(recipe, model, Asked(flops=0.5, plan="sensitivity"))
    job = _Job(RunFolder(tiny_run), RunFolder(tmp_path / "o"), recipe, model, settings, None,
               (), 0)
    with pytest.raises(ValueError) as info:
        _measured_plan(job, splits)
    message = str(info.value)
    assert "\n" not in message and "plan='sensitivity'" in message
    assert f"run='{tiny_run}'" in message
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_sensitivity_compress_keeps_the_plan_it_measured(tiny_run, planned):
    """--resume compares every setting but the widths, which the state holds once measured:
    the same arguments reach the state's checks (this one is complete), another target is
    refused."""
    out, _ = planned
    same = dict(flops=0.5, epochs=0, quantize=["none"], plan="sensitivity", distill=False,
                resume=True, verbose=0)
    with pytest.raises(ValueError, match="is complete; there is nothing to resume"):
        compress(tiny_run, out, **same)
    with pytest.raises(ValueError, match="A resumed compress keeps its settings"):
        compress(tiny_run, out, **{**same, "flops": 0.4})
    saved = json.loads((out / "state.json").read_text())["settings"]
    assert saved["planner"] == "sensitivity" and len(saved["plan"]) == 1
