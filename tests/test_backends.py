"""Every Keras backend: the layers, a fine-tune run with resume, and the strategies.

The whole module is marked ``backend``: CI runs it (with the other ``backend`` tests) under
``KERAS_BACKEND`` = tensorflow, jax and torch. The JAX ``DataParallel`` test starts its own
jax processes (two CPU devices forced by XLA_FLAGS) and then exports their model, so it runs
once, from the tensorflow session.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_vgg.finetune import Recipe, finetune
from keras_vgg.finetune.distribute import make_strategy
from keras_vgg.finetune.report import read_log
from keras_vgg.layers import Conv2D, _small_map_conv

pytestmark = pytest.mark.backend
BACKEND = keras.backend.backend()
# A fresh process training one tiny run (jax or torch, its own imports): a minute or two; a hung
# one (a missed all-reduce, a worker waiting for its peer) fails its test at this bound instead
# of holding CI.
CHILD_TIMEOUT_S = 600


def tiny(changes=None):
    """A tiny two-phase recipe, with ``changes`` ({dotted key: value}) on top."""
    return Recipe().but({
        "name": "tiny", "data.source": "builtin", "model.name": "vgg11", "model.image_size": 32,
        "data.builtin_images_per_class": 4, "data.batch_size": 8,
        "data.augment": ["flip", "rotation"], "phases.0.epochs": 1, "phases.1.epochs": 1,
        "phases.1.lr": 1e-3, "tensorboard": False, "early_stopping_patience": 0,
        "reduce_lr_patience": 0, **(changes or {})})


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (2, 5), (4, 4)])
def test_small_map_convolution_equals_the_convolution(size):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, *size, 16)).astype("float32")
    kernel = rng.normal(size=(3, 3, 16, 8)).astype("float32")
    expected = keras.ops.convert_to_numpy(keras.ops.conv(x, kernel, padding="same"))
    got = keras.ops.convert_to_numpy(_small_map_conv(x, kernel))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    layer = Conv2D(8, 3, padding="same")
    layer.build(x.shape)
    layer.kernel.assign(kernel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)),
                               expected + keras.ops.convert_to_numpy(layer.bias),
                               rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    takes_detour = BACKEND == "jax" and min(size) < 3
    assert layer._small_map(keras.ops.convert_to_tensor(x)) == takes_detour


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def _figures(run):
    """metrics.json without its wall time: every figure a run reports."""
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("seconds")
    return metrics


def test_fine_tune_resumed_after_a_kill_ends_as_an_uninterrupted_run(tmp_path):
    """Both phases with augmentation, dropout, class weights, early stopping and rate
    reduction, and a kill in phase 2, then --resume: the same epochs, weights and figures as a
    run never killed (data order, augmentation and dropout come from (seed, epoch);
    BackupAndRestore restores the weights and optimizer; the callbacks' counters replay the
    log)."""
    from tests.test_finetune_train import Interrupt

    recipe = tiny({"phases.1.epochs": 4, "data.builtin_images_per_class": 6,
                   "data.test_split": 0.34, "early_stopping_patience": 2,
                   "reduce_lr_patience": 1})
    whole = finetune(recipe, run_dir=tmp_path / "whole", verbose=0)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        finetune(recipe, run_dir=run, callbacks=[Interrupt(2, 1)], verbose=0)
    assert [row["epoch"] for row in read_log(run / "training_log.csv")] == [0, 1]
    result = finetune(None, run_dir=run, resume=True, verbose=0)
    epochs = [row["epoch"] for row in read_log(run / "training_log.csv")]
    assert epochs == [row["epoch"] for row in read_log(whole.run_dir / "training_log.csv")]
    resumed, uninterrupted = (keras.saving.load_model(r.best_model) for r in (result, whole))
    final_weights = [_weights(model) for model in (resumed, uninterrupted)]
    for model, r in zip((resumed, uninterrupted), (result, whole)):
        model.load_weights(r.run_dir / "phase2.weights.h5")  # the last epoch's, not the best
    for best_a, best_b, last_a, last_b in zip(*final_weights, _weights(resumed),
                                              _weights(uninterrupted), strict=True):
        np.testing.assert_array_equal(best_a, best_b)
        np.testing.assert_array_equal(last_a, last_b)
    assert _figures(run) == _figures(whole.run_dir)
    final = _figures(run)["final"]
    assert (final["test"]["count"], final["validation"]["count"]) == (10, 5)
    assert final["reported"] == "test" and final["accuracy"] == final["test"]["accuracy"]
    assert (run / "history.png").exists() and (run / "confusion_matrix.png").exists()
    assert resumed.class_names == ["circle", "cross", "square", "stripes", "triangle"]


def test_feature_cache_phase_on_this_backend(tmp_path):
    result = finetune(tiny({"feature_cache": True, "data.augment": [], "phases.1.epochs": 0}),
                      run_dir=tmp_path / "run", verbose=0)
    assert result.feature_cache and result.epochs == 1


def test_tfds_data_fine_tunes_on_this_backend(tiny_tfds_prepared, tmp_path):
    """A real (tiny) tfds dataset through the recipe, augmentation on, both phases."""
    data = tiny_tfds_prepared
    result = finetune(tiny({"data.source": f"tfds:{data.name}", "data.train_split": "train",
                            "data.val_split": "test", "data.data_dir": str(data.data_dir),
                            "data.augment": ["flip"]}),
                      run_dir=tmp_path / "run", verbose=0)
    assert result.epochs == 2
    assert keras.saving.load_model(result.best_model).class_names == data.classes


def test_strategies_this_backend_has():
    assert make_strategy("default").num_replicas_in_sync == 1
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="strategy='default' under KERAS_BACKEND=torch"):
            make_strategy("mirrored")
    with pytest.raises(ValueError, match="Expected `strategy` to be one of"):
        make_strategy("several")


# Arguments: STRATEGY RUN_DIR OUT.npy BATCH, repeated for runs one after another in the
# process (each run's strategy is scoped to it).
DATA_PARALLEL = textwrap.dedent("""
    import sys
    import keras
    import numpy as np
    from keras_vgg.finetune import Recipe, finetune
    for strategy, run_dir, out, batch in zip(*[iter(sys.argv[1:])] * 4):
        recipe = Recipe().but({
            "name": "dp", "data.source": "builtin", "model.name": "vgg11",
            "model.image_size": 32, "data.builtin_images_per_class": 10,
            "data.batch_size": int(batch), "data.augment": [], "model.head_dropout": 0.0,
            "phases": [{"epochs": 1, "lr": 1e-3, "freeze": "block4"}], "tensorboard": False,
            "early_stopping_patience": 0, "reduce_lr_patience": 0, "class_weight": "none",
            "mixed_precision": False, "strategy": strategy})
        result = finetune(recipe, run_dir=run_dir, verbose=0)
        model = keras.saving.load_model(result.best_model)
        images = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype("float32")
        np.save(out, model.predict(images, verbose=0))
        keras.backend.clear_session()
""")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="starts its own jax processes: run once, "
                    "from the tensorflow session")
def test_jax_data_parallel_over_two_devices_matches_one(tmp_path):
    """strategy=mirrored on jax: keras.distribution.DataParallel over 2 forced CPU devices,
    global batch 8 (4 per device; 40 training images, so no batch is left out), against one
    device with batch 8: the same model (its class probabilities on 16 images agree to 1e-3;
    Adam's first steps magnify float rounding in a few of the 9.2M weights to just over
    1e-3). Then strategy=multi_worker: two jax processes, the same model again."""
    pytest.importorskip("jax")
    script = tmp_path / "dp.py"
    script.write_text(DATA_PARALLEL)
    # One process with 2 devices: the one-device run first (no distribution: device 0),
    # then DataParallel over both. XLA aborts a run whose devices miss an all-reduce for 40 s
    # (seen on a loaded machine).
    env = dict(os.environ, KERAS_BACKEND="jax",
               XLA_FLAGS="--xla_force_host_platform_device_count=2 "
                         "--xla_cpu_collective_call_terminate_timeout_seconds=600")
    runs = [("default", 8), ("mirrored", 4)]
    done = subprocess.run([sys.executable, str(script), *[
        str(arg) for strategy, batch in runs for arg in (
            strategy, tmp_path / strategy, tmp_path / f"{strategy}.npy", batch)]],
        env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    probabilities = {}
    for strategy, _ in runs:
        recipe = json.loads((tmp_path / strategy / "recipe.json").read_text())
        assert recipe["strategy"] == strategy
        probabilities[strategy] = np.load(tmp_path / f"{strategy}.npy")
    np.testing.assert_allclose(probabilities["mirrored"], probabilities["default"], atol=1e-3)
    # strategy=multi_worker: two jax processes on localhost (keras.distribution.initialize
    # from KERAS_DISTRIBUTION_* and gloo between them), one CPU device each, 4 images each.
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    workers = [subprocess.Popen(
        [sys.executable, str(script), "multi_worker", str(tmp_path / f"worker{i}"),
         str(tmp_path / f"worker{i}.npy"), "4"], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, KERAS_BACKEND="jax", KERAS_DISTRIBUTION_NUM_PROCESSES="2",
                 KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{port}",
                 KERAS_DISTRIBUTION_PROCESS_ID=str(i))) for i in range(2)]
    try:
        for worker in workers:
            _, err = worker.communicate(timeout=CHILD_TIMEOUT_S)
            assert worker.returncode == 0, err[-3000:]
    finally:
        for worker in workers:  # a hung or failed pair: neither outlives the test
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=CHILD_TIMEOUT_S)
    first, second = (np.load(tmp_path / f"worker{i}.npy") for i in range(2))
    np.testing.assert_array_equal(first, second)  # one model: measured bit for bit
    np.testing.assert_allclose(first, probabilities["default"], atol=1e-3)  # measured 4.5e-8
    from keras_vgg.export import export  # a .keras trained on jax exports on tensorflow

    model = keras.saving.load_model(tmp_path / "default" / "best.keras")
    report = export(model, tmp_path / "export", ["saved_model", "tflite"], ["none"],
                    latency_repeats=1, verbose=False)
    assert report["preprocessing"] == "torch" and report["classes"] == 5
    assert [row["file"] for row in report["exports"]] == ["saved_model", "model_float32.tflite"]
    assert max(row["max_abs_diff"] for row in report["exports"]) <= 1e-4


@pytest.mark.skipif(BACKEND != "tensorflow", reason="starts its own torch process: run once, "
                    "from the tensorflow session")
def test_a_torch_trained_keras_file_exports_on_tensorflow(tmp_path):
    """A run trained under KERAS_BACKEND=torch: its best.keras exports here, checked."""
    pytest.importorskip("torch")
    script = tmp_path / "train.py"
    script.write_text(DATA_PARALLEL)
    done = subprocess.run([sys.executable, str(script), "default", str(tmp_path / "run"),
                           str(tmp_path / "p.npy"), "8"], capture_output=True, text=True,
                          env=dict(os.environ, KERAS_BACKEND="torch"), timeout=CHILD_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    from keras_vgg.export import export

    model = keras.saving.load_model(tmp_path / "run" / "best.keras")
    images = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(images, verbose=0), np.load(tmp_path / "p.npy"),
                               atol=1e-5)  # tensorflow computes what torch computed
    report = export(model, tmp_path / "export", ["saved_model", "tflite"], ["none"],
                    latency_repeats=1, verbose=False)
    assert report["preprocessing"] == "torch" and report["classes"] == 5
    assert max(row["max_abs_diff"] for row in report["exports"]) <= 1e-4


@pytest.mark.skipif(BACKEND == "tensorflow", reason="export runs on tensorflow")
def test_export_on_another_backend_says_to_use_tensorflow(tmp_path):
    from keras_vgg import VGG11
    from keras_vgg.export import export

    model = VGG11(weights=None, input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ValueError, match=f"Received: KERAS_BACKEND={BACKEND}"):
        export(model, tmp_path / "out", preprocessing="caffe")
    with pytest.raises(ValueError, match=r"export\.formats=\['tflite'\]"):
        finetune(tiny({"export.formats": ["tflite"]}), run_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()
