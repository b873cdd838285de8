"""One phase of a fine-tune run: freeze by the recipe, compile, fit with the recipe's
callbacks (best.keras checkpoint, CSV log, early stopping, learning-rate schedule,
TensorBoard, BackupAndRestore), resuming from its backup. ``train`` runs its two phases
with it, ``compress`` its fine-tuning after each pruning step; each passes its
:class:`~keras_vgg.finetune.context.RunContext` and gets the new
:class:`~keras_vgg.run_folder.RunState` back.

Example:
    >>> from keras_vgg.finetune.recipe import Recipe
    >>> from keras_vgg.finetune.phase import class_weights, uses_feature_cache
    >>> recipe = Recipe().but({"data.augment": []})
    >>> uses_feature_cache(recipe), class_weights(recipe, [0, 0, 1], 2)
    (True, {0: 0.75, 1: 1.5})
"""

from __future__ import annotations

import os
import signal
import threading

import keras
import numpy as np

from keras_vgg.batch_norm import inference_model
from keras_vgg.finetune import data as data_lib
from keras_vgg.finetune import distribute
from keras_vgg.finetune import lora
from keras_vgg.finetune.context import RunContext
from keras_vgg.finetune.distillation import label_loss
from keras_vgg.finetune.loop import FitPlan, fit
from keras_vgg.finetune.model import bn_training, freeze
from keras_vgg.finetune.recipe import phase_name
from keras_vgg.finetune.report import read_log
from keras_vgg.precision import with_float32_outputs
from keras_vgg.run_folder import RunState

def inference_precision(recipe) -> str:
    """What the feature cache and the evaluation compute in: the fast precision this machine
    has (``auto``), unless the recipe says ``mixed_precision: false`` (float32 throughout)."""
    return "float32" if recipe.mixed_precision is False else "auto"


def uses_feature_cache(recipe) -> bool:
    """Whether phase 0 trains the head on the base's outputs computed once: asked for
    (``feature_cache: true``), or ``auto`` when it freezes the whole base and nothing
    augments."""
    first = recipe.phases[0]
    if recipe.feature_cache != "auto":
        return recipe.feature_cache and first.epochs > 0
    return first.epochs > 0 and first.freeze == "all" and not recipe.data.augment


def class_weights(recipe, labels, num_classes):
    """Keras ``class_weight``: n / (k * count) per class ("balanced"), or None."""
    if recipe.class_weight == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes)
    return {i: float(len(labels) / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


class _CheckpointFullModel(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that saves the full model while only its head is being fit."""

    def __init__(self, full_model, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._full_model = full_model

    def set_model(self, model):
        super().set_model(self._full_model)


class _ReplayLoggedEpochs(keras.callbacks.Callback):
    """On a resumed phase, feeds ``callbacks`` (EarlyStopping, ReduceLROnPlateau) the epochs
    the killed process logged, so that they wait, reduce and stop as in an uninterrupted run:
    BackupAndRestore restores the weights and the optimizer (its learning rate included), not
    these callbacks' counters. It goes after BackupAndRestore, which tells the epoch
    restored."""

    def __init__(self, log, first_epoch, callbacks):
        super().__init__()
        self.log, self.first_epoch, self.callbacks = log, first_epoch, callbacks

    def on_train_begin(self, logs=None):
        restored = self.model._initial_epoch  # set by BackupAndRestore when it restored
        if not restored or not self.callbacks:
            return
        optimizer = self.model.optimizer
        rate = keras.ops.convert_to_numpy(optimizer.learning_rate)  # restored already
        for row in read_log(self.log):
            if self.first_epoch <= row["epoch"] < restored:
                for callback in self.callbacks:
                    callback.on_epoch_end(row["epoch"], dict(row))
        optimizer.learning_rate = rate  # a replayed reduction happened before the backup
        self.model.stop_training = False


class WholeSaves:
    """Ctrl-C while an epoch's files are written (best.keras, the log row, the backup) takes
    effect once they are whole: a half-written backup could not be resumed. Used as a
    context manager around ``fit``, with ``opening`` first and ``closing`` last among its
    callbacks; in the main thread with Python's own SIGINT handler only (else a no-op)."""

    def __init__(self):
        self.saving = self.pending = False
        self.previous = None
        self.opening = keras.callbacks.LambdaCallback(on_epoch_end=self._open)
        self.closing = keras.callbacks.LambdaCallback(on_epoch_end=self._close)

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _interrupt(self, signum, frame):
        if not self.saving:
            raise KeyboardInterrupt
        self.pending = True

    def _open(self, epoch, logs=None):
        self.saving = True

    def _close(self, epoch, logs=None):
        self.saving = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


def _callbacks(run: RunContext, saved, phase, first_epoch, adapters=None):
    """(the best.keras checkpoint, every callback of the phase in order). ``saved`` is what
    the checkpoint saves (the model, or a LoRA phase's :class:`~keras_vgg.finetune.lora.
    MergedSaves`); ``adapters`` a LoRA phase's :class:`~keras_vgg.finetune.lora.AdapterBackup`."""
    recipe, folder = run.recipe, run.folder
    checkpoint = _CheckpointFullModel(
        saved, str(folder.best), monitor="val_accuracy", mode="max",
        save_best_only=True, initial_value_threshold=_best_so_far(folder),
    )
    callbacks = [checkpoint, keras.callbacks.CSVLogger(str(folder.log), append=True)]
    # Counters a resumed phase replays from the log. EarlyStopping does not restore the best
    # weights: best.keras holds them, and the next phase starts from this one's last epoch,
    # which BackupAndRestore can give back exactly after a kill.
    counted = []
    if recipe.early_stopping_patience:
        counted.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=recipe.early_stopping_patience))
    if recipe.reduce_lr_patience:
        counted.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.2, patience=recipe.reduce_lr_patience, min_lr=1e-7))
    callbacks += counted
    if recipe.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(folder.logs)))
    if adapters is not None:  # the adapters on disk before the backup that needs them
        callbacks.append(adapters.saving)
    callbacks.append(keras.callbacks.BackupAndRestore(str(folder.backup(phase))))
    if adapters is not None:
        callbacks.append(adapters.restoring)
    callbacks.append(_ReplayLoggedEpochs(folder.log, first_epoch, counted))
    return checkpoint, callbacks


def cached_features(run: RunContext, model):
    """The base's outputs for train and val, computed once and kept as .npy files in the
    run folder's ``feature_cache/`` (``run.verbose`` as Keras's: 1 a progress bar, 2 one
    line)."""
    folder = run.folder.feature_cache
    folder.mkdir(exist_ok=True)
    base = with_float32_outputs(inference_model(model.get_layer("base"),
                                                inference_precision(run.recipe)))
    out = {}
    for split in ("train", "val"):
        path = folder / f"{split}.npy"
        if not path.exists():
            images = data_lib.eval_pipeline(getattr(run.splits, split), run.batched, run.mode)
            # float32 on disk whatever the compute dtype (np.save cannot store bfloat16).
            features = np.asarray(base.predict(images, verbose=run.verbose),  # 2: no \r
                                  dtype="float32")
            tmp = folder / f".{split}.tmp.npy"
            np.save(tmp, features)
            os.replace(tmp, path)
        out[split] = np.load(path)
    return out


def _phase_data(run: RunContext, model, use_cache, epoch):
    """(train, validation) datasets of a phase; the training order and augmentation drawn
    from ``epoch`` (the phase's :class:`~keras_vgg.finetune.data.EpochSeed`)."""
    recipe, splits = run.batched, run.splits
    if use_cache:
        with distribute.one_device():
            features = cached_features(run, model)
        # (features, label[, weight]): a worker's padding weighted 0, as in the image pipelines
        train = data_lib.shuffle_batch(
            data_lib.feature_dataset(splits, "train", features["train"]), recipe, epoch)
        val = data_lib.feature_dataset(splits, "val", features["val"]).batch(
            recipe.data.batch_size, drop_remainder=data_lib.sharded())
        return train, val
    return (data_lib.train_pipeline(splits.train, recipe, run.mode, epoch=epoch),
            data_lib.eval_pipeline(splits.val, recipe, run.mode))


def _all_train_labels(splits):
    """Every worker's training labels (the class weights must agree across workers)."""
    return splits.train_labels if splits.all_train_labels is None else splits.all_train_labels


def _best_so_far(folder):
    values = [row["val_accuracy"] for row in read_log(folder.log) if "val_accuracy" in row]
    return max(values) if values else None


def run_phase(run: RunContext, index: int, model, state: RunState) -> RunState:
    """Phase ``index`` of the recipe (counted from 0): freeze, compile (in the strategy's
    scope), fit (resuming from its backup when there is one); returns the state with the
    phase done. With ``run.teacher`` the model is fit as the student of Keras's Distiller
    (its checkpoint and exports stay the model itself)."""
    recipe, phase = run.recipe, phase_name(index)
    settings = recipe.phases[index]
    epochs = settings.epochs
    freeze(model, settings.freeze, freeze_bn=not bn_training(recipe))
    use_cache = index == 0 and uses_feature_cache(recipe)
    target = model.get_layer("head") if use_cache else model
    weights = class_weights(recipe, _all_train_labels(run.splits), len(run.splits.class_names))
    loss = "sparse_categorical_crossentropy"
    with run.strategy.scope():
        adapted = (lora.enable(model, settings.lora_rank, f"phases.{index}.lora_rank")
                   if settings.lora_rank else [])
        if run.teacher is not None:  # the Distiller fits, the model is saved
            target, loss = run.teacher.distiller(model, weights), label_loss(weights)
            weights = None  # in the label loss: the Distiller ignores sample weights
        target.compile(optimizer=keras.optimizers.Adam(settings.lr), loss=loss,
                       metrics=["accuracy"], jit_compile=recipe.jit_compile)
    epoch = data_lib.EpochSeed(recipe.seed)
    train, val = _phase_data(run, model, use_cache, epoch)
    start = state.epoch
    saved, adapters = model, None
    if adapted:  # best.keras saved merged (plain), checked against the adapted model
        saved = lora.MergedSaves(model, lora.first_images(val))
        adapters = lora.AdapterBackup(run.folder.backup(phase) / "lora", adapted)
    checkpoint, phase_callbacks = _callbacks(run, saved, phase, start, adapters)
    phase_callbacks.insert(0, epoch)
    # BackupAndRestore leaves the restored epoch on the model; a later fit must not inherit it.
    target._initial_epoch = None
    with WholeSaves() as saves:
        history = fit(target, train, val, FitPlan(
            epochs=start + epochs, initial_epoch=start, class_weight=weights,
            callbacks=(saves.opening, *phase_callbacks, *run.callbacks, saves.closing),
            strategy=run.strategy, verbose=run.verbose, batch_size=run.global_batch))
    target._initial_epoch = None
    if adapted:
        lora.record(run.folder, phase, model, saved)
    reached = history.epoch[-1] + 1 if history.epoch else start + epochs
    # EarlyStopping ended the phase when it stopped short
    return state.phase_done(phase, reached, stopped_early=reached < start + epochs)
