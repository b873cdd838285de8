"""The compress phase (keras_vgg.finetune.compress, `keras-vgg compress`): a run's model
pruned, fine-tuned on the run's data, exported beside the unpruned one and compared on the
same images (a paired difference); the recipe's compress phase; a killed compress resumed
to the weights of one never killed; bad input leaves nothing behind."""

import json

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg.cli import main
from keras_vgg.finetune import Recipe, compress, finetune, load_recipe
from keras_vgg.finetune import data as data_lib
from keras_vgg.finetune.compress import DROP_MARGIN, PREDICTIONS, compared
from keras_vgg.finetune.compress_report import format_compress_report
from keras_vgg.finetune.phase import inference_precision
from keras_vgg.precision import with_precision
from keras_vgg.pruning import model_cost, plan_widths
from keras_vgg.stats import accuracy_of, paired_difference

TINY = ["phases.0.epochs=1", "data.builtin_images_per_class=8", "tensorboard=false"]
# the compress of the tiny run that two tests read: two steps of two epochs (a kill in the
# second epoch of step 2 then resumes from a backup, after a step already done)
ARGS = dict(flops=0.3, steps=2, epochs=2, quantize=["none", "int8"], verbose=0)
RESUMED = {**ARGS, "quantize": ["none"]}  # the weights do not depend on the exports


class KillInFit(keras.callbacks.Callback):
    """Raises at (epoch, batch) of the ``fit``-th fit it sees (a compress fits once per
    step), as a killed process would stop."""

    def __init__(self, fit, epoch, batch):
        super().__init__()
        self.at, self.fits, self.epoch = (fit, epoch, batch), 0, None

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.fits, self.epoch, batch) == self.at:
            raise KeyboardInterrupt("killed")


class LastWeights(keras.callbacks.Callback):
    """Each fit's weights at the end of its last epoch, whichever epoch best.keras keeps.
    (Taken there, not at the fit's end: EarlyStopping(restore_best_weights=True) sets the
    best epoch's weights back at every fit's end, and a resumed fit's EarlyStopping knows
    only the epochs it ran. compress reads each step's best.keras, so that is not its
    result.)"""

    def __init__(self):
        super().__init__()
        self.fits = []

    def on_train_begin(self, logs=None):
        self.fits.append(None)

    def on_epoch_end(self, epoch, logs=None):
        self.fits[-1] = [np.array(w) for w in self.model.weights]


@pytest.fixture(scope="module")
def compressed(tiny_run, tmp_path_factory):
    """``(out, report, last)``: the tiny run compressed with ``ARGS``, never interrupted;
    ``last``: each step's weights at the end of its fit."""
    out = tmp_path_factory.mktemp("compressed") / "small"
    last = LastWeights()
    report = compress(tiny_run, out, callbacks=[last], **ARGS)
    keras.backend.clear_session()
    return out, report, last.fits


def fresh_classes(run, model_path, split="test"):
    """``(labels, predicted classes)`` of ``model_path`` on ``run``'s ``split``, evaluated
    here from the run's recipe as the run's own evaluation does."""
    recipe = Recipe.from_dict(json.loads((run / "recipe.json").read_text()))
    splits = data_lib.decode_once(data_lib.load_data(recipe))
    fast = with_precision(keras_vgg.load_model(model_path), inference_precision(recipe),
                          inference=True)
    mode = keras_vgg.load_model(model_path).preprocessing
    images = data_lib.eval_pipeline(getattr(splits, split), recipe, mode)
    return getattr(splits, f"{split}_labels"), fast.predict(images, verbose=0).argmax(-1)


def assert_paired_counts_add_up(figures):
    """A paired record's counts against its two accuracies and its difference."""
    first, second = figures["first"], figures["second"]
    assert first["count"] == second["count"] == figures["count"]
    assert first["correct"] - second["correct"] == figures["only_first"] - figures["only_second"]
    assert figures["only_first"] + figures["only_second"] <= figures["changed"] <= figures["count"]
    assert figures["difference"] == round(
        (figures["only_first"] - figures["only_second"]) / figures["count"], 6)
    low, high = figures["ci95"]
    assert low <= figures["difference"] <= high


def test_compress_prunes_fine_tunes_exports_and_reports(tiny_run, compressed):
    out, report, _ = compressed
    original = keras_vgg.load_model(tiny_run)
    small = keras_vgg.load_model(out / "best.keras")
    assert list(small.widths) == report["widths"]["after"] == list(
        plan_widths(original, flops=0.3))
    assert report["widths"]["before"] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert report["flops"] == {"before": model_cost(original).flops,
                               "after": model_cost(small).flops}
    assert report["flops"]["after"] <= 0.3 * report["flops"]["before"]
    assert report["params"]["after"] == small.count_params()
    # two steps: the first to 0.3 ** 0.5 of the FLOPs, each fine-tuned in its own folder
    first = keras_vgg.load_model(out / "step1" / "best.keras")
    assert first.widths == plan_widths(original, flops=0.3 ** 0.5)
    assert len((out / "step2" / "training_log.csv").read_text().splitlines()) == 3
    assert small.class_names == original.class_names
    assert small.preprocessing == original.preprocessing
    # both models on the run's test split (3 images of each class), paired image by image
    assert (report["held_out"], report["held_out_images"]) == ("test", 15)
    saved = np.load(out / PREDICTIONS)
    labels, before = fresh_classes(tiny_run, tiny_run / "best.keras")
    _, after = fresh_classes(tiny_run, out / "best.keras")
    assert saved["labels"].tolist() == labels.tolist()
    assert np.bincount(labels).tolist() == [3] * 5
    assert saved["before"].tolist() == before.tolist()
    assert saved["after"].tolist() == after.tolist()
    paired = report["before_minus_after"]
    assert paired == paired_difference(labels, before, after).to_json()
    assert paired == compared(out, out, which=("before", "after")).to_json()
    assert_paired_counts_add_up(paired)
    assert paired["changed"] == int((before != after).sum())
    # the unpruned model's figure is the run's own, as metrics.json reports it
    metrics = json.loads((tiny_run / "metrics.json").read_text())["final"]
    assert paired["first"] == metrics["test"] == accuracy_of(labels, before).to_json()
    assert paired["second"] == accuracy_of(labels, after).to_json()
    assert report["accuracy"] == {"before": metrics["test_accuracy"],
                                  "after": accuracy_of(labels, after).value}
    # the 1-point target judged on the interval of the drop
    judged = paired_difference(labels, before, after)
    assert report["accuracy_target"] == {"max_drop": DROP_MARGIN,
                                         "result": judged.judge(DROP_MARGIN),
                                         "verdict": judged.verdict(DROP_MARGIN)}
    rows = {row["quantize"]: row for row in report["exports"]}
    assert sorted(rows) == ["int8", "none"]
    for row in rows.values():
        assert row["size_after"] < row["size_before"] / 3
        assert row["agreement_after"] >= 0.9 and row["max_abs_diff_after"] < 0.05
        for when in ("before", "after"):  # each file against its Keras model, same images
            assert row[f"vs_keras_{when}"]["count"] == 15
            assert_paired_counts_add_up(row[f"vs_keras_{when}"])
            assert row[f"vs_keras_{when}"]["changed"] == round(
                15 * (1 - row[f"agreement_{when}"]))
    assert rows["none"]["max_abs_diff_after"] < 1e-4
    assert json.loads((out / "compress_report.json").read_text()) == report
    assert (out / "widths.png").stat().st_size > 0
    export_report = json.loads((out / "export" / "export_report.json").read_text())
    assert export_report["sample"]["images"] == 15
    assert not (out / "cache").exists()


def test_a_killed_compress_resumes_to_the_weights_of_one_never_killed(tiny_run, compressed,
                                                                      tmp_path):
    """Killed in step 2 at batch 1 of its second epoch: the resumed compress reads step 1
    back, restores step 2's epoch-0 backup, runs epoch 1 from its first batch, and ends
    with the same weights, to the bit, as the compress never killed: step 2's last epoch
    and every best.keras."""
    out = tmp_path / "small"
    last = LastWeights()
    with pytest.raises(KeyboardInterrupt):
        compress(tiny_run, out, callbacks=[KillInFit(fit=2, epoch=1, batch=1)], **RESUMED)
    state = json.loads((out / "state.json").read_text())
    assert state["steps_done"] == 1 and not state["complete"]
    backup = json.loads((out / "step2" / "backup" / "phase1" / "training_metadata.json")
                        .read_text())
    assert backup["epoch"] == 1  # saved at the end of epoch 0, the one completed
    with pytest.raises(ValueError, match=r"`out` \(-o/--output\) not to exist"):
        compress(tiny_run, out, **RESUMED)
    with pytest.raises(ValueError, match=r"keeps its settings"):
        compress(tiny_run, out, resume=True, **{**RESUMED, "flops": 0.4})
    report = compress(tiny_run, out, resume=True, callbacks=[last], **RESUMED)
    log = (out / "step2" / "training_log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == [0, 1]  # epoch 0 not run twice
    assert json.loads((out / "state.json").read_text())["complete"]
    reference, expected, uninterrupted_fits = compressed
    (resumed_fit,) = last.fits  # step 2 only: step 1 was read back
    assert len(resumed_fit) == len(uninterrupted_fits[1])
    for a, b in zip(resumed_fit, uninterrupted_fits[1]):
        np.testing.assert_array_equal(a, b)
    for name in ("step1/best.keras", "best.keras"):
        resumed = keras_vgg.load_model(out / name).weights
        uninterrupted = keras_vgg.load_model(reference / name).weights
        assert [w.path for w in resumed] == [w.path for w in uninterrupted]
        for a, b in zip(resumed, uninterrupted):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert log == (reference / "step2" / "training_log.csv").read_text().splitlines()
    for key in ("widths", "accuracy", "before_minus_after", "accuracy_target"):
        assert report[key] == expected[key], key
    with pytest.raises(ValueError, match="complete; there is nothing to resume"):
        compress(tiny_run, out, resume=True, **RESUMED)


def test_bad_input_is_a_clear_error_and_writes_nothing(tiny_run, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=r"`flops` of at least .*Received: flops=1e-07"):
        compress(tiny_run, out, flops=1e-7)
    with pytest.raises(ValueError, match=r"one of `flops`, `params` or `latency` .*Received: "
                                         r"none of them$"):
        compress(tiny_run, out)
    with pytest.raises(ValueError, match=r"`steps` to be a positive int.*Received: steps=0"):
        compress(tiny_run, out, flops=0.5, steps=0)
    with pytest.raises(ValueError, match=r"`quantize` .*Received: quantize=\['int2'\]"):
        compress(tiny_run, out, flops=0.5, quantize=["int2"])
    with pytest.raises(ValueError, match=r"`criterion` .*Received: criterion='random'"):
        compress(tiny_run, out, flops=0.5, criterion="random")
    with pytest.raises(ValueError, match=r"finished fine-tune run folder.*Received: run="):
        compress(tmp_path, out, flops=0.5)
    with pytest.raises(ValueError, match=r"Nothing to resume"):
        compress(tiny_run, out, flops=0.5, resume=True)
    assert not out.exists()


def test_the_command_line_compresses_a_run(tiny_run, tmp_path, capsys):
    """--flops 1 --epochs 0 keeps every filter and trains nothing: the "pruned" model
    answers as the run's on every test image, and 15 images cannot judge a 1-point drop."""
    out = tmp_path / "cli"
    assert main(["compress", str(tiny_run), "--flops", "1", "--epochs", "0",
                 "--quantize", "none", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "compress_report.json").read_text())
    assert report["widths"]["after"] == report["widths"]["before"]
    paired = report["before_minus_after"]
    assert (paired["changed"], paired["only_first"], paired["only_second"]) == (0, 0, 0)
    assert paired["difference"] == 0.0 and paired["first"] == paired["second"]
    assert report["accuracy_target"]["result"] == "undecided"
    assert format_compress_report(report) in printed
    words = " ".join(printed.split())
    assert "GFLOPs" in words and "model_float32.tflite MB" in words
    assert "Unpruned minus pruned, paired on the 15 test images: +0.0 points" in words
    assert "on 15 images; 0 changed answer (0 right only before, 0 right only after)" in words
    assert "Within 1.0 point of the unpruned model: undecided" in words
    assert main(["compress", str(tiny_run), "--flops", "0.3", "-o", str(out)]) == 2
    assert "Expected `out` (-o/--output) not to exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compress", str(tiny_run), "--flops", "1.5"])
    assert "expected a fraction in (0, 1]" in capsys.readouterr().err


def test_a_recipe_with_a_compress_phase_runs_it(tmp_path):
    """The run ends with its compress phase (no fine-tuning epoch: the plumbing only)."""
    recipe = load_recipe("builtin", TINY + ["compress.params=0.2", "compress.epochs=0"])
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    report = result.compress_report
    assert report == json.loads((tmp_path / "run" / "compressed" / "compress_report.json")
                                .read_text())
    assert report["epochs"] == 0 and report["held_out"] == "test"
    assert report["params"]["after"] <= 0.2 * report["params"]["before"]
    assert keras_vgg.load_model(tmp_path / "run" / "compressed").widths == tuple(
        report["widths"]["after"])
    assert [row["quantize"] for row in report["exports"]] == ["none", "int8"]


@pytest.mark.parametrize("override,message", [
    ("compress.flops=2", r"`compress.flops` to be the fraction to keep"),
    ("compress.steps=0", r"`compress.steps` >= 1"),
    ("compress.criterion=random", r"`compress.criterion` to be one of"),
])
def test_bad_compress_keys_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_recipe("builtin", [override])
    with pytest.raises(ValueError, match=r"one of `compress.flops`, `compress.params` and "
                                         r"`compress.latency`"):
        Recipe().but({"compress.flops": 0.3, "compress.params": 0.3})


def test_compress_of_the_main_job_keeps_its_accuracy(builtin_run, tmp_path):
    """The README's run (VGG11-BN on the built-in shapes) with 30% of its FLOPs, one-shot,
    1 epoch of fine-tuning (its validation split is at 100% after it, so a second epoch
    could not be chosen): within 1 point of the unpruned model on the 1,050 test images,
    judged on the 95% interval of the paired drop. Measured on the CPU of tests/machine.py
    (2 cores training in bfloat16): 1,046 right against the run's 1,045 (5 changed answer:
    2 right only before, 3 only after). (On the machine of 2026-12-05: 1,044 against
    1,038, 14 changed answer.)"""
    from machine import where_figures_were_measured

    run, _ = builtin_run
    out = tmp_path / "small"
    # on the labels alone, as these figures were measured (issue 31's distillation, now the
    # default, is measured in tests/test_compress_distill.py and docs/compress.md)
    report = compress(run, out, flops=0.3, epochs=1, quantize=["none"], verbose=0,
                      distill=False)
    assert report["flops"]["after"] <= 0.3 * report["flops"]["before"]
    paired = report["before_minus_after"]
    # the unpruned model's figure is the run's own, image for image
    metrics = json.loads((run / "metrics.json").read_text())["final"]
    assert paired["first"] == metrics["test"] and paired["count"] == 1050
    saved = np.load(out / PREDICTIONS)
    assert paired == paired_difference(saved["labels"], saved["before"],
                                       saved["after"]).to_json()
    assert_paired_counts_add_up(paired)
    assert report["accuracy_target"]["result"] == "met"  # the interval within 1 point
    assert paired["ci95"][1] <= DROP_MARGIN
    if where_figures_were_measured():  # tests/machine.py
        assert (paired["first"]["correct"], paired["second"]["correct"], paired["only_first"],
                paired["only_second"], paired["changed"]) == (1045, 1046, 2, 3, 5)


def test_a_compress_that_loses_accuracy_warns_in_the_console_and_the_report(
        tiny_run, tmp_path, capsys):
    """Issue 28: 5% of the FLOPs with no fine-tuning loses more than the 1-point default
    (--max-drop): the console and compress_report.json say so; a looser --max-drop, or a
    recipe's compress.max_drop, moves the line. (The tiny run, 7 s a compress against 20 s
    for the main job's: it too loses more than a point, 1 of its 15 test images, 6.7 points;
    the main job's drop at 5% was 98.9% -> about chance.)"""
    out = tmp_path / "lossy"
    assert main(["compress", str(tiny_run), "--flops", "0.05", "--epochs", "0", "--quantize",
                 "none", "-o", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    report = json.loads((out / "compress_report.json").read_text())
    paired = report["before_minus_after"]
    assert paired["difference"] > DROP_MARGIN
    drop = f"{100 * paired['difference']:.1f}"
    assert report["accuracy_warning"].startswith(
        f"Warning: the pruned model lost {drop} points on the 15 test images "
        f"({paired['first']['accuracy']:.1%} -> {paired['second']['accuracy']:.1%}; ")
    assert "more than the 1 allowed (--max-drop, compress.max_drop)" in report["accuracy_warning"]
    assert report["accuracy_warning"] in printed
    assert report["accuracy_target"]["max_drop"] == DROP_MARGIN
    # from Python with verbose=0 the warning is a UserWarning; under a threshold above the
    # drop, no warning, and the target moves with it
    with pytest.warns(UserWarning, match=r"lost \d+\.\d points on the 15 test images"):
        quiet = compress(tiny_run, tmp_path / "quiet", flops=0.05, epochs=0,
                         quantize=["none"], verbose=0)
    assert quiet["before_minus_after"] == paired
    loose = compress(tiny_run, tmp_path / "loose", flops=0.05, epochs=0, quantize=["none"],
                     verbose=0, max_drop=100)
    assert loose["before_minus_after"] == paired
    assert loose["accuracy_warning"] is None and loose["accuracy_target"]["max_drop"] == 1.0
    with pytest.raises(ValueError, match=r"`max_drop` .*Received: max_drop=-1"):
        compress(tiny_run, tmp_path / "never", flops=0.05, max_drop=-1)
    with pytest.raises(ValueError, match=r"`compress.max_drop` .*compress.max_drop=-1"):
        load_recipe("builtin", ["compress.max_drop=-1"])
    assert not (tmp_path / "never").exists()


def test_compress_help_names_the_real_defaults(capsys):
    """Issue 28: --epochs/--lr default to the run's compress.epochs/compress.lr (5, 1e-4),
    not its phases' settings."""
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    words = " ".join(capsys.readouterr().out.split())
    assert "default: the run's compress.epochs, 5 unless its recipe says" in words
    assert "default: the run's compress.lr, 1e-4 unless its recipe says" in words
    assert "compress.max_drop, 1.0 unless its recipe says" in words
    assert "phase2" not in words


def test_a_pruned_base_file_fine_tunes_as_a_recipes_weights(tmp_path):
    """A pruned headless model saved as .keras is a recipe's `weights`: the run's base takes
    its widths and its weights."""
    base = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), batch_norm=True)
    base.preprocessing = "torch"
    small = keras_vgg.prune(base, flops=0.3)
    small.save(tmp_path / "small.keras")
    recipe = load_recipe("builtin", TINY + [f"model.weights={tmp_path / 'small.keras'}",
                                            "phases.0.freeze=none"])
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    trained = keras_vgg.load_model(result.best_model)
    assert trained.get_layer("base").widths == small.widths
    assert trained.get_layer("base").get_layer("block5_conv2").filters == small.widths[-1]
