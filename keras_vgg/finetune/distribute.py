"""Training on several devices and machines with tf.distribute, and the precision switches.

``strategy`` (a recipe key, ``--strategy``):

- ``default``: one device (TensorFlow's default strategy).
- ``mirrored``: ``MirroredStrategy`` over this machine's GPUs (or its CPU devices).
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the machines listed in ``TF_CONFIG``.
- ``tpu``: ``TPUStrategy`` on the TPU found by ``TPUClusterResolver``.

The model and its optimizer are built in the strategy's scope, and the recipe's
``batch_size`` is per replica: the global batch is ``batch_size x replicas``.

Keras 3's ``fit`` does not work under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585;
here it fails with "Attempt to convert a value (PerReplica...)"). :func:`fit` therefore runs
its own loop there: a ``tf.function`` step that calls ``strategy.run``, the Keras callbacks
driven as ``fit`` drives them. The other strategies use ``fit`` itself.

Example:
    >>> strategy = make_strategy("default")
    >>> strategy.num_replicas_in_sync
    1
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_vgg.precision import detect_precision, precision_scope

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy a recipe's ``strategy`` names."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        if not config.get("cluster", {}).get("worker") or "task" not in config:
            raise ValueError(
                "Expected TF_CONFIG with the cluster's workers and this machine's task for "
                "strategy='multi_worker', e.g. {\"cluster\": {\"worker\": [\"host1:12345\", "
                "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}. "
                f"Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise ValueError(f"strategy='tpu' found no TPU: {error}") from error
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Expected `strategy` to be one of {STRATEGIES}. Received: strategy={name!r}")


def training_precision(mixed) -> str:
    """What a recipe's ``mixed_precision`` trains in: ``"auto"`` (or None) the fast precision
    this machine has (``keras_vgg.precision.detect_precision``), ``"true"`` (or True)
    float16 on a GPU and bfloat16 elsewhere (CPUs and TPUs compute bfloat16), ``"false"``
    (or False) float32."""
    if mixed in ("auto", None):
        return detect_precision().precision
    if mixed in (True, "true"):
        return "float16" if tf.config.list_logical_devices("GPU") else "bfloat16"
    if mixed in (False, "false"):
        return "float32"
    raise ValueError("Expected `mixed_precision` to be one of ['auto', 'true', 'false']. "
                     f"Received: mixed_precision={mixed!r}")


def precision(mixed):
    """Keras's global dtype policy for the block, as ``training_precision(mixed)`` says
    (``mixed_bfloat16``, ``mixed_float16`` or ``float32``); the previous one comes back
    afterwards."""
    return precision_scope(training_precision(mixed))


def fit(model, train, *, validation_data, epochs, initial_epoch, callbacks, class_weight,
        strategy, verbose):
    """``model.fit`` under every strategy except multi-worker, which gets :func:`_loop_fit`."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model.fit(train, validation_data=validation_data, epochs=epochs,
                         initial_epoch=initial_epoch, shuffle=False, class_weight=class_weight,
                         callbacks=callbacks, verbose=verbose)
    return _loop_fit(model, train, validation_data, epochs, initial_epoch, callbacks,
                     class_weight, strategy, verbose)


def _loop_fit(model, train, val, epochs, initial_epoch, callbacks, class_weight, strategy,
              verbose):
    """What ``fit`` does for the recipes (sparse cross-entropy, accuracy, class weights,
    callbacks, ``stop_training``), as a custom loop under ``strategy``.

    On one worker it matches ``fit`` epoch by epoch (tests/test_distribute.py): each step's
    loss is the class-weighted sum over the global batch divided by the batch's size (Keras's
    ``sum_over_batch_size``); the epoch's ``loss`` is that over all its samples, its
    ``accuracy`` unweighted (``metrics``, not ``weighted_metrics``), validation unweighted;
    the epochs draw the seeded shuffles ``fit`` draws; the callbacks get ``fit``'s hooks
    (train, epoch, batch, test) and logs, and an epoch restored by BackupAndRestore is where
    it starts."""
    train_step, val_step = _steps(model, strategy, class_weight)
    train_data = strategy.experimental_distribute_dataset(train)
    val_data = None if val is None else strategy.experimental_distribute_dataset(val)
    steps = int(train.cardinality())
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, model=model,
        epochs=epochs, verbose=verbose, steps=steps if steps >= 0 else None)
    model.stop_training = False
    callback_list.on_train_begin()
    start = model._initial_epoch or initial_epoch  # set by BackupAndRestore when it restored
    training_logs = None
    for epoch in range(start, epochs):
        callback_list.on_epoch_begin(epoch)
        logs, steps = _train_epoch(model, train_data, train_step, callback_list, steps)
        if val_data is not None:
            logs.update(_evaluate(model, val_data, val_step, callback_list))
        callback_list.on_epoch_end(epoch, logs)
        training_logs = logs
        if model.stop_training:
            break
    if epochs > 0:
        model.optimizer.finalize_variable_values(model.trainable_variables)
    callback_list.on_train_end(training_logs)
    return model.history


def _steps(model, strategy, class_weight):
    """The compiled train and validation steps: each returns the batch's sums
    (class-weighted loss, correct, samples), reduced over the replicas."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")
    optimizer = model.optimizer
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    weights = None if class_weight is None else tf.constant(
        [class_weight[i] for i in range(len(class_weight))], "float32")

    def sums(x, y, training):
        """(class-weighted loss, correct, samples), summed over the batch."""
        probabilities = model(x, training=training)
        y = tf.cast(tf.reshape(y, [-1]), "int32")
        losses = loss_fn(y, probabilities)
        if training and weights is not None:
            losses *= tf.cast(tf.gather(weights, y), losses.dtype)
        correct = tf.cast(tf.equal(tf.argmax(probabilities, -1, output_type="int32"), y),
                          losses.dtype)
        return tf.reduce_sum(losses), tf.reduce_sum(correct), tf.cast(tf.size(y), losses.dtype)

    def train_replica(x, y):
        with tf.GradientTape() as tape:
            totals = sums(x, y, training=True)
            global_count = tf.distribute.get_replica_context().all_reduce("SUM", totals[2])
            scaled = optimizer.scale_loss(totals[0] / global_count)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return totals

    def reduced(step):
        @tf.function
        def run(x, y):
            per_replica = strategy.run(step, args=(x, y))
            return [strategy.reduce("SUM", value, axis=None) for value in per_replica]
        return run

    return reduced(train_replica), reduced(lambda x, y: sums(x, y, training=False))


def _results(totals, prefix=""):
    loss, correct, _ = totals / max(totals[2], 1.0)
    return {f"{prefix}loss": float(loss), f"{prefix}accuracy": float(correct)}


def _train_epoch(model, train_data, train_step, callback_list, steps):
    """One epoch with fit's batch hooks; returns its logs and the epoch's step count."""
    totals, step = np.zeros(3), -1
    for step, (x, y) in enumerate(train_data):
        callback_list.on_train_batch_begin(step)
        totals += [float(v) for v in train_step(x, y)]
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
    for step, (x, y) in enumerate(val_data):
        callback_list.on_test_batch_begin(step)
        totals += [float(v) for v in val_step(x, y)]
        callback_list.on_test_batch_end(step, _results(totals))
        if model.stop_evaluating:
            break
    callback_list.on_test_end(_results(totals))
    return _results(totals, prefix="val_")
