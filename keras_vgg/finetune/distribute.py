"""Training on several devices and machines, on each Keras backend, and the precision switches.

``strategy`` (a recipe key, ``--strategy``), per ``KERAS_BACKEND``:

============  ==========================================  ======================================
strategy      tensorflow (``tf.distribute``)               jax (``keras.distribution``)
============  ==========================================  ======================================
default       one device (the default strategy)            one device
mirrored      ``MirroredStrategy``: this machine's GPUs     ``DataParallel`` over this machine's
              (or its CPU devices)                         devices (``keras.distribution.list_devices()``)
multi_worker  ``MultiWorkerMirroredStrategy`` over the     ``keras.distribution.initialize()``
              machines in ``TF_CONFIG``                    (``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
                                                           ``_NUM_PROCESSES``, ``_PROCESS_ID``), then
                                                           ``DataParallel`` over every process's
                                                           devices
tpu           ``TPUStrategy`` (``TPUClusterResolver``)     ``DataParallel`` over the TPU cores
============  ==========================================  ======================================

On torch only ``default`` runs (one device; Keras 3.15 has no ``keras.distribution`` for
torch and does not drive torch's DDP): the others fail with what to use instead.

The model and its optimizer are built in the strategy's scope, and the recipe's
``batch_size`` is per replica: the global batch is ``batch_size x replicas``. A JAX
``DataParallel`` is in force for the whole run (:func:`running`): ``fit`` splits each global
batch across the devices, and across processes each one reads its own share of the data.

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

from keras_vgg.precision import detect_precision, gpu_capability, precision_scope

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


class KerasDistribution:
    """A ``keras.distribution`` (or one device, ``None``) with the two members a run uses of
    a ``tf.distribute`` strategy: ``scope()`` and ``num_replicas_in_sync``."""

    def __init__(self, distribution=None):
        self.distribution = distribution

    @property
    def num_replicas_in_sync(self) -> int:
        return 1 if self.distribution is None else int(self.distribution.device_mesh.devices.size)

    def scope(self):
        return contextlib.nullcontext() if self.distribution is None else self.distribution.scope()


def running(strategy):
    """The context a whole run goes in: a ``keras.distribution`` is set for all of it (``fit``
    and ``predict`` read it); a ``tf.distribute`` strategy only around building and compiling."""
    return strategy.scope() if isinstance(strategy, KerasDistribution) else contextlib.nullcontext()


@contextlib.contextmanager
def one_device():
    """No ``keras.distribution`` inside the block (the run's own comes back after): for the
    steps that must see every image, such as the final evaluation."""
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def make_strategy(name: str):
    """What a recipe's ``strategy`` names on this Keras backend (see the module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(
            f"Expected `strategy` to be one of {STRATEGIES}. Received: strategy={name!r}")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tf_strategy(name)
    if name == "default":
        return KerasDistribution()
    if backend != "jax":
        raise ValueError(
            f"Expected strategy='default' under KERAS_BACKEND={backend}: Keras "
            f"{keras.__version__} distributes training on tensorflow (tf.distribute) and jax "
            f"(keras.distribution) only. Received: strategy={name!r}. Use one device, or run "
            f"with KERAS_BACKEND=jax or tensorflow.")
    return KerasDistribution(_jax_data_parallel(name))


def _jax_data_parallel(name):
    distribution = keras.distribution
    if name == "multi_worker":
        if not os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
            raise ValueError(
                "Expected KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's host:port, or every "
                "process's, comma-separated), KERAS_DISTRIBUTION_NUM_PROCESSES and "
                "KERAS_DISTRIBUTION_PROCESS_ID for strategy='multi_worker' under "
                "KERAS_BACKEND=jax. Received: KERAS_DISTRIBUTION_JOB_ADDRESSES unset")
        distribution.initialize()
    devices = distribution.list_devices()
    if name == "tpu" and not all(device.lower().startswith("tpu") for device in devices):
        raise ValueError(f"strategy='tpu' found no TPU under KERAS_BACKEND=jax: devices {devices}")
    return distribution.DataParallel(devices=devices)


def _tf_strategy(name: str) -> tf.distribute.Strategy:
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
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise ValueError(f"strategy='tpu' found no TPU: {error}") from error
    return tf.distribute.TPUStrategy(resolver)


def input_shard(strategy):
    """``(worker, workers)`` when ``strategy`` spans several worker processes that should each
    read their own share of the data (TensorFlow's multi-worker strategy), else None."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    resolver = strategy.cluster_resolver
    workers = resolver.cluster_spec().num_tasks("worker") if resolver else 1
    return (int(resolver.task_id), int(workers)) if workers > 1 else None


def sum_over_workers(strategy, array):
    """``array`` (e.g. a confusion matrix of this worker's share) summed over every worker of
    a multi-worker strategy; itself elsewhere."""
    shard = input_shard(strategy)
    if shard is None:
        return np.asarray(array)
    value = tf.constant(np.asarray(array, dtype="float64"))
    local = strategy.num_replicas_in_sync // shard[1]

    def per_replica(context):  # one replica of each worker contributes its worker's array
        first = context.replica_id_in_sync_group % local == 0
        return value if first else tf.zeros_like(value)

    values = strategy.experimental_distribute_values_from_function(per_replica)
    total = strategy.reduce("SUM", values, axis=None)
    return np.rint(total.numpy()).astype(np.asarray(array).dtype)


def training_precision(mixed) -> str:
    """What a recipe's ``mixed_precision`` trains in: ``"auto"`` (or None) the fast precision
    this machine has (``keras_vgg.precision.detect_precision``), ``"true"`` (or True)
    float16 on a GPU and bfloat16 elsewhere (CPUs and TPUs compute bfloat16), ``"false"``
    (or False) float32."""
    if mixed in ("auto", None):
        return detect_precision(training=True).precision
    if mixed in (True, "true"):
        return "float16" if gpu_capability() is not None else "bfloat16"
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
        strategy, verbose, batch_size=None):
    """``model.fit`` under every strategy except multi-worker, which gets :func:`_loop_fit`."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model.fit(train, validation_data=validation_data, epochs=epochs,
                         initial_epoch=initial_epoch, shuffle=False, class_weight=class_weight,
                         callbacks=callbacks, verbose=verbose)
    return _loop_fit(model, train, validation_data, epochs, initial_epoch, callbacks,
                     class_weight, strategy, verbose, batch_size)


def _distribute(strategy, ds, batch_size):
    """``ds`` spread over the replicas. A dataset that holds only this worker's share
    (auto-sharding off), batched with the global ``batch_size``, is cut into per-replica
    batches here, so that the last, partial batch leaves no replica an empty one."""
    off = tf.data.experimental.AutoShardPolicy.OFF
    if batch_size and ds.options().experimental_distribute.auto_shard_policy == off:
        per_replica = ds.rebatch(max(1, batch_size // strategy.num_replicas_in_sync))
        return strategy.distribute_datasets_from_function(lambda context: per_replica)
    return strategy.experimental_distribute_dataset(ds)


def _loop_fit(model, train, val, epochs, initial_epoch, callbacks, class_weight, strategy,
              verbose, batch_size=None):
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
    train_step, val_step = _steps(model, strategy, class_weight)
    train_data = _distribute(strategy, train, batch_size)
    val_data = None if val is None else _distribute(strategy, val, batch_size)
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
