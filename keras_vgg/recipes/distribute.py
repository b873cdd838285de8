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

import contextlib
import json
import os

import keras
import numpy as np
import tensorflow as tf

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


@contextlib.contextmanager
def precision(mixed: bool):
    """Keras's global dtype policy for the block: ``mixed_float16`` on a GPU,
    ``mixed_bfloat16`` elsewhere (CPUs and TPUs compute bfloat16), float32 when not ``mixed``.
    The previous policy comes back afterwards."""
    previous = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy(
            "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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
    callbacks, ``stop_training``), as a custom loop under ``strategy``."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")
    optimizer = model.optimizer
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    weights = None if class_weight is None else tf.constant(
        [class_weight[i] for i in range(len(class_weight))], "float32")

    def sums(x, y, training):
        probabilities = model(x, training=training)
        y = tf.cast(tf.reshape(y, [-1]), "int32")
        losses = loss_fn(y, probabilities)
        if training and weights is not None:
            losses *= tf.gather(weights, y)
        correct = tf.cast(tf.equal(tf.argmax(probabilities, -1, output_type="int32"), y), "float32")
        return tf.reduce_sum(losses), tf.reduce_sum(correct), tf.cast(tf.size(y), "float32")

    def train_replica(x, y):
        with tf.GradientTape() as tape:
            loss_sum, correct, count = sums(x, y, training=True)
            global_count = tf.distribute.get_replica_context().all_reduce("SUM", count)
            scaled = optimizer.scale_loss(loss_sum / global_count)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return loss_sum, correct, count

    def reduced(step):
        @tf.function
        def run(x, y):
            per_replica = strategy.run(step, args=(x, y))
            return [strategy.reduce("SUM", value, axis=None) for value in per_replica]
        return run

    train_step = reduced(train_replica)
    val_step = reduced(lambda x, y: sums(x, y, training=False))

    def epoch_logs(step, data, prefix=""):
        totals = np.zeros(3)
        for x, y in strategy.experimental_distribute_dataset(data):
            totals += [float(v) for v in step(x, y)]
        return {f"{prefix}loss": totals[0] / totals[2], f"{prefix}accuracy": totals[1] / totals[2]}

    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=bool(verbose), model=model,
        epochs=epochs, verbose=verbose, steps=None)
    model.stop_training = False
    callback_list.on_train_begin()
    start = model._initial_epoch or initial_epoch  # set by BackupAndRestore when it restored
    logs = {}
    for epoch in range(start, epochs):
        callback_list.on_epoch_begin(epoch)
        logs = epoch_logs(train_step, train)
        logs.update(epoch_logs(val_step, val, prefix="val_"))
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model.history
