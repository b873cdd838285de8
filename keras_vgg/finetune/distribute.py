"""Training on several devices and machines, on each Keras backend: the strategies.

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

Training itself (``fit``, and the loop that replaces it under a multi-worker strategy) is in
``keras_vgg.finetune.loop``; the precision a run trains in, in ``keras_vgg.precision``
(``training_precision``, ``training_scope``).

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
