"""Same recipe, same seed, same machine: the same figures. The recipe's ``deterministic``
(default true) turns on each backend's deterministic kernels for a run, and its ``seed``
seeds every random source (``keras.utils.set_random_seed``: Python, NumPy, the backend);
the data order, augmentation and dropout of each epoch come from (seed, epoch)
(:class:`keras_vgg.finetune.data.EpochSeed`).

- TensorFlow: ``tf.config.experimental.enable_op_determinism()`` (tf.data runs its maps in
  order too). It is on for every backend, since the input pipeline is tf.data.
- torch: ``torch.use_deterministic_algorithms(True)``.
- JAX on the CPU is deterministic already (XLA's CPU kernels): nothing to turn on; the
  tests check two runs match.

Measured cost: benchmarks/determinism.py, docs/benchmarks.md.

Example:
    >>> from keras_vgg.finetune.determinism import deterministic_kernels, kernels_state
    >>> with deterministic_kernels(True):
    ...     kernels_state()["tensorflow"]
    True
"""

from __future__ import annotations

import contextlib
import sys

import keras
from tensorflow.python.framework import config as tf_config


def kernels_state() -> dict:
    """Whether each loaded engine's deterministic kernels are on now."""
    state = {"tensorflow": bool(tf_config.is_op_determinism_enabled())}
    if keras.backend.backend() == "torch" or "torch" in sys.modules:
        import torch

        state["torch"] = bool(torch.are_deterministic_algorithms_enabled())
    return state


@contextlib.contextmanager
def deterministic_kernels(enabled: bool):
    """Deterministic kernels inside the block when ``enabled`` (as they were afterwards);
    the block is left as it is when not."""
    if not enabled:
        yield
        return
    before = kernels_state()
    tf_config.enable_op_determinism()
    torch = None
    if keras.backend.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        if not before["tensorflow"]:
            tf_config.disable_op_determinism()
        if torch is not None and not before.get("torch", False):
            torch.use_deterministic_algorithms(False)
