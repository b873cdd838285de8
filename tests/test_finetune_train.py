"""The fine-tune schedule end to end on the built-in shapes (tiny inputs, a few steps)."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_vgg.finetune import Recipe, finetune, load_recipe
from keras_vgg.finetune.builtin import make_shapes
from keras_vgg.finetune.model import build_finetune_model, freeze
from keras_vgg.finetune.report import format_run, read_log
from keras_vgg.finetune.phase import class_weights
from keras_vgg.finetune.train import preprocessing_mode
from keras_vgg.stats import accuracy


TINY = {"name": "tiny", "data.source": "builtin", "model.name": "vgg11", "model.image_size": 32,
        "data.builtin_images_per_class": 4, "data.batch_size": 8, "data.augment": ["flip"],
        "phases.0.epochs": 1, "phases.1.epochs": 1, "phases.1.lr": 1e-3, "tensorboard": False,
        "early_stopping_patience": 0, "reduce_lr_patience": 0}


def tiny(changes=None):
    """A tiny two-phase recipe (head on the frozen base, then blocks 5 and up), with
    ``changes`` ({dotted key: value}) on top."""
    return Recipe().but({**TINY, **(changes or {})})


class Snapshots(keras.callbacks.Callback):
    """Every variable of the model being fit, at the start and the end of each fit."""

    def __init__(self):
        super().__init__()
        self.fits = []

    def _take(self):
        return {v.path: np.array(v) for v in self.model.variables}

    def on_train_begin(self, logs=None):
        self.fits.append({"begin": self._take()})

    def on_train_end(self, logs=None):
        self.fits[-1]["end"] = self._take()


class Interrupt(keras.callbacks.Callback):
    """Raises at a given (absolute) epoch and batch, as a killed process would stop."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt("killed")


def changed(before, after, key):
    return not np.array_equal(before[key], after[key])


# -- the README's main command: the built-in recipe really learns ----------------------------


@pytest.mark.slow
def test_builtin_recipe_reaches_97_percent_test_accuracy_from_the_cli(builtin_run):
    run, out = builtin_run  # `keras-vgg finetune` with no arguments, in a fresh folder
    metrics = json.loads((run / "metrics.json").read_text())
    final = metrics["final"]
    # The test split: 210 images per class, never trained on nor used to choose the epoch.
    assert final["reported"] == "test" and final["test"]["count"] == 1050
    assert final["validation"]["count"] == 300
    assert final["accuracy"] == final["test_accuracy"] >= 0.97  # uniform is 20%
    assert final["test"] == accuracy(final["test"]["correct"], 1050).to_json()
    assert f"Outputs in {os.path.join('runs', 'builtin')}" in out
    summary = next(line for line in out.splitlines() if line.startswith("Test accuracy"))
    assert summary.startswith(
        f"Test accuracy {accuracy(final['test']['correct'], 1050)} (best.keras, from epoch "
        f"{final['best_epoch']} of {final['epochs_run']}; validation "
        f"{accuracy(final['validation']['correct'], 300)})")
    assert out.index("Test accuracy") < out.index("Outputs in")
    for name in ("best.keras", "metrics.json", "history.png", "confusion_matrix.png",
                 "recipe.json", "data_report.json", "training_log.csv",
                 "logs"):
        assert (run / name).exists(), name
    assert not (run / "class_names.txt").exists()  # best.keras itself says them (below)
    assert json.loads((run / "recipe.json").read_text()) == load_recipe("builtin").to_dict()
    report = json.loads((run / "data_report.json").read_text())
    assert (report["train_counts"], report["val_counts"], report["test_counts"]) == (
        [330] * 5, [60] * 5, [210] * 5)
    assert sum(sum(row) for row in metrics["confusion_matrix"]) == 1050
    diagonal = sum(metrics["confusion_matrix"][i][i] for i in range(5))
    assert diagonal == final["test"]["correct"]
    assert set(metrics["per_class"]) == {"circle", "cross", "square", "stripes", "triangle"}
    # best.keras is the best epoch's model: scored afresh on the validation split, it gets
    # exactly the images right that the epoch's log counted (a deterministic run).
    assert not (run / "backup").exists()
    logged = [row["val_accuracy"] for row in read_log(run / "training_log.csv")]
    assert round(max(logged) * 300) == final["validation"]["correct"]
    assert final["best_epoch"] == logged.index(max(logged)) + 1
    assert final["epochs_planned"] == 6
    assert (final["epochs_run"] < 6) == bool(final["stopped_early"])
    # best.keras holds the model without optimizer state: about its weights' size.
    best = keras.saving.load_model(run / "best.keras")
    weight_bytes = sum(np.asarray(w).nbytes for w in best.weights)
    assert best.class_names == ["circle", "cross", "square", "stripes", "triangle"]
    assert best.preprocessing.to_json() == final["preprocessing"] == "torch"
    assert getattr(best, "optimizer", None) is None and os.path.getsize(run / "best.keras") < 1.2 * weight_bytes


@pytest.mark.slow
def test_readme_states_the_main_jobs_exact_figure(builtin_run):
    """README.md gives the main job's test figure; a run on the machine it was measured on
    (that CPU model, 2 cores, bfloat16 training: tests/machine.py) reproduces it to the
    image."""
    from machine import MEASURED_ON, where_figures_were_measured

    run, _ = builtin_run
    final = json.loads((run / "metrics.json").read_text())["final"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"(\d[\d,]*)/1,050 test images", readme)
    assert match, "README.md must state the main job's test figure as N/1,050 test images"
    assert f"model {MEASURED_ON.split('/')[1]}" in readme  # the README names that CPU
    if where_figures_were_measured():
        assert final["test"]["correct"] == int(match.group(1).replace(",", ""))


# -- freezing -------------------------------------------------------------------------------


def test_frozen_layers_do_not_change_and_unfrozen_blocks_do(tmp_path):
    snaps = Snapshots()
    recipe = tiny({"model.name": "vgg11_bn", "phases.1.freeze": "block3",
                   "model.head_dropout": 0.0})
    finetune(recipe, run_dir=tmp_path / "run", callbacks=[snaps], verbose=0)
    phase1, phase2 = snaps.fits
    keys = phase1["begin"].keys()
    head = [k for k in keys if k.startswith("head/")]
    base = [k for k in keys if not k.startswith("head/") and "seed_generator" not in k]
    assert head and base
    # Phase 1: the whole base (kernels, biases, BN statistics) is fixed; the head trains.
    assert not [k for k in base if changed(phase1["begin"], phase1["end"], k)]
    assert all(changed(phase1["begin"], phase1["end"], k) for k in head)
    # Phase 2 with freeze="block3": blocks 1-3 fixed, blocks 4-5 change (BN statistics too,
    # since the run starts from random weights and bn_training is "auto").
    moved = {k for k in base if changed(phase2["begin"], phase2["end"], k)}
    assert not [k for k in moved if k.split("/")[0].startswith(("block1", "block2", "block3"))]
    upper = [k for k in base if k.split("/")[0].startswith(("block4", "block5"))]
    assert upper and set(upper) <= moved
    assert any(k.endswith("moving_mean") for k in moved)


def test_bn_stays_fixed_in_unfrozen_blocks_unless_bn_training():
    """keras-io's base(x, training=False) alone would not do this in Keras 3 (keras#20285)."""
    recipe = tiny({"model.name": "vgg11_bn", "model.bn_training": False})
    model = build_finetune_model(recipe, 3)
    frozen = freeze(model, "none", freeze_bn=True)
    assert frozen == [f"{name}_bn" for name in ("block1_conv1", "block2_conv1", "block3_conv1",
                      "block3_conv2", "block4_conv1", "block4_conv2", "block5_conv1",
                      "block5_conv2")]
    model.compile("adam", "sparse_categorical_crossentropy")
    before = {v.path: np.array(v) for v in model.variables}
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    after = {v.path: np.array(v) for v in model.variables}
    stats = [k for k in before if "_bn/" in k]
    kernels = [k for k in before if k.endswith("kernel")]
    assert stats and not [k for k in stats if changed(before, after, k)]
    assert all(changed(before, after, k) for k in kernels)


def test_freeze_specs_name_the_frozen_layers():
    model = build_finetune_model(tiny({"model.name": "vgg16"}), 2)
    assert freeze(model, "block2") == [
        "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"]
    assert len(freeze(model, "block4")) == 10
    assert len(freeze(model, "all")) == 13 and not model.get_layer("base").trainable
    assert freeze(model, "none") == []
    assert len(model.trainable_weights) == 13 * 2 + 2
    with pytest.raises(ValueError, match="freeze"):
        freeze(model, "block9")


@pytest.mark.parametrize("head, layers, shape", [
    ("avg", ["features", "avg_pool", "head_dropout", "predictions"], (None, 7)),
    ("max", ["features", "max_pool", "head_dropout", "predictions"], (None, 7)),
    ("flatten", ["features", "flatten", "head_dropout", "predictions"], (None, 7)),
])
def test_heads(head, layers, shape):
    model = build_finetune_model(tiny({"model.head": head}), 7)
    head_model = model.get_layer("head")
    assert ["features"] + [layer.name for layer in head_model.layers] == layers
    assert model.output_shape == shape
    assert model.get_layer("base").output_shape == (None, 1, 1, 512)


def test_fc_head_keeps_fc1_fc2_and_replaces_predictions():
    model = build_finetune_model(
        tiny({"model.head": "fc", "model.head_dropout": 0.0, "model.head_units": 0}), 5)
    base = model.get_layer("base")
    assert [layer.name for layer in base.layers][-4:] == ["fc1", "fc1_dropout", "fc2",
                                                         "fc2_dropout"]
    assert base.output_shape == (None, 4096)
    assert [layer.name for layer in model.get_layer("head").layers] == ["predictions"]
    assert model.output_shape == (None, 5)
    frozen = freeze(model, "block5")
    assert "fc1" not in frozen and len(frozen) == 8
    assert "fc1" in freeze(model, "all")


def test_head_units_adds_a_hidden_layer():
    head = build_finetune_model(tiny({"model.head_units": 16}), 3).get_layer("head")
    assert [layer.name for layer in head.layers] == [
        "avg_pool", "head_fc", "head_dropout", "predictions"]
    assert head.get_layer("head_fc").units == 16


# -- the feature cache ------------------------------------------------------------------------


def test_feature_cache_trains_the_same_head_as_the_plain_path(tmp_path):
    common = {"data.augment": [], "phases.1.epochs": 0, "phases.0.epochs": 2,
              "model.head_dropout": 0.0}
    cached = finetune(tiny({"feature_cache": True, **common}), run_dir=tmp_path / "a", verbose=0)
    plain = finetune(tiny({"feature_cache": False, **common}), run_dir=tmp_path / "b", verbose=0)
    assert cached.feature_cache and not plain.feature_cache
    assert sorted(p.name for p in (tmp_path / "a" / "feature_cache").iterdir()) == [
        "train.npy", "val.npy"]
    a = keras.saving.load_model(cached.best_model)
    b = keras.saving.load_model(plain.best_model)
    assert [(w.path, w.shape) for w in a.weights] == [(w.path, w.shape) for w in b.weights]
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(np.array(wa), np.array(wb), atol=1e-5, err_msg=wa.path)
    assert cached.metrics["final"]["val_accuracy"] == plain.metrics["final"]["val_accuracy"]
    # The saved model is exactly base + trained head.
    x = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype("float32")
    features = a.get_layer("base")(x, training=False)
    np.testing.assert_allclose(a.predict(x, verbose=0), a.get_layer("head")(features),
                               atol=1e-6)


def test_feature_cache_auto_only_when_frozen_and_not_augmented(tmp_path):
    from keras_vgg.finetune.phase import uses_feature_cache

    assert uses_feature_cache(tiny({"data.augment": []}))
    assert not uses_feature_cache(tiny({"data.augment": ["flip"]}))
    assert not uses_feature_cache(tiny({"data.augment": [], "phases.0.freeze": "block4"}))
    assert not uses_feature_cache(tiny({"data.augment": [], "feature_cache": False}))
    with pytest.raises(ValueError, match="feature_cache"):
        tiny({"feature_cache": True, "data.augment": ["flip"]})


def test_early_stopping_is_reported_with_the_best_epoch(tmp_path):
    """A rate too small to change anything: val_accuracy never improves on epoch 1, so
    EarlyStopping (patience 1) ends phase 1 after epoch 2 of 4, and the run says so."""
    recipe = tiny({"phases.0.epochs": 4, "phases.1.epochs": 0, "phases.0.lr": 1e-12,
                   "data.augment": [], "early_stopping_patience": 1})
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    final = result.metrics["final"]
    assert (final["best_epoch"], final["epochs_run"], final["epochs_planned"]) == (1, 2, 4)
    assert final["stopped_early"] == ["phase1"]
    # No test split: the figure is the validation split's, and the console says it is biased.
    assert final["test"] is None and final["reported"] == "validation"
    validation = accuracy(final["validation"]["correct"], final["validation"]["count"])
    assert format_run(result).splitlines()[:2] == [
        f"Validation accuracy {validation} (best.keras, from epoch 1 of 2; early stopping ended "
        f"phase1) in {result.metrics['seconds']:.0f} s, head trained on cached features",
        "No test split: the same images chose the epoch, so this figure is biased upwards (set "
        "data.test_split or data.test_data)."]


# -- interruption and resume ------------------------------------------------------------------


class EpochWeights(keras.callbacks.Callback):
    """The fitted model's weights at the end of each epoch, and at the start of the first
    epoch this process runs (after BackupAndRestore has put back what it kept)."""

    def __init__(self):
        super().__init__()
        self.ends, self.first = {}, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first is None:
            self.first = (epoch, [np.array(w) for w in self.model.get_weights()])

    def on_epoch_end(self, epoch, logs=None):
        self.ends[epoch] = [np.array(w) for w in self.model.get_weights()]


@pytest.mark.parametrize("settings, kill_epoch", [
    ({}, 1), ({}, 3), ({"feature_cache": True, "data.augment": []}, 1), ({"data.cache": "disk"}, 1),
], ids=["phase1-epoch2", "phase2-epoch2", "feature-cache", "disk-cache"])
def test_killed_inside_a_phase_resumes_from_its_last_epoch(tmp_path, settings, kill_epoch):
    """Killed in a phase's second epoch, the resumed run starts from the weights of the epoch
    before (BackupAndRestore), does not run that epoch again, and ends with every epoch."""
    recipe = tiny({"phases.0.epochs": 2, "phases.1.epochs": 2, **settings})
    run, first = tmp_path / "run", EpochWeights()
    with pytest.raises(KeyboardInterrupt):
        finetune(recipe, run_dir=run, callbacks=[first, Interrupt(kill_epoch, 1)], verbose=0)
    assert [row["epoch"] for row in read_log(run / "training_log.csv")] == list(
        range(kill_epoch))
    resumed = EpochWeights()
    result = finetune(None, run_dir=run, resume=True, callbacks=[resumed], verbose=0)
    epoch, weights = resumed.first
    assert epoch == kill_epoch
    for restored, kept in zip(weights, first.ends[kill_epoch - 1], strict=True):
        np.testing.assert_array_equal(restored, kept)
    assert result.epochs == 4 and result.feature_cache == (settings.get("feature_cache") is True)
    assert [row["epoch"] for row in read_log(run / "training_log.csv")] == [0, 1, 2, 3]
    assert not (run / "backup").exists() and not (run / "cache").exists()


@pytest.mark.parametrize("kill_at", [(0, 1), (2, 1)], ids=["phase1", "phase2"])
def test_killed_run_resumes_and_finishes_every_epoch(tmp_path, kill_at):
    recipe = tiny({"phases.0.epochs": 2, "phases.1.epochs": 2})
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        finetune(recipe, run_dir=run, callbacks=[Interrupt(*kill_at)], verbose=0)
    epochs_before = [row["epoch"] for row in read_log(run / "training_log.csv")]
    assert epochs_before == list(range(kill_at[0]))
    if kill_at[0] > 0:  # the best model of the finished epochs is still there
        assert (run / "best.keras").exists()
    result = finetune(None, run_dir=run, resume=True, verbose=0)
    assert result.epochs == 4
    assert [row["epoch"] for row in read_log(run / "training_log.csv")] == [0, 1, 2, 3]
    assert result.best_model.exists()
    assert json.loads((run / "state.json").read_text())["complete"] is True
    assert not (run / "backup").exists()


KILLED_RUN = textwrap.dedent("""
    import json, os, signal, sys
    import keras
    from keras_vgg.finetune import Recipe, finetune

    class KillNine(keras.callbacks.Callback):  # SIGKILL: no cleanup, no exception handler
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_begin(self, batch, logs=None):
            if [self.epoch, batch] == json.loads(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)

    recipe = Recipe.from_dict(json.loads(sys.argv[2]))
    finetune(recipe, run_dir=sys.argv[1], callbacks=[KillNine()], verbose=0)
""")
PROCESS_TIMEOUT = 600  # seconds; a tiny run takes about 20


def _figures(run):
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("seconds")
    return metrics


@pytest.mark.slow
def test_kill_nine_in_phase_two_then_resume_ends_with_an_uninterrupted_runs_weights(tmp_path):
    """Three processes: a run never killed; the same run killed with SIGKILL in phase 2's
    second epoch; `keras-vgg finetune --resume` of the killed one. The resumed run ends with
    the same weights (max abs diff 0) and the same metrics.json as the uninterrupted one."""
    # Early stopping and learning-rate reduction on: their counters must survive the kill too.
    recipe = tiny({"phases.1.epochs": 4, "data.builtin_images_per_class": 6,
                   "data.test_split": 0.34, "data.augment": ["flip", "rotation"],
                   "early_stopping_patience": 2, "reduce_lr_patience": 1}).to_dict()

    def run(run_dir, kill_at):
        return subprocess.run([sys.executable, "-c", KILLED_RUN, str(run_dir), json.dumps(recipe),
                               json.dumps(kill_at)], capture_output=True, text=True,
                              timeout=PROCESS_TIMEOUT)

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run(whole, [-1, -1]).returncode == 0
    assert run(killed, [2, 1]).returncode == -signal.SIGKILL
    assert [row["epoch"] for row in read_log(killed / "training_log.csv")] == [0, 1]
    # Early stopping ended phase 2 at epoch 3 of 4, counting epoch 1 from before the kill.
    assert _figures(whole)["final"]["stopped_early"] == ["phase2"]
    assert [row["epoch"] for row in read_log(whole / "training_log.csv")] == [0, 1, 2, 3]
    resumed = subprocess.run([sys.executable, "-m", "keras_vgg.cli", "finetune", "--resume",
                              "--run-dir", str(killed)], capture_output=True, text=True,
                             timeout=PROCESS_TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _figures(killed) == _figures(whole)
    for name in ("best.keras", "phase2.weights.h5"):
        a, b = (keras.saving.load_model(folder / "best.keras") for folder in (whole, killed))
        if name != "best.keras":
            a.load_weights(whole / name)
            b.load_weights(killed / name)
        diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                   for x, y in zip(a.weights, b.weights, strict=True))
        print(f"{name}: max abs diff {diff}")
        assert diff == 0.0, name


# -- the run directory is never overwritten by accident ---------------------------------------


def test_existing_run_dir_needs_overwrite_or_resume(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    # in Python the error names the argument (the command line rewrites it to --overwrite)
    with pytest.raises(ValueError, match=r"overwrite=True") as refused:
        finetune(tiny(), run_dir=run, verbose=0)
    assert "--overwrite" not in str(refused.value)
    assert (run / "precious.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="Nothing to resume"):
        finetune(tiny(), run_dir=run, resume=True, verbose=0)
    finetune(tiny({"phases.1.epochs": 0}), run_dir=run, overwrite=True, verbose=0)
    assert not (run / "precious.txt").exists() and (run / "best.keras").exists()
    with pytest.raises(ValueError, match="complete"):
        finetune(None, run_dir=run, resume=True, verbose=0)


def test_resume_refuses_a_changed_recipe(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny(), run_dir=run, callbacks=[Interrupt(0, 0)], verbose=0)
    with pytest.raises(ValueError, match=r"differ.*data\.batch_size"):
        finetune(tiny({"data.batch_size": 4}), run_dir=run, resume=True, verbose=0)


class CacheFiles(keras.callbacks.Callback):
    """The files under a folder when training ends (before the run drops its scratch)."""

    def __init__(self, folder):
        super().__init__()
        self.folder, self.files = folder, None

    def on_train_end(self, logs=None):
        self.files = sorted(p.name for p in self.folder.glob("*"))


def test_disk_cache_is_used_and_dropped_when_the_run_completes(tmp_path):
    seen = CacheFiles(tmp_path / "run" / "cache")
    result = finetune(tiny({"data.cache": "disk", "phases.1.epochs": 0}), run_dir=tmp_path / "run",
                      callbacks=[seen], verbose=0)
    assert result.best_model.exists()
    # tf.data's file cache: an index and a data shard per split, written in the first epoch.
    assert seen.files == ["train.data-00000-of-00001", "train.index",
                          "val.data-00000-of-00001", "val.index"]
    assert not (tmp_path / "run" / "cache").exists()


def test_fc_head_fine_tunes_from_a_weights_file(tmp_path):
    """head="fc" keeps fc1/fc2 from the weights; the weights' preprocessing reaches the run."""
    from keras_vgg import VGG11
    from keras_vgg.convert import save_converted
    from keras_vgg.preprocessing import Preprocessing

    source = VGG11(input_shape=(32, 32, 3))  # 1000 classes, as a published file
    source.preprocessing = Preprocessing("tf")
    path = save_converted(source, str(tmp_path / "vgg11_32.weights.h5"), "vgg11")
    recipe = tiny({"model.head": "fc", "model.weights": path, "phases.1.epochs": 0,
                   "data.augment": []})
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    assert result.metrics["final"]["preprocessing"] == "tf"
    best = keras.saving.load_model(result.best_model)
    base = best.get_layer("base")
    for name in ("block1_conv1", "fc1", "fc2"):  # phase 1 froze the whole base
        for kept, loaded in zip(base.get_layer(name).get_weights(),
                                source.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(kept, loaded)


def test_bad_data_leaves_no_run_dir(tmp_path):
    with pytest.raises(ValueError, match="data"):
        finetune(tiny({"data.source": str(tmp_path / "missing")}), run_dir=tmp_path / "run",
                 verbose=0)
    assert not (tmp_path / "run").exists()


def test_folder_with_bad_files_trains_and_reports_what_it_skipped(tmp_path):
    from PIL import Image

    root = make_shapes(tmp_path / "data", images_per_class=4)
    (root / "circle" / "notes.txt").write_text("not an image")
    (root / "square" / "broken.png").write_bytes(
        (root / "square" / "square_0000.png").read_bytes()[:100])
    Image.new("L", (40, 40), 128).save(root / "cross" / "gray.png")
    Image.new("RGBA", (40, 40), (255, 0, 0, 128)).save(root / "cross" / "rgba.png")
    (root / "empty").mkdir()
    result = finetune(tiny({"data.source": str(root), "phases.1.epochs": 0}),
                      run_dir=tmp_path / "run", verbose=0)
    report = json.loads((result.run_dir / "data_report.json").read_text())
    assert sorted(os.path.basename(s["file"]) for s in report["skipped"]) == [
        "broken.png", "notes.txt"]
    assert sorted(os.path.basename(c["file"]) for c in report["converted"]) == [
        "gray.png", "rgba.png"]
    assert report["dropped_classes"] == [{"class": "empty", "reason": "no usable images"}]
    assert report["classes"] == ["circle", "cross", "square", "stripes", "triangle"]
    assert sum(report["train_counts"]) + sum(report["val_counts"]) == 22


def test_tfds_dataset_through_the_recipe(tmp_path, tiny_tfds, offline):
    """A real tfds dataset (conftest's tiny_tfds), prepared by the run itself into the recipe's
    data_dir, fine-tuned and scored on its held-out split."""
    recipe = tiny({"data.source": f"tfds:{tiny_tfds.name}",
                   "data.data_dir": str(tiny_tfds.data_dir), "data.train_split": "train",
                   "data.val_split": "test", "phases.1.epochs": 0})
    result = finetune(recipe, run_dir=tmp_path / "r", verbose=0)
    assert result.metrics["final"]["class_names"] == tiny_tfds.classes
    matrix = np.array(result.metrics["confusion_matrix"])
    assert matrix.sum(axis=1).tolist() == tiny_tfds.counts["test"]  # [2, 1, 1]
    assert (tiny_tfds.data_dir / tiny_tfds.name / "1.0.0" / "dataset_info.json").is_file()
    assert json.loads((result.run_dir / "recipe.json").read_text())["data"]["data_dir"] == str(
        tiny_tfds.data_dir)
    assert offline == []  # no host was asked for


# -- small pieces -----------------------------------------------------------------------------


def test_history_plot_ticks_whole_epochs(tmp_path):
    from keras_vgg.finetune.report import plot_history

    rows = [{"epoch": e, "loss": 1.0, "val_loss": 1.0, "accuracy": 0.5, "val_accuracy": 0.5}
            for e in range(2)]
    for ticks in plot_history(rows, tmp_path / "history.png"):
        assert ticks and all(t == int(t) for t in ticks)
    assert (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"


def test_class_weights_balanced():
    weights = class_weights(tiny(), np.array([0, 0, 0, 1]), 2)
    assert weights == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}
    assert class_weights(tiny({"class_weight": "none"}), np.array([0, 1]), 2) is None


def test_preprocessing_follows_the_weights():
    assert preprocessing_mode(tiny()).mode == "torch"
    assert preprocessing_mode(tiny({"model.name": "vgg16", "model.weights": "imagenet"})
                              ).mode == "caffe"
    assert preprocessing_mode(tiny({"model.name": "vgg11", "model.weights": "imagenet"})
                              ).mode == "torch"
    assert preprocessing_mode(tiny({"model.preprocessing": "tf"})).mode == "tf"
    with pytest.raises(ValueError, match=r"weights='some.weights.h5' \(no such file\)"):
        tiny({"model.weights": "some.weights.h5"})


def test_matconvnet_weights_fine_tune_and_export_with_their_mean_pixel(tmp_path):
    """A recipe on a MatConvNet file trains on x - mean pixel of its average image, records
    it in metrics.json, and `keras-vgg export` of the run uses it."""
    from test_weights import write_mat

    from keras_vgg.cli import main

    mat = write_mat(tmp_path / "vgg_f.mat", "vgg_f", 64)
    recipe = tiny({"model.name": "vgg_f", "model.weights": str(mat), "model.image_size": 64,
                   "phases.1.epochs": 0, "data.augment": []})
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    recorded = result.metrics["final"]["preprocessing"]
    assert recorded == {"mode": "mean_image", "mean": [120.0, 115.0, 100.0]}
    assert main(["export", str(tmp_path / "run"), "--format", "saved_model", "-o",
                 str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "export_report.json").read_text())
    assert report["preprocessing"] == recorded
    assert report["exports"][0]["max_abs_diff"] <= 1e-4
