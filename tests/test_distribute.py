"""tf.distribute: MirroredStrategy on 2 logical CPUs, MultiWorkerMirroredStrategy with 2 local
processes, the multi-worker loop against ``fit``, and the precision switches. Each strategy
runs in a fresh Python process: logical devices and TF_CONFIG must be set before TensorFlow
starts."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from test_finetune_train import Interrupt

from keras_vgg.finetune import Recipe, finetune
from keras_vgg.finetune.distribute import STRATEGIES, make_strategy
from keras_vgg.finetune.report import read_log

# Recipes as {dotted key: value}: Recipe().but(values) in the process that runs them.
TINY = {"name": "tiny", "data.source": "builtin", "model.name": "vgg11", "model.image_size": 32,
        "data.builtin_images_per_class": 8, "data.augment": [], "model.head_dropout": 0.0,
        "phases.0.epochs": 2, "phases.1.epochs": 1, "phases.1.lr": 1e-5,
        "early_stopping_patience": 0, "reduce_lr_patience": 0, "class_weight": "none",
        "tensorboard": False}

# A fresh process running a tiny recipe or two (TensorFlow's import, a strategy's set-up): about
# a minute; a hung one (a worker waiting for its peer) fails its test at this bound instead of
# holding CI.
CHILD_TIMEOUT_S = 400

RUN = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    if os.environ.get("LOGICAL_CPUS"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(os.environ["LOGICAL_CPUS"]))
    from keras_vgg.finetune import Recipe, finetune
    for run_dir, values in json.loads(sys.argv[1]):
        finetune(Recipe().but(values), run_dir=run_dir, verbose=0)
""")


def run_recipes(runs, **env):
    """Start a Python process that runs each (run_dir, recipe values: {dotted key: value}) in
    turn (wait for it with ``finished``)."""
    return subprocess.Popen(
        [sys.executable, "-c", RUN, json.dumps(runs)], env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process, timeout=CHILD_TIMEOUT_S):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=timeout)
        pytest.fail(f"timed out after {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def losses(run_dir):
    return [row["loss"] for row in read_log(run_dir / "training_log.csv")]


def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
    """Per-replica batch 8 on 2 replicas = global batch 16 on one device: same losses."""
    runs = [(str(tmp_path / "mirrored"), {**TINY, "strategy": "mirrored", "data.batch_size": 8}),
            (str(tmp_path / "single"), {**TINY, "strategy": "default", "data.batch_size": 16})]
    finished(run_recipes(runs, LOGICAL_CPUS="2"))
    mirrored, single = losses(tmp_path / "mirrored"), losses(tmp_path / "single")
    assert len(mirrored) == len(single) == 3
    # Summation order differs across replicas; Adam's first steps (m / sqrt(v), about the sign
    # of each gradient) turn that noise into updates of full size for near-zero gradients, so
    # the epochs agree to about 2e-4, not to float precision.
    np.testing.assert_allclose(mirrored, single, rtol=1e-3)
    recorded = json.loads((tmp_path / "mirrored" / "recipe.json").read_text())
    assert recorded["data"]["batch_size"] == 8


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def h5_arrays(path):
    import h5py

    with h5py.File(path) as f:
        arrays = []
        f.visititems(lambda name, item: arrays.append(item[()])
                     if isinstance(item, h5py.Dataset) else None)
        return arrays


def test_two_workers_on_localhost_finish_and_agree_on_the_weights(tmp_path):
    """Keras 3's fit fails under MultiWorkerMirroredStrategy; the recipe's own loop runs."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = [
        run_recipes([(str(tmp_path / f"worker{i}"),
                      {**TINY, "strategy": "multi_worker", "data.batch_size": 8,
                       "tensorboard": True})],
                    TF_CONFIG=json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}}))
        for i in range(2)
    ]
    for worker in workers:
        finished(worker)

    first, second = (h5_arrays(tmp_path / run / "phase2.weights.h5")
                     for run in ("worker0", "worker1"))
    assert len(first) == len(second) > 10
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    log = losses(tmp_path / "worker0")
    assert len(log) == 3 and all(np.isfinite(log))
    assert log == losses(tmp_path / "worker1")

    # Each worker listed and decoded only its share: disjoint, and together every file.
    reports = [json.loads((tmp_path / run / "data_report.json").read_text())
               for run in ("worker0", "worker1")]
    for split, total in (("train", 30), ("val", 10)):  # 5 classes x 8 images, a fifth held out
        shares = [set(r["worker_share"][split]) for r in reports]
        assert not shares[0] & shares[1]
        assert len(shares[0] | shares[1]) == total == sum(r[f"{split}_counts"][i] for r in reports
                                                          for i in range(5))
    assert [r["worker_share"]["worker"] for r in reports] == [0, 1]
    assert [r["decode"]["images"] for r in reports] == [20, 20]
    # The validation set is scored once, its shares combined: both workers report all of it.
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text())
               for run in ("worker0", "worker1")]
    assert metrics[0]["confusion_matrix"] == metrics[1]["confusion_matrix"]
    assert sum(map(sum, metrics[0]["confusion_matrix"])) == 10


# -- the multi-worker loop against fit ---------------------------------------------------------
# One process runs the recipe under strategy="multi_worker" with a one-worker TF_CONFIG (so the
# recipe's own loop, loop._loop_fit, trains), another under "default" (Keras's fit), on
# the same imbalanced data, seed and recipe, with every feature the loop reimplements switched
# on: balanced class weights, early stopping (restore_best_weights), ReduceLROnPlateau, a run
# killed mid-epoch and resumed (BackupAndRestore's start epoch), and phase 2 starting where
# the early-stopped phase 1 ended. With one worker the two must agree epoch by epoch.

PARITY = {"name": "parity", "model.name": "vgg11", "model.image_size": 32, "data.augment": [],
          "model.head_dropout": 0.0, "data.batch_size": 8, "data.validation_split": 0.25,
          "phases.0.epochs": 8, "phases.0.lr": 0.05, "phases.1.epochs": 1, "phases.1.lr": 1e-4,
          "early_stopping_patience": 2, "reduce_lr_patience": 1, "class_weight": "balanced",
          "tensorboard": False}
PARITY_KILL = (1, 1)  # (epoch, batch): inside phase 1, before early stopping


class EpochRecord(keras.callbacks.Callback):
    """Each epoch's logs and the optimizer's learning rate after every callback ran."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.rows.append(dict(epoch=epoch, lr=lr, **{k: float(v) for k, v in logs.items()}))


KillAt = Interrupt  # tests/test_finetune_train.py's: raises at an (absolute) epoch and batch


def imbalanced_shapes(root):
    """3 classes of the built-in shapes, 16 / 8 / 4 images: the class weights matter."""
    from keras_vgg.finetune.builtin import make_shapes

    shapes, data = make_shapes(root / "shapes", images_per_class=16), root / "imbalanced"
    for shape, count in (("circle", 16), ("cross", 8), ("square", 4)):
        (data / shape).mkdir(parents=True)
        for file in sorted((shapes / shape).iterdir())[:count]:
            shutil.copy(file, data / shape / file.name)
    return data


def sgd_step_check(strategy):
    """loop.fit on a Dense model with plain SGD: unlike Adam, SGD moves the weights in
    proportion to the gradient, so a wrong loss scale or normalisation shows in them. Imbalanced
    labels, balanced class weights, a last batch of 6 of 8, a seeded shuffle."""
    import tensorflow as tf

    from keras_vgg.finetune import Recipe
    from keras_vgg.finetune.data import shuffle_batch
    from keras_vgg.finetune.loop import FitPlan, fit
    from keras_vgg.finetune.phase import class_weights

    rng = np.random.default_rng(0)
    x = rng.normal(size=(22, 16)).astype("float32")
    y = np.repeat(np.arange(3, dtype="int32"), [13, 6, 3])
    recipe = Recipe().but({"data.batch_size": 8, "class_weight": "balanced"})
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile(keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    history = fit(
        model, shuffle_batch(tf.data.Dataset.from_tensor_slices((x, y)), recipe),
        tf.data.Dataset.from_tensor_slices((x[::3], y[::3])).batch(8),
        FitPlan(epochs=4, class_weight=class_weights(recipe, y, 3), strategy=strategy,
                verbose=0))
    return {"history": history.history,
            "weights": [np.asarray(w).tolist() for w in model.get_weights()]}


def parity_worker(run_dir, data, strategy_name):
    """The subprocess side (``python tests/test_distribute.py RUN_DIR DATA STRATEGY``): the
    recipe killed and resumed, then the SGD check; writes STRATEGY.json beside RUN_DIR."""
    from keras_vgg.finetune import Recipe, distribute, finetune, loop

    loop_calls = []
    loop_fit = loop._loop_fit

    def counted(*args, **kwargs):
        loop_calls.append(1)
        return loop_fit(*args, **kwargs)

    loop._loop_fit = counted
    recipe = Recipe().but({**PARITY, "data.source": data, "strategy": strategy_name})
    first, resumed = EpochRecord(), EpochRecord()
    try:
        finetune(recipe, run_dir=run_dir, callbacks=[first, KillAt(*PARITY_KILL)], verbose=0)
        killed = False
    except KeyboardInterrupt:
        killed = True
        finetune(None, run_dir=run_dir, resume=True, callbacks=[resumed], verbose=0)
    sgd = sgd_step_check(distribute.make_strategy(strategy_name))
    Path(run_dir).with_name(f"{strategy_name}.json").write_text(json.dumps(
        {"killed": killed, "first": first.rows, "resumed": resumed.rows,
         "loop_calls": len(loop_calls), "sgd": sgd}))


def test_multi_worker_loop_matches_fit_on_one_worker(tmp_path):
    """The loop's losses, accuracies, learning rates, epochs and weights are fit's (measured:
    weights bit for bit, logged metrics to 1e-7: the loop sums in float64, fit in float32)."""
    data = imbalanced_shapes(tmp_path)
    one_worker = {"cluster": {"worker": [f"localhost:{free_ports(1)[0]}"]},
                  "task": {"type": "worker", "index": 0}}
    processes = [
        subprocess.Popen([sys.executable, __file__, str(tmp_path / name), str(data), name],
                         env={**os.environ, **env}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for name, env in (("multi_worker", {"TF_CONFIG": json.dumps(one_worker)}),
                          ("default", {}))]
    for process in processes:
        finished(process)
    loop, fit = (json.loads((tmp_path / f"{name}.json").read_text())
                 for name in ("multi_worker", "default"))
    # The multi-worker process trained with the loop (two fits before the kill, then the
    # resumed phase 1 and phase 2, then the SGD check); the default one with fit alone.
    assert (loop["loop_calls"], fit["loop_calls"]) == (4, 0)

    # What fit did, so what the loop must do: killed in epoch 1 and resumed there, stopped
    # early in phase 1 (restoring its best epoch), cut the learning rate twice on a plateau,
    # then ran phase 2's one epoch from where phase 1 stopped.
    assert fit["killed"] and [r["epoch"] for r in fit["first"]] == [0]
    assert fit["resumed"][0]["epoch"] == PARITY_KILL[0]
    rows = fit["first"] + fit["resumed"]
    epochs = [r["epoch"] for r in rows]
    assert epochs == list(range(len(epochs)))
    assert 2 < len(epochs) - 1 < PARITY["phases.0.epochs"]  # phase 1 stopped early
    assert min(r["lr"] for r in rows[:-1]) < PARITY["phases.0.lr"] / 4
    assert rows[-1]["lr"] == pytest.approx(PARITY["phases.1.lr"])

    # The loop did the same, epoch by epoch.
    assert loop["killed"] and [r["epoch"] for r in loop["first"] + loop["resumed"]] == epochs
    loop_rows = loop["first"] + loop["resumed"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([r[key] for r in loop_rows], [r[key] for r in rows],
                                   rtol=1e-6, err_msg=key)
    np.testing.assert_allclose([r["lr"] for r in loop_rows], [r["lr"] for r in rows],
                               rtol=1e-6)
    assert losses(tmp_path / "multi_worker") == pytest.approx(
        losses(tmp_path / "default"), rel=1e-6)
    for phase in ("phase1", "phase2"):  # phase 1's after restoring the best epoch's weights
        for a, b in zip(h5_arrays(tmp_path / "multi_worker" / f"{phase}.weights.h5"),
                        h5_arrays(tmp_path / "default" / f"{phase}.weights.h5"), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    # Plain SGD: the loss scale and normalisation show in the weights.
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(loop["sgd"]["history"][key], fit["sgd"]["history"][key],
                                   rtol=1e-6, err_msg=key)
    for a, b in zip(loop["sgd"]["weights"], fit["sgd"]["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_fit_makes_no_variable_inside_the_traced_step():
    """Keras on TensorFlow builds the optimizer's slots and the metrics inside the first trace
    of its train step when the model has no strategy of its own; a variable made inside a
    tf.function makes TensorFlow trace the step twice (2 s of a tiny fine-tune's 7.4 s).
    loop.fit builds them first: no variable is made inside a traced function, and Adam's
    slots and the accuracy's totals exist all the same. (Without it: each weight's momentum
    and velocity, then the metric's total and count.)"""
    import tensorflow as tf

    from keras_vgg.finetune.loop import FitPlan, fit

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the TensorFlow trainer's tracing")
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    data = tf.data.Dataset.from_tensor_slices(
        (np.ones((6, 4, 4, 3), "float32"), np.array([0, 1] * 3))).batch(4)
    inside = []

    def creator(next_creator, **kwargs):
        if tf.inside_function():
            inside.append(kwargs.get("name"))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        fit(model, data, data, FitPlan(epochs=1, verbose=0))
    assert inside == []
    assert len(model.optimizer.variables) == 2 + 2 * len(model.trainable_variables)
    assert model.get_metrics_result()["accuracy"] == 0.5


def test_mixed_precision_and_xla_train_and_keep_the_classifier_float32(tmp_path):
    import keras

    recipe = Recipe().but({**TINY, "phases.0.epochs": 1, "data.batch_size": 16,
                           "mixed_precision": True, "jit_compile": True})
    result = finetune(recipe, run_dir=tmp_path / "run", verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # the global policy comes back
    assert np.isfinite(losses(tmp_path / "run")).all()
    best = keras.saving.load_model(result.best_model)
    assert best.get_layer("base").get_layer("block1_conv1").dtype_policy.name == "mixed_bfloat16"
    assert best.get_layer("head").get_layer("predictions").dtype_policy.name == "float32"
    assert best.output.dtype == "float32"


def test_strategy_names_and_errors(monkeypatch):
    assert STRATEGIES == ("default", "mirrored", "multi_worker", "tpu")
    assert make_strategy("default").num_replicas_in_sync == 1
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="Expected TF_CONFIG with the cluster's workers"):
        make_strategy("multi_worker")
    with pytest.raises(ValueError, match="strategy='tpu' found no TPU"):
        make_strategy("tpu")
    with pytest.raises(ValueError, match="Expected `strategy` to be one of"):
        Recipe().but({"strategy": "horovod"})
    with pytest.raises(ValueError, match="mixed_precision"):
        Recipe().but({"mixed_precision": "yes"})


def test_cli_flags_reach_the_recipe(monkeypatch, capsys):
    import keras_vgg.finetune
    from keras_vgg.cli import main

    seen = []

    def fake_finetune(recipe, **kwargs):
        seen.append(recipe)
        raise ValueError("stopped here")

    monkeypatch.setattr(keras_vgg.finetune, "finetune", fake_finetune)
    assert main(["finetune", "--strategy", "mirrored", "--mixed-precision", "--jit-compile",
                 "--batch-size", "8"]) == 2
    assert (seen[0].strategy, seen[0].mixed_precision, seen[0].jit_compile,
            seen[0].data.batch_size) == ("mirrored", True, True, 8)
    assert main(["finetune", "--strategy", "horovod"]) == 2
    assert "Expected `strategy` to be one of ['default', 'mirrored', 'multi_worker', 'tpu']" in (
        capsys.readouterr().err)


if __name__ == "__main__":  # a worker process of test_multi_worker_loop_matches_fit_on_one_worker
    parity_worker(*sys.argv[1:])
