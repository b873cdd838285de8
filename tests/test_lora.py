"""LoRA phases (keras_vgg.finetune.lora): adapters on the kernels a phase trains, the exact
number of parameters they train, best.keras merged into a plain VGG (safe_mode, a fresh
process, the adapted model's predictions), the bad inputs refused with the key, and resume.
The two tests of a LoRA run are marked ``backend`` (also run under jax and torch)."""

import json
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_vgg.finetune import Recipe, finetune, load_recipe
from keras_vgg.finetune.lora import adapted
from keras_vgg.finetune.report import read_log
from test_finetune_train import KILLED_RUN  # the same SIGKILL driver as the plain run

TINY = {"name": "tiny", "model.name": "vgg11_bn", "model.image_size": 32,
        "data.builtin_images_per_class": 6, "data.batch_size": 8, "data.augment": [],
        "tensorboard": False, "early_stopping_patience": 0, "reduce_lr_patience": 0,
        "mixed_precision": False}
RANK = 4
# One LoRA phase on blocks 4 and 5 of VGG11-BN: its four 3x3 convs (256->512, then 512->512).
LORA_PHASE = {"epochs": 1, "lr": 1e-3, "freeze": "block3", "lora_rank": RANK}
PROBE = np.random.default_rng(0).uniform(-2, 2, (4, 32, 32, 3)).astype("float32")
PROCESS_TIMEOUT = 600  # seconds; a tiny run takes about 20


def tiny(changes=None):
    return Recipe().but({**TINY, "phases": [LORA_PHASE], **(changes or {})})


class Adapted(keras.callbacks.Callback):
    """What the adapted model predicts on PROBE after each epoch (best.keras is saved before
    this runs), and its fixed kernels and biases at the start and the end of the fit."""

    def __init__(self):
        super().__init__()
        self.predicted, self.fixed = {}, []

    def _fixed(self):
        return {f"{layer.name}/{i}": np.array(v) for layer in adapted(self.model)
                for i, v in enumerate([layer._kernel, layer.bias])}

    def on_train_begin(self, logs=None):
        self.fixed.append(self._fixed())

    def on_epoch_end(self, epoch, logs=None):
        self.predicted[epoch] = keras.ops.convert_to_numpy(self.model(PROBE, training=False))

    def on_train_end(self, logs=None):
        self.fixed.append(self._fixed())


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    run, watch = tmp_path_factory.mktemp("lora") / "run", Adapted()
    result = finetune(tiny(), run_dir=run, callbacks=[watch], verbose=0)
    return result, watch


LOAD_PLAIN = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    import keras_vgg  # registers VGGModel, as for any best.keras
    model = keras.saving.load_model(sys.argv[1], safe_mode=True)
    configs = json.dumps(keras.saving.serialize_keras_object(model))
    np.save(sys.argv[2], keras.ops.convert_to_numpy(model(np.load(sys.argv[3]), training=False)))
    print(json.dumps({"lora_in_config": "lora" in configs,
                      "lora_weights": [w.path for w in model.weights if "lora" in w.path],
                      "class": type(model).__name__}))
""")


@pytest.mark.backend
def test_merged_best_keras_is_plain_and_predicts_what_the_adapted_model_did(lora_run, tmp_path):
    """best.keras, loaded with safe_mode=True in a fresh process, has no LoRA in its config
    nor among its weights and predicts what the adapted model predicted after the epoch that
    saved it."""
    result, watch = lora_run
    np.save(tmp_path / "probe.npy", PROBE)
    out = subprocess.run([sys.executable, "-c", LOAD_PLAIN, str(result.best_model),
                          str(tmp_path / "out.npy"), str(tmp_path / "probe.npy")],
                         capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert out.returncode == 0, out.stderr[-2000:]
    said = json.loads(out.stdout.strip().splitlines()[-1])
    assert said == {"lora_in_config": False, "lora_weights": [], "class": "VGGModel"}
    diff = float(np.max(np.abs(np.load(tmp_path / "out.npy") - watch.predicted[0])))
    print(f"best.keras (fresh process, safe_mode) vs the adapted model: max abs diff {diff}")
    assert diff <= 1e-6
    recorded = result.metrics["lora"]["phase1"]["max_abs_diff"]
    print(f"metrics.json lora.phase1.max_abs_diff: {recorded}")
    assert recorded <= 1e-6


@pytest.mark.backend
def test_a_lora_phase_trains_the_adapters_bn_and_head_alone(lora_run):
    """Keras's shapes: A (3, 3, in, R) and B (R, out) per 3x3 conv, R * (9 in + out) in all;
    plus the unfrozen blocks' BN scales and offsets (bn_training: no weights) and the head.
    The fixed kernels and biases end the phase as they began it."""
    result, watch = lora_run
    convs = [(256, 512), (512, 512), (512, 512), (512, 512)]  # block4_conv1..block5_conv2
    adapters = sum(RANK * (9 * c_in + c_out) for c_in, c_out in convs)
    bn = 2 * 512 * len(convs)
    head = 512 * 5 + 5  # 5 shapes
    figures = result.metrics["lora"]["phase1"]
    print(f"trainable parameters of the LoRA phase: {figures['trainable_params']} "
          f"(adapters {adapters}, BN {bn}, head {head})")
    assert figures["adapter_params"] == adapters == 72704
    assert figures["trainable_params"] == adapters + bn + head == 79365
    assert figures["layers"] == ["block4_conv1", "block4_conv2", "block5_conv1", "block5_conv2"]
    assert figures["rank"] == RANK
    begin, end = watch.fixed
    assert begin.keys() == end.keys() and len(begin) == 8
    for name in begin:
        np.testing.assert_array_equal(begin[name], end[name], err_msg=name)


def test_the_override_spells_the_rank_as_a_dotted_key():
    recipe = Recipe().but({"phases.1.lora_rank": 8})  # --set phases.1.lora_rank=8
    assert [phase.lora_rank for phase in recipe.phases] == [0, 8]
    assert load_recipe("builtin", ["phases.0.lora_rank=8"]).phases[0].lora_rank == 8


@pytest.mark.parametrize("changes, message", [
    ({"phases.0.lora_rank": -1}, "Expected `phases.0.lora_rank` >= 0 (0: no LoRA; R > 0: "
                                 "rank-R adapters). Received: phases.0.lora_rank=-1"),
    ({"phases.0.lora_rank": "8"}, "Expected `phases.0.lora_rank` to be int. "
                                  "Received: phases.0.lora_rank='8'"),
    ({"phases.0.freeze": "all"}, "Expected `phases.0.lora_rank` = 0 on a phase that trains "
                                 "nothing of the base"),
    ({"feature_cache": True}, "Expected `phases.0.lora_rank` = 0 with feature_cache=true"),
], ids=["negative", "not-an-int", "freeze-all", "feature-cache"])
def test_a_bad_rank_is_refused_at_validation(changes, message):
    with pytest.raises(ValueError) as error:
        tiny(changes)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize("changes, message", [
    # block1_conv1's kernel is (3, 3, 3, 64): a 27 x 64 matrix
    ({"phases.0.freeze": "none", "phases.0.lora_rank": 28},
     "Expected `phases.0.lora_rank` <= 27, the size of block1_conv1 (min(in, out) of its "
     "(3, 3, 3, 64) kernel), the smallest layer phase 0 adapts. Received: "
     "phases.0.lora_rank=28"),
    ({"phases.0.freeze": "block5"},
     "Expected `phases.0.lora_rank` = 0: phases.0.freeze='block5' leaves no conv or dense "
     "layer of the base to adapt. Received: phases.0.lora_rank=4"),
], ids=["rank-above-size", "nothing-to-adapt"])
def test_a_rank_the_model_cannot_take_is_refused_before_anything_is_written(
        tmp_path, changes, message):
    run = tmp_path / "run"
    with pytest.raises(ValueError) as error:
        finetune(tiny(changes), run_dir=run, verbose=0)
    assert str(error.value) == message
    assert not run.exists()


# -- resume -----------------------------------------------------------------------------------


class EpochWeights(keras.callbacks.Callback):
    """The weights (fixed kernels and adapters included) at the end of each epoch, and at the
    start of the first epoch this process runs (after the backup is put back)."""

    def __init__(self):
        super().__init__()
        self.ends, self.first = {}, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first is None:
            self.first = (epoch, [np.array(w) for w in self.model.get_weights()])

    def on_epoch_end(self, epoch, logs=None):
        self.ends[epoch] = [np.array(w) for w in self.model.get_weights()]


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == (1, 1):
            raise KeyboardInterrupt("killed")


def test_an_interrupted_lora_phase_resumes_with_its_adapters(tmp_path):
    """Interrupted in the LoRA phase's second epoch, the resumed run starts from the first
    epoch's fixed kernels and adapters exactly (Keras's backup alone holds the merged kernel
    and would start the adapters at zero), and finishes with a plain best.keras."""
    recipe = tiny({"phases.0.epochs": 2})
    run, first = tmp_path / "run", EpochWeights()
    with pytest.raises(KeyboardInterrupt):
        finetune(recipe, run_dir=run, callbacks=[first, Interrupt()], verbose=0)
    resumed = EpochWeights()
    result = finetune(None, run_dir=run, resume=True, callbacks=[resumed], verbose=0)
    epoch, weights = resumed.first
    assert epoch == 1
    for restored, kept in zip(weights, first.ends[0], strict=True):
        np.testing.assert_array_equal(restored, kept)
    assert [row["epoch"] for row in read_log(run / "training_log.csv")] == [0, 1]
    assert result.metrics["lora"]["phase1"]["max_abs_diff"] <= 1e-6
    assert not adapted(keras.saving.load_model(result.best_model, safe_mode=True))
    assert not (run / "backup").exists()


@pytest.mark.slow
def test_kill_nine_in_a_lora_phase_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    """A run never killed; the same run killed with SIGKILL in its LoRA phase's second epoch;
    `keras-vgg finetune --resume` of the killed one: the same metrics.json and the same
    best.keras and phase weights (max abs diff 0)."""
    # (augmented, as tests/test_finetune_train.py's: no feature cache in phase 1)
    recipe = tiny({"phases": [{"epochs": 1, "freeze": "all"}, {**LORA_PHASE, "epochs": 3}],
                   "data.augment": ["flip"]}).to_dict()

    def run(run_dir, kill_at):
        return subprocess.run([sys.executable, "-c", KILLED_RUN, str(run_dir), json.dumps(recipe),
                               json.dumps(kill_at)], capture_output=True, text=True,
                              timeout=PROCESS_TIMEOUT)

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run(whole, [-1, -1]).returncode == 0
    assert run(killed, [2, 1]).returncode == -signal.SIGKILL
    assert [row["epoch"] for row in read_log(killed / "training_log.csv")] == [0, 1]
    resumed = subprocess.run([sys.executable, "-m", "keras_vgg.cli", "finetune", "--resume",
                              "--run-dir", str(killed)], capture_output=True, text=True,
                             timeout=PROCESS_TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    figures = [json.loads((folder / "metrics.json").read_text()) for folder in (whole, killed)]
    for metrics in figures:
        metrics.pop("seconds")
    assert figures[0] == figures[1]
    for name in ("best.keras", "phase2.weights.h5"):
        a, b = (keras.saving.load_model(folder / "best.keras") for folder in (whole, killed))
        if name != "best.keras":
            a.load_weights(whole / name)
            b.load_weights(killed / name)
        diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                   for x, y in zip(a.weights, b.weights, strict=True))
        print(f"{name}: killed and resumed vs uninterrupted, max abs diff {diff}")
        assert diff == 0.0, name
