"""A latency-aware plan (issue 31 item 2, keras_vgg.finetune.latency): each conv timed alone as
a TFLite file at a few widths, the table read between them, and a ``latency`` target spent
uniformly or where the loss rises least per millisecond saved. Tables made up where the
planner is tested alone; the real table on the tiny run's VGG11-BN at 32x32, at two widths
per conv (the default four: 116 files, 23 s there)."""

import functools
import importlib
import json

import keras
import pytest

from keras_vgg import build_vgg
from keras_vgg.cli import main
from keras_vgg.finetune import compress, load_recipe
from keras_vgg.finetune.compress_report import format_compress_report
from keras_vgg.finetune.latency import LatencyTable, plan_for_latency
from keras_vgg.finetune.sensitivity import (Sensitivity, measure_sensitivity,
                                            plan_by_sensitivity)
from keras_vgg.pruning import conv_names, conv_widths

latency_module = importlib.import_module("keras_vgg.finetune.latency")
compress_module = importlib.import_module("keras_vgg.finetune.compress")
NAMES = ("block1_conv1", "block2_conv1", "block3_conv1", "block3_conv2", "block4_conv1",
         "block4_conv2", "block5_conv1", "block5_conv2")
SHARES = (1.0, 0.5, 0.25, 0.125)


@pytest.fixture(scope="module")
def model():
    return build_vgg("vgg11", include_top=False, input_shape=(32, 32, 3), weights=None,
                     pooling="avg")


def made_up(first_ms: dict) -> LatencyTable:
    """Conv ``i`` takes ``first_ms.get(name, 1.0)`` ms whole, in proportion to its input
    share x its output share (the first conv to its output share: it reads the image)."""
    rows = []
    for i, name in enumerate(NAMES):
        whole = first_ms.get(name, 1.0)
        rows.append(tuple(tuple(whole * a * b for b in SHARES) for a in (SHARES if i else (1.0,))))
    return LatencyTable(NAMES, SHARES, tuple(rows), "int8")


def flat_losses(rises: dict) -> Sensitivity:
    """Conv ``name`` adds ``rises.get(name, 1.0) * (1 - share)`` to a loss of 1."""
    shares = (0.75, 0.5, 0.25, 0.125)
    return Sensitivity(1.0, shares, {name: tuple(1.0 + rises.get(name, 1.0) * (1 - s)
                                                 for s in shares) for name in NAMES})


def test_the_table_is_read_between_the_measured_shares():
    table = LatencyTable(("a", "b"), (1.0, 0.5), (((2.0, 1.0),), ((4.0, 3.0), (2.0, 1.0))),
                         "int8")
    assert table.conv_ms(0, 0.3, 1.0) == 2.0  # the first conv: its input is the image
    assert table.conv_ms(0, 1.0, 0.75) == 1.5
    assert table.conv_ms(1, 0.75, 0.75) == 2.5  # bilinear: the mean of the four
    assert table.conv_ms(1, 0.25, 0.25) == 1.0  # below the least measured: that one
    assert table.predict((1.0, 1.0)) == 6.0 and table.predict((0.5, 0.5)) == 2.0
    assert LatencyTable.from_json(json.loads(json.dumps(table.to_json()))) == table


def test_a_uniform_share_meets_a_latency_budget(model):
    """Time in proportion to input x output share: a quarter of the time is a bit under
    half the filters of every conv (the first conv's time goes with its own share alone:
    s + 7 s^2 = 2 at s = 0.468)."""
    table = made_up({})
    widths = plan_for_latency(model, table, 0.25)
    assert widths == (30, 60, 119, 119, 239, 239, 239, 239)  # 0.467 of each, rounded
    assert table.predict([w / n for w, n in zip(widths, conv_widths(model))]) <= 2.0
    wider = [(w + 1) / n for w, n in zip(widths, conv_widths(model))]
    assert table.predict(wider) > 2.0  # the largest share that fits


def test_the_time_goes_where_it_costs_least_accuracy_per_millisecond(model):
    """block1_conv1 takes most of the time (memory-bound, as at 224x224) and its filters
    cost no more accuracy than the others': the plan narrows it alone (20 s + s + 6 <=
    0.8 x 27 at s = 11/16), where a FLOPs plan of the same losses keeps it whole (it holds
    few of the FLOPs). A conv whose filters cost much accuracy keeps them all."""
    table = made_up({"block1_conv1": 20.0})
    assert plan_for_latency(model, table, 0.8, flat_losses({})) == (
        44, 128, 256, 256, 512, 512, 512, 512)
    assert plan_by_sensitivity(model, flat_losses({}), flops=0.8)[0] == 64
    kept = plan_for_latency(model, table, 0.8, flat_losses({"block1_conv1": 1e6}))
    assert kept[0] == 64 and kept[1:] != (128, 256, 256, 512, 512, 512, 512)


def test_a_budget_below_the_least_measured_share_is_named(model):
    with pytest.raises(ValueError) as info:
        plan_for_latency(model, made_up({}), 0.001)
    message = str(info.value)
    assert message.startswith("Expected `latency` of at least 0.0")
    assert message.endswith("Received: latency=0.001") and "\n" not in message


# -- compress --latency, on the tiny fine-tuned run ------------------------------------------


@pytest.fixture(scope="module")
def timed(tiny_run, tmp_path_factory):
    """The tiny run compressed to half its convs' float32 TFLite time by a sensitivity
    plan, each conv timed at 1 and 1/2 of its channels and pruned alone to 1/2 of its
    filters (the default four shares: 32 prunings, about 20 s more), no fine-tuning."""
    out = tmp_path_factory.mktemp("latency") / "small"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(latency_module, "GRID", (1.0, 0.5))
        patch.setattr(compress_module, "measure_sensitivity",
                      functools.partial(measure_sensitivity, shares=(0.5,)))
        report = compress(tiny_run, out, latency=0.5, epochs=0, quantize=["none"],
                          plan="sensitivity", distill=False, verbose=0)
    keras.backend.clear_session()
    return out, report


def test_compress_plans_for_a_latency_target_and_reports_the_table(tiny_run, timed):
    import keras_vgg

    out, report = timed
    model = keras_vgg.load_model(tiny_run / "best.keras")
    record = report["plan"]["latency"]
    assert report["target"] == {"latency": 0.5} and report["plan"]["planner"] == "sensitivity"
    assert record["quantize"] == "none" and record["shares"] == [1.0, 0.5]
    assert list(record["ms"]) == conv_names(model)
    assert [len(rows) for rows in record["ms"].values()] == [1] + [2] * 7  # the image: 1
    assert all(ms > 0 for rows in record["ms"].values() for row in rows for ms in row)
    # the widths are the planner's on the two records it saved
    table = LatencyTable.from_json(json.loads((out / "latency.json").read_text()))
    losses = report["plan"]["sensitivity"]
    sensitivity = Sensitivity(losses["base_loss"], tuple(losses["shares"]),
                              {k: tuple(v) for k, v in losses["losses"].items()})
    assert report["widths"]["after"] == list(plan_for_latency(model, table, 0.5, sensitivity))
    assert min(w / n for w, n in zip(report["widths"]["after"], conv_widths(model))) >= 0.5
    state = json.loads((out / "state.json").read_text())
    assert state["settings"]["target"] == {"latency": 0.5} and state["complete"]
    # the console report says what was planned, by that table
    shares = [w / n for w, n in zip(report["widths"]["after"], conv_widths(model))]
    before, after = table.predict([1.0] * 8), table.predict(shares)
    assert after <= 0.5 * before
    assert (f"Planned for 0.5 of the convs' time (sensitivity plan; none TFLite, each conv timed "
            f"alone: latency.json): predicted {after:.3f} of {before:.3f} ms "
            f"({after / before:.1%}).") in " ".join(format_compress_report(report).split())


def test_a_resumed_latency_compress_keeps_its_measured_plan(tiny_run, timed):
    out, _ = timed
    same = dict(latency=0.5, epochs=0, quantize=["none"], plan="sensitivity", distill=False,
                resume=True, verbose=0)
    for changed, message in (({}, "is complete; there is nothing to resume"),
                             ({"latency": 0.4}, "A resumed compress keeps its settings")):
        with pytest.raises(ValueError, match=message):
            compress(tiny_run, out, **{**same, **changed})


def test_a_table_given_plans_as_the_one_measured_and_times_nothing(tiny_run, timed, tmp_path,
                                                                   monkeypatch):
    """compress --latency-table: the first compress's latency.json, read back and planned
    by (here uniformly: the same share of every conv), and no conv is timed."""
    import keras_vgg

    out, report = timed
    monkeypatch.setattr(latency_module, "_conv_ms", None)  # a timing would fail
    again = compress(tiny_run, tmp_path / "again", latency=0.5, epochs=0, quantize=["none"],
                     distill=False, verbose=0, latency_table=out / "latency.json")
    table = LatencyTable.from_json(report["plan"]["latency"])
    model = keras_vgg.load_model(tiny_run / "best.keras")
    assert again["plan"] == {"planner": "uniform", "sensitivity": None,
                             "latency": report["plan"]["latency"]}
    assert again["widths"]["after"] == list(plan_for_latency(model, table, 0.5))
    shares = [w / n for w, n in zip(again["widths"]["after"], conv_widths(model))]
    assert max(shares) - min(shares) <= 1 / 64  # one share, each width rounded


def test_a_bad_latency_table_is_named_and_nothing_is_written(tiny_run, timed, tmp_path):
    out, _ = timed
    record = json.loads((out / "latency.json").read_text())
    (tmp_path / "wide.json").write_text(json.dumps({**record, "size": [224, 224]}))
    (tmp_path / "int8.json").write_text(json.dumps({**record, "quantize": "int8"}))
    given = dict(latency=0.5, epochs=0, quantize=["none"], verbose=0)
    cases = [
        ({"latency_table": tmp_path / "missing.json"}, "Expected `latency_table` to be a "
         "latency.json written by compress --latency (keras_vgg.finetune.latency). Received: "
         f"latency_table='{tmp_path / 'missing.json'}': it does not exist"),
        ({"latency_table": tmp_path / "wide.json"}, "measured on this model (convs of widths "
         "[64, 128, 256, 256, 512, 512, 512, 512] at 32x32). Received: latency_table="
         f"'{tmp_path / 'wide.json'}', measured on widths [64, 128, 256, 256, 512, 512, 512, "
         "512] at 224x224"),
        ({"latency_table": tmp_path / "int8.json"}, "Expected `latency_table` timed as the none "
         "TFLite file this compress ships (quantize=['none']). Received: latency_table="
         f"'{tmp_path / 'int8.json'}', timed as int8"),
        ({"latency": None, "flops": 0.5, "latency_table": out / "latency.json"},
         "Expected `latency_table` only with a `latency` target (it times the convs). "
         f"Received: latency_table='{out / 'latency.json'}' with flops=0.5"),
    ]
    for changed, message in cases:
        with pytest.raises(ValueError) as info:
            compress(tiny_run, tmp_path / "o", **{**given, **changed})
        assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("targets, message", [
    ({"latency": 0.0}, "Expected `latency` to be the fraction of the convs' time to keep, in "
                       "(0, 1] (0.3 keeps 30%). Received: latency=0.0"),
    ({"latency": 0.5, "flops": 0.5}, "Expected one of `flops`, `params` or `latency` (the "
     "fraction of the model's FLOPs, parameters or convs' time to keep). Received: "
     "flops=0.5, latency=0.5"),
])
def test_a_bad_latency_target_is_named_and_nothing_is_written(tiny_run, tmp_path, targets,
                                                               message):
    with pytest.raises(ValueError) as info:
        compress(tiny_run, tmp_path / "o", verbose=0, **targets)
    assert str(info.value) == message
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_and_the_recipe_take_latency(tiny_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["compress", str(tiny_run), "--flops", "0.5", "--latency", "0.5",
              "-o", str(tmp_path / "o")])
    assert info.value.code == 2
    assert "argument --latency: not allowed with argument --flops" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    assert "--latency LATENCY the fraction of the convs' time to keep" in " ".join(
        capsys.readouterr().out.split())
    assert load_recipe("builtin", ["compress.latency=0.4"]).compress.latency == 0.4
    with pytest.raises(ValueError) as recipe:
        load_recipe("builtin", ["compress.latency=0.4", "compress.flops=0.3"])
    assert str(recipe.value) == ("Expected one of `compress.flops`, `compress.params` and "
                                 "`compress.latency`. Received: compress.flops=0.3, "
                                 "compress.latency=0.4")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.backend
def test_a_latency_target_needs_tensorflow():
    """The TFLite files a latency table times are TensorFlow's: on jax and torch the target
    is refused before anything is read or written, naming what to use instead."""
    from keras_vgg.finetune.compress import Asked, _target

    backend = keras.backend.backend()
    if backend == "tensorflow":
        assert _target(Asked(latency=0.3)) == ("latency", 0.3)
        return
    with pytest.raises(ValueError) as info:
        _target(Asked(latency=0.3))
    assert str(info.value) == (
        "Expected KERAS_BACKEND=tensorflow for a `latency` target (its table times TFLite "
        f"files, which TensorFlow writes). Received: latency=0.3 under KERAS_BACKEND={backend}; "
        "use `flops` or `params` here.")
