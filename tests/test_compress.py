"""The compress phase (keras_vgg.finetune.compress, `keras-vgg compress`): a run's model
pruned, fine-tuned on the run's data, exported beside the unpruned one and compared; the
recipe's compress phase; resume; bad input leaves nothing behind."""

import json

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg.cli import main
from keras_vgg.finetune import Recipe, compress, finetune, load_recipe
from keras_vgg.pruning import model_cost, plan_widths
from test_finetune_train import Interrupt

TINY = ["phase1_epochs=0", "phase2_epochs=1", "builtin_images_per_class=8",
        "tensorboard=false"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("compress") / "run"
    finetune(load_recipe("builtin", TINY), run_dir=run, verbose=0)
    keras.backend.clear_session()
    return run


def test_compress_prunes_fine_tunes_exports_and_reports(tiny_run, tmp_path):
    out = tmp_path / "small"
    report = compress(tiny_run, out, flops=0.3, steps=2, epochs=1, quantize=["none", "int8"],
                      verbose=0)
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
    assert len((out / "step2" / "training_log.csv").read_text().splitlines()) == 2
    assert small.class_names == original.class_names
    assert small.preprocessing == original.preprocessing
    rows = {row["quantize"]: row for row in report["exports"]}
    assert sorted(rows) == ["int8", "none"]
    for row in rows.values():
        assert row["size_after"] < row["size_before"] / 3
        assert row["agreement_after"] >= 0.9 and row["max_abs_diff_after"] < 0.05
    assert rows["none"]["max_abs_diff_after"] < 1e-4
    assert 0 <= report["accuracy"]["after"] <= 1
    assert json.loads((out / "compress_report.json").read_text()) == report
    assert (out / "widths.png").stat().st_size > 0
    assert json.loads((out / "export" / "export_report.json").read_text())["exports"]
    assert not (out / "cache").exists()


def test_an_interrupted_compress_resumes_where_it_stopped(tiny_run, tmp_path):
    out = tmp_path / "small"
    args = dict(flops=0.5, steps=2, epochs=2, quantize=["none"], verbose=0)
    with pytest.raises(KeyboardInterrupt):
        compress(tiny_run, out, callbacks=[Interrupt(epoch=1, batch=0)], **args)
    state = json.loads((out / "state.json").read_text())
    assert state["steps_done"] == 0 and not state["complete"]
    with pytest.raises(ValueError, match=r"`out` \(-o/--output\) not to exist"):
        compress(tiny_run, out, **args)
    with pytest.raises(ValueError, match=r"keeps its settings"):
        compress(tiny_run, out, resume=True, **{**args, "flops": 0.4})
    report = compress(tiny_run, out, resume=True, **args)
    log = (out / "step1" / "training_log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == [0, 1]  # epoch 0 not run twice
    assert json.loads((out / "state.json").read_text())["complete"]
    assert report["widths"]["after"] == list(keras_vgg.load_model(out / "best.keras").widths)
    with pytest.raises(ValueError, match="complete; there is nothing to resume"):
        compress(tiny_run, out, resume=True, **args)


def test_bad_input_is_a_clear_error_and_writes_nothing(tiny_run, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=r"`flops` of at least .*Received: flops=1e-07"):
        compress(tiny_run, out, flops=1e-7)
    with pytest.raises(ValueError, match=r"one of `flops` or `params`"):
        compress(tiny_run, out)
    with pytest.raises(ValueError, match=r"`steps` to be a positive int.*Received: steps=0"):
        compress(tiny_run, out, flops=0.5, steps=0)
    with pytest.raises(ValueError, match=r"`quantize` .*Received: quantize=\['int4'\]"):
        compress(tiny_run, out, flops=0.5, quantize=["int4"])
    with pytest.raises(ValueError, match=r"`criterion` .*Received: criterion='random'"):
        compress(tiny_run, out, flops=0.5, criterion="random")
    with pytest.raises(ValueError, match=r"finished fine-tune run folder.*Received: run="):
        compress(tmp_path, out, flops=0.5)
    with pytest.raises(ValueError, match=r"Nothing to resume"):
        compress(tiny_run, out, flops=0.5, resume=True)
    assert not out.exists()


def test_the_command_line_compresses_a_run(tiny_run, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["compress", str(tiny_run), "--flops", "0.3", "--epochs", "0",
                 "--quantize", "none", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "GFLOPs" in printed and "model_float32.tflite MB" in printed
    assert main(["compress", str(tiny_run), "--flops", "0.3", "-o", str(out)]) == 2
    assert "Expected `out` (-o/--output) not to exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compress", str(tiny_run), "--flops", "1.5"])
    assert "expected a fraction in (0, 1]" in capsys.readouterr().err


def test_a_recipe_with_a_compress_phase_runs_it(tmp_path):
    recipe = load_recipe("builtin", TINY + ["compress_params=0.2", "compress_epochs=1"])
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    report = result.compress_report
    assert report["params"]["after"] <= 0.2 * report["params"]["before"]
    assert keras_vgg.load_model(tmp_path / "run" / "compressed").widths == tuple(
        report["widths"]["after"])
    assert [row["quantize"] for row in report["exports"]] == ["none", "int8"]


@pytest.mark.parametrize("override,message", [
    ("compress_flops=2", r"`compress_flops` to be the fraction to keep"),
    ("compress_steps=0", r"`compress_steps` >= 1"),
    ("compress_criterion=random", r"`compress_criterion` to be one of"),
])
def test_bad_compress_keys_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_recipe("builtin", [override])
    with pytest.raises(ValueError, match=r"one of `compress_flops` and `compress_params`"):
        Recipe(compress_flops=0.3, compress_params=0.3).validate()


def test_compress_of_the_main_job_keeps_its_accuracy(builtin_run, tmp_path):
    """The README's run (VGG11-BN on the built-in shapes) with 30% of its FLOPs, one-shot,
    5 epochs of fine-tuning: at most 10 points below the unpruned model."""
    run, _ = builtin_run
    report = compress(run, tmp_path / "small", flops=0.3, epochs=5, quantize=["none"],
                      verbose=0)
    assert report["flops"]["after"] <= 0.3 * report["flops"]["before"]
    assert report["accuracy"]["after"] >= report["accuracy"]["before"] - 0.10
    assert np.isclose(report["accuracy"]["before"], json.loads(
        (run / "metrics.json").read_text())["final"]["val_accuracy"], atol=0.02)


def test_a_pruned_base_file_fine_tunes_as_a_recipes_weights(tmp_path):
    """A pruned headless model saved as .keras is a recipe's `weights`: the run's base takes
    its widths and its weights."""
    base = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), batch_norm=True)
    base.preprocessing = "torch"
    small = keras_vgg.prune(base, flops=0.3)
    small.save(tmp_path / "small.keras")
    recipe = load_recipe("builtin", TINY + [f"weights={tmp_path / 'small.keras'}",
                                            "phase2_freeze=none"])
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    trained = keras_vgg.load_model(result.best_model)
    assert trained.get_layer("base").widths == small.widths
    assert trained.get_layer("base").get_layer("block5_conv2").filters == small.widths[-1]
