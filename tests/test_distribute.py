"""tf.distribute: MirroredStrategy on 2 logical CPUs, MultiWorkerMirroredStrategy with 2 local
processes, and the precision switches. Each strategy runs in a fresh Python process: logical
devices and TF_CONFIG must be set before TensorFlow starts."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_vgg.recipes import Recipe, finetune
from keras_vgg.recipes.distribute import STRATEGIES, make_strategy
from keras_vgg.recipes.report import read_log

TINY = dict(name="tiny", data="builtin", model="vgg11", image_size=32,
            builtin_images_per_class=8, augment=[], head_dropout=0.0, phase1_epochs=2,
            phase2_epochs=1, phase2_lr=1e-5, early_stopping_patience=0, reduce_lr_patience=0,
            class_weight="none", tensorboard=False)

RUN = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    if os.environ.get("LOGICAL_CPUS"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(os.environ["LOGICAL_CPUS"]))
    from keras_vgg.recipes import Recipe, finetune
    for run_dir, values in json.loads(sys.argv[1]):
        finetune(Recipe(**values).validate(), run_dir=run_dir, verbose=0)
""")


def run_recipes(runs, timeout=300, **env):
    """Start a Python process that runs each (run_dir, recipe values) in turn."""
    return subprocess.Popen(
        [sys.executable, "-c", RUN, json.dumps(runs)], env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process, timeout=300):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def losses(run_dir):
    return [row["loss"] for row in read_log(run_dir / "training_log.csv")]


def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
    """Per-replica batch 8 on 2 replicas = global batch 16 on one device: same losses."""
    runs = [(str(tmp_path / "mirrored"), dict(TINY, strategy="mirrored", batch_size=8)),
            (str(tmp_path / "single"), dict(TINY, strategy="default", batch_size=16))]
    finished(run_recipes(runs, LOGICAL_CPUS="2"))
    mirrored, single = losses(tmp_path / "mirrored"), losses(tmp_path / "single")
    assert len(mirrored) == len(single) == 3
    # Summation order differs across replicas; Adam's first steps (m / sqrt(v), about the sign
    # of each gradient) turn that noise into updates of full size for near-zero gradients, so
    # the epochs agree to about 2e-4, not to float precision.
    np.testing.assert_allclose(mirrored, single, rtol=1e-3)
    assert json.loads((tmp_path / "mirrored" / "recipe.json").read_text())["batch_size"] == 8


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_on_localhost_finish_and_agree_on_the_weights(tmp_path):
    """Keras 3's fit fails under MultiWorkerMirroredStrategy; the recipe's own loop runs."""
    import h5py

    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = [
        run_recipes([(str(tmp_path / f"worker{i}"),
                      dict(TINY, strategy="multi_worker", batch_size=8, tensorboard=True))],
                    TF_CONFIG=json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}}))
        for i in range(2)
    ]
    for worker in workers:
        finished(worker, timeout=240)

    def weights(run):
        with h5py.File(tmp_path / run / "phase2.weights.h5") as f:
            arrays = []
            f.visititems(lambda name, item: arrays.append(item[()])
                         if isinstance(item, h5py.Dataset) else None)
            return arrays

    first, second = weights("worker0"), weights("worker1")
    assert len(first) == len(second) > 10
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    log = losses(tmp_path / "worker0")
    assert len(log) == 3 and all(np.isfinite(log))
    assert log == losses(tmp_path / "worker1")


def test_mixed_precision_and_xla_train_and_keep_the_classifier_float32(tmp_path):
    import keras

    recipe = Recipe(**dict(TINY, phase1_epochs=1, batch_size=16, mixed_precision=True,
                           jit_compile=True)).validate()
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
        Recipe(strategy="horovod").validate()
    with pytest.raises(ValueError, match="mixed_precision"):
        Recipe(mixed_precision="yes").validate()


def test_cli_flags_reach_the_recipe(monkeypatch, capsys):
    import keras_vgg.recipes
    from keras_vgg.cli import main

    seen = []

    def fake_finetune(recipe, **kwargs):
        seen.append(recipe)
        raise ValueError("stopped here")

    monkeypatch.setattr(keras_vgg.recipes, "finetune", fake_finetune)
    assert main(["finetune", "--strategy", "mirrored", "--mixed-precision", "--jit-compile",
                 "--batch-size", "8"]) == 2
    assert (seen[0].strategy, seen[0].mixed_precision, seen[0].jit_compile,
            seen[0].batch_size) == ("mirrored", True, True, 8)
    assert main(["finetune", "--strategy", "horovod"]) == 2
    assert "Expected `strategy` to be one of ['default', 'mirrored', 'multi_worker', 'tpu']" in (
        capsys.readouterr().err)
