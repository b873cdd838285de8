"""Training: Keras's ``fit`` under every strategy but one, and under TensorFlow's
``MultiWorkerMirroredStrategy`` a loop of its own.

Keras 3's ``fit`` does not work under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585;
here it fails with "Attempt to convert a value (PerReplica...)"). :func:`fit` therefore runs
its own loop there: a ``tf.function`` step that calls ``strategy.run``, the Keras callbacks
driven as ``fit`` drives them. The other strategies use ``fit`` itself.

Example:
    >>> import keras, numpy as np, tensorflow as tf
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    >>> model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.zeros((4, 2), "float32"), np.array([0, 1, 0, 1]))).batch(2)
    >>> history = fit(model, data, None, FitPlan(epochs=2, verbose=0))
    >>> len(history.epoch)
    2
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class FitPlan:
    """How to fit: the epochs (``initial_epoch`` up to ``epochs``), the callbacks, the class
    weights, the strategy (None: the default one), Keras's ``verbose``, and the global batch
    size (which the multi-worker loop cuts into per-replica batches)."""

    epochs: int
    initial_epoch: int = 0
    callbacks: tuple = ()
    class_weight: dict | None = None
    strategy: object = None
    verbose: int | str = 2
    batch_size: int | None = None


def fit(model, train, val, plan: FitPlan):
    """``model.fit`` under every strategy except multi-worker, which gets :func:`_loop_fit`."""
    if not isinstance(plan.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _build_before_tracing(model, train, plan.strategy)
        return model.fit(train, validation_data=val, epochs=plan.epochs,
                         initial_epoch=plan.initial_epoch, shuffle=False,
                         class_weight=plan.class_weight, callbacks=list(plan.callbacks),
                         verbose=plan.verbose)
    return _loop_fit(model, train, val, plan)


def _build_before_tracing(model, train, strategy):
    """Builds the optimizer's slots and the compiled metrics before ``fit`` traces its step.

    Keras on TensorFlow builds them inside the first trace of the train step when the model
    has no strategy of its own (``_maybe_symbolic_build`` in keras/src/backend/tensorflow/
    trainer.py, "for backwards compatibility"), and variables made inside a ``tf.function``
    make TensorFlow trace it a second time. Built here as Keras builds them under a strategy
    (on the shapes of ``train``'s batches; no batch is read, so no shuffle moves), the step
    is traced once: the same variables, so the same weights, 2 s sooner on the tiny run of
    tests/conftest.py (5.5 s against 7.4 s a fine-tune, measured 2026-12-07)."""
    if keras.backend.backend() != "tensorflow" or getattr(model, "_distribute_strategy", None):
        return  # jax and torch build before tracing; under a strategy, Keras does this
    with (strategy or tf.distribute.get_strategy()).scope():
        model._symbolic_build(data_batch=train.element_spec)


def _distribute(strategy, ds, batch_size):
    """``ds`` spread over the replicas. A dataset that holds only this worker's share
    (auto-sharding off), batched with the global ``batch_size``, is cut into per-replica
    batches here, so that the last, partial batch leaves no replica an empty one."""
    off = tf.data.experimental.AutoShardPolicy.OFF
    if batch_size and ds.options().experimental_distribute.auto_shard_policy == off:
        per_replica = ds.rebatch(max(1, batch_size // strategy.num_replicas_in_sync))
        return strategy.distribute_datasets_from_function(lambda context: per_replica)
    return strategy.experimental_distribute_dataset(ds)


def _loop_fit(model, train, val, plan: FitPlan):
    """What ``fit`` does for the recipes (sparse cross-entropy, accuracy, class weights,
    callbacks, ``stop_training``), as a custom loop under ``strategy``.

    On one worker it matches ``fit`` epoch by epoch (tests/test_distribute.py): each step's
    loss is the class-weighted sum over the global batch divided by the batch's size (Keras's
    ``sum_over_batch_size``); the epoch's ``loss`` is that over all its samples, its
    ``accuracy`` unweighted (``metrics``, not ``weighted_metrics``), validation unweighted;
    the epochs draw the seeded shuffles ``fit`` draws; the callbacks get ``fit``'s hooks
    (train, epoch, batch, test) and logs, and an epoch restored by BackupAndRestore is where
    it starts.

    Batches of (x, y, weight) (a worker's share padded to the others' size, the padding
    weighted 0) count each sample by its weight: the loss is divided by the batch's total
    weight, and the padding counts in no figure."""
    strategy = plan.strategy or tf.distribute.get_strategy()
    train_step, val_step = _steps(model, strategy, plan.class_weight)
    train_data = _distribute(strategy, train, plan.batch_size)
    val_data = None if val is None else _distribute(strategy, val, plan.batch_size)
    steps = int(train.cardinality())
    callback_list = keras.callbacks.CallbackList(
        list(plan.callbacks), add_history=True, add_progbar=plan.verbose != 0, model=model,
        epochs=plan.epochs, verbose=plan.verbose, steps=steps if steps >= 0 else None)
    model.stop_training = False
    callback_list.on_train_begin()
    # set by BackupAndRestore when it restored
    start = model._initial_epoch or plan.initial_epoch
    training_logs = None
    for epoch in range(start, plan.epochs):
        callback_list.on_epoch_begin(epoch)
        logs, steps = _train_epoch(model, train_data, train_step, callback_list, steps)
        if val_data is not None:
            logs.update(_evaluate(model, val_data, val_step, callback_list))
        callback_list.on_epoch_end(epoch, logs)
        training_logs = logs
        if model.stop_training:
            break
    if plan.epochs > 0:
        model.optimizer.finalize_variable_values(model.trainable_variables)
    callback_list.on_train_end(training_logs)
    return model.history


def _steps(model, strategy, class_weight):
    """The compiled train and validation steps on (x, y[, weight]): each returns the batch's
    sums (class-weighted loss, correct, samples), each sample counted by its weight (1 when
    there is none), reduced over the replicas."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")
    optimizer = model.optimizer
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    weights = None if class_weight is None else tf.constant(
        [class_weight[i] for i in range(len(class_weight))], "float32")

    def sums(x, y, sample_weight, training):
        """(class-weighted loss, correct, samples), summed over the batch by weight."""
        probabilities = model(x, training=training)
        y = tf.cast(tf.reshape(y, [-1]), "int32")
        losses = loss_fn(y, probabilities)
        if training and weights is not None:
            losses *= tf.cast(tf.gather(weights, y), losses.dtype)
        correct = tf.cast(tf.equal(tf.argmax(probabilities, -1, output_type="int32"), y),
                          losses.dtype)
        if sample_weight is None:
            return (tf.reduce_sum(losses), tf.reduce_sum(correct),
                    tf.cast(tf.size(y), losses.dtype))
        w = tf.cast(tf.reshape(sample_weight, [-1]), losses.dtype)
        return tf.reduce_sum(losses * w), tf.reduce_sum(correct * w), tf.reduce_sum(w)

    def train_replica(x, y, sample_weight=None):
        with tf.GradientTape() as tape:
            totals = sums(x, y, sample_weight, training=True)
            global_count = tf.distribute.get_replica_context().all_reduce("SUM", totals[2])
            # a loss of 0, not NaN, for a step of padding alone (weight 0 on every worker)
            scaled = optimizer.scale_loss(totals[0] / tf.maximum(global_count, 1.0))
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return totals

    def reduced(step):
        @tf.function
        def run(*batch):
            per_replica = strategy.run(step, args=batch)
            return [strategy.reduce("SUM", value, axis=None) for value in per_replica]
        return run

    return reduced(train_replica), reduced(
        lambda x, y, sample_weight=None: sums(x, y, sample_weight, training=False))


def _results(totals, prefix=""):
    loss, correct, _ = totals / max(totals[2], 1.0)
    return {f"{prefix}loss": float(loss), f"{prefix}accuracy": float(correct)}


def _train_epoch(model, train_data, train_step, callback_list, steps):
    """One epoch with fit's batch hooks; returns its logs and the epoch's step count."""
    totals, step = np.zeros(3), -1
    for step, batch in enumerate(train_data):  # (x, y[, weight])
        callback_list.on_train_batch_begin(step)
        totals += [float(v) for v in train_step(*batch)]
        callback_list.on_train_batch_end(step, _results(totals))
        if model.stop_training:
            break
    else:
        # fit's epoch iterator (Keras 3.15) opens the next epoch's iterator when an epoch
        # of known length ends, drops it and opens another when that epoch begins: each
        # iterator draws the next seeded shuffle, so fit's epochs see every other one.
        # The same here gives the loop fit's batches, epoch by epoch.
        if steps >= 0:
            iter(train_data)
        steps = max(steps, step + 1)
    return _results(totals), steps


def _evaluate(model, val_data, val_step, callback_list):
    """The validation pass with fit's test hooks; returns the ``val_`` logs."""
    model.stop_evaluating = False
    callback_list.on_test_begin()
    totals = np.zeros(3)
    for step, batch in enumerate(val_data):  # (x, y[, weight])
        callback_list.on_test_batch_begin(step)
        totals += [float(v) for v in val_step(*batch)]
        callback_list.on_test_batch_end(step, _results(totals))
        if model.stop_evaluating:
            break
    callback_list.on_test_end(_results(totals))
    return _results(totals, prefix="val_")
