"""Precision: which float type a model computes in, and ``auto`` = the fastest the hardware
runs well, detected (not guessed).

``float32``, ``bfloat16`` and ``float16`` are Keras's ``float32``, ``mixed_bfloat16`` and
``mixed_float16`` dtype policies: variables (the weights) stay float32, so a model loads and
saves its weights in float32 whatever it computes in (a copy made for predicting only,
``with_precision(..., inference=True)``, holds them in its precision). ``auto`` is:

- ``bfloat16`` on a CPU with AMX or AVX512-BF16 under the TensorFlow backend (oneDNN runs VGG
  there about 6x faster than in float32, measured in ``benchmarks/precision_inference.py``),
  and for predicting (not training) under torch (``CPU_BFLOAT16`` says what was measured);
- ``bfloat16`` on a GPU with bfloat16 tensor cores (compute capability 8.0 and up), ``float16``
  on one with float16 tensor cores only (7.x);
- ``float32`` elsewhere, and wherever the environment variable ``KERAS_VGG_PRECISION`` says
  ``float32`` (``KERAS_VGG_PRECISION`` names the precision ``auto`` gives).

Example:
    >>> import keras_vgg
    >>> from keras_vgg.precision import with_precision
    >>> model = keras_vgg.VGG11(input_shape=(32, 32, 3), classes=10, adaptive_pool=1)
    >>> fast = with_precision(model, "bfloat16")
    >>> fast.get_layer("block1_conv1").compute_dtype, fast.get_layer("predictions").compute_dtype
    ('bfloat16', 'float32')
    >>> model.get_layer("block1_conv1").compute_dtype  # the model itself is not changed
    'float32'
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import keras

from keras_vgg._helpers import expected
from keras_vgg.choices import PRECISIONS

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
ENVIRONMENT = "KERAS_VGG_PRECISION"
CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs that compute bfloat16
# Whether bfloat16 beats float32 on such a CPU, per Keras backend: (predicting, training).
# Measured on a 2-core Xeon with AMX (benchmarks/precision_inference.py, benchmarks/backends.py):
# tensorflow (oneDNN) VGG16 4-6x, the builtin recipe's epoch 1.3x; torch VGG16 2.4x, but a
# mixed-bfloat16 epoch 0.7x; jax (XLA's CPU kernels) VGG16 1.0x.
CPU_BFLOAT16 = {"tensorflow": (True, True), "torch": (True, False), "jax": (False, False)}


@dataclass(frozen=True)
class Detected:
    """What ``auto`` means on this machine, and why."""

    precision: str
    reason: str

    def __str__(self):
        return f"{self.precision} ({self.reason})"


def cpu_flags() -> set[str]:
    """This CPU's feature flags (Linux's /proc/cpuinfo); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability (major, minor) under the Keras backend, or None."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    elif backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if gpus and getattr(gpus[0], "compute_capability", None):
            return tuple(int(part) for part in str(gpus[0].compute_capability).split(".")[:2])
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_capability(0)
    return None


def detect_precision(training: bool = False) -> Detected:
    """The precision ``auto`` gives here, for predicting or (``training=True``) for training:
    see the module's docstring for the rule."""
    forced = os.environ.get(ENVIRONMENT, "").strip()
    if forced:
        if forced not in POLICIES:
            raise expected(f"{ENVIRONMENT} to be one of {sorted(POLICIES)}",
                           **{ENVIRONMENT: forced})
        return Detected(forced, f"{ENVIRONMENT}={forced}")
    capability = gpu_capability()
    if capability is not None:
        if tuple(capability) >= (8, 0):
            return Detected("bfloat16", f"GPU with compute capability {capability}")
        if tuple(capability) >= (7, 0):
            return Detected("float16", f"GPU with compute capability {capability}")
        return Detected("float32", f"GPU with compute capability {capability}: no tensor cores")
    flags = sorted(set(CPU_FLAGS) & cpu_flags())
    if not flags:
        return Detected("float32", "CPU without AMX or AVX512-BF16")
    backend = keras.backend.backend()
    if not CPU_BFLOAT16.get(backend, (False, False))[training]:
        work = "trains" if training else "predicts"
        return Detected("float32", f"CPU with {', '.join(flags)}, but bfloat16 {work} no "
                        f"faster than float32 under the {backend} backend (measured)")
    return Detected("bfloat16", f"CPU with {', '.join(flags)}")


def resolve_precision(precision: str | None, argument: str = "precision") -> str:
    """``float32``, ``bfloat16`` or ``float16``: ``precision`` itself, or what ``auto`` detects.
    None means the precision of Keras's global dtype policy."""
    if precision is None:
        policy = keras.config.dtype_policy().name
        return {policy_name: name for name, policy_name in POLICIES.items()}.get(policy, "float32")
    if precision not in PRECISIONS:
        raise expected(f"`{argument}` to be one of {list(PRECISIONS)}", **{argument: precision})
    return detect_precision().precision if precision == "auto" else precision


@contextlib.contextmanager
def precision_scope(precision: str | None):
    """Keras's global dtype policy for ``precision`` (see ``resolve_precision``) inside the
    block, for the layers built there; the previous policy comes back after. None: as it is.

    >>> with precision_scope("bfloat16"):
    ...     keras.layers.Dense(2).compute_dtype
    'bfloat16'
    """
    if precision is None:
        yield
        return
    policy = POLICIES[resolve_precision(precision)]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def training_precision(mixed) -> str:
    """What a recipe's ``mixed_precision`` trains in: ``"auto"`` (or None) the fast precision
    this machine has (:func:`detect_precision`), ``"true"`` (or True) float16 on a GPU and
    bfloat16 elsewhere (CPUs and TPUs compute bfloat16), ``"false"`` (or False) float32.

    >>> training_precision("false")
    'float32'
    """
    if mixed in ("auto", None):
        return detect_precision(training=True).precision
    if mixed in (True, "true"):
        return "float16" if gpu_capability() is not None else "bfloat16"
    if mixed in (False, "false"):
        return "float32"
    raise ValueError("Expected `mixed_precision` to be one of ['auto', 'true', 'false']. "
                     f"Received: mixed_precision={mixed!r}")


def training_scope(mixed):
    """Keras's global dtype policy for the block, as ``training_precision(mixed)`` says
    (``mixed_bfloat16``, ``mixed_float16`` or ``float32``); the previous one comes back
    afterwards.

    >>> with training_scope("false"):
    ...     keras.layers.Dense(2).compute_dtype
    'float32'
    """
    return precision_scope(training_precision(mixed))


def precision_of(model) -> str:
    """``bfloat16`` or ``float16`` when any of ``model``'s layers computes in it, else
    ``float32``."""
    dtypes = {layer.compute_dtype for layer in model._flatten_layers(recursive=True)}
    return next((name for name in ("bfloat16", "float16") if name in dtypes), "float32")


CONVOLUTIONS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")


def _output_names(inner: dict) -> set[str]:
    """The names of the layers a serialized Functional (or Sequential) model outputs."""
    if "output_layers" not in inner:
        return {inner["layers"][-1]["config"]["name"]} if inner.get("layers") else set()
    names, stack = set(), [inner["output_layers"]]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list) and len(item) == 3 and isinstance(item[0], str):
            names.add(item[0])
        elif isinstance(item, list):
            stack.extend(item)
    return names


def _with_policy(config: dict, policy: str, float32_outputs: bool) -> dict:
    """A serialized layer or model computing in ``policy``; with ``float32_outputs`` a model's
    output layers compute in float32 (the classifier: a softmax in bfloat16 loses the small
    classes), except convolutions (a feature extractor's conv outputs come in ``policy``)."""
    inner = dict(config.get("config") or {})
    if isinstance(inner.get("layers"), list):  # a model: its layers, outputs kept float32
        outputs = _output_names(inner) if float32_outputs else set()
        inner["layers"] = [_with_policy(layer, policy, layer["config"]["name"] in outputs)
                           for layer in inner["layers"]]
    elif "dtype" in inner and config.get("class_name") != "InputLayer":
        keep = float32_outputs and config.get("class_name") not in CONVOLUTIONS
        inner["dtype"] = "float32" if keep else policy
    return {**config, "config": inner}


def _computes_in(model, precision, inference) -> bool:
    """``model`` computes in ``precision`` already, and with ``inference`` (and a low
    precision) also holds its convolution kernels in it (not a mixed model)."""
    if precision_of(model) != precision:
        return False
    if not inference or precision == "float32":
        return True
    convs = [layer for layer in model._flatten_layers(recursive=True)
             if isinstance(layer, keras.layers.Conv2D)]
    return not convs or keras.backend.standardize_dtype(convs[0].kernel.dtype) == precision


def with_precision(model, precision: str | None = "auto", inference=False) -> keras.Model:
    """``model`` itself when it already computes in ``precision``, else a copy (the same
    weights) whose layers compute in it; the classifier stays float32.

    Args:
        model: a Keras model with a config (any keras_vgg model, a fine-tuned model).
        precision: ``auto``, ``float32``, ``bfloat16``, ``float16``; None keeps the model.
        inference: False (default): mixed precision, the copy's variables float32 (it trains,
            saves and loads float32 weights). True: the variables too are held in
            ``precision``, so no call casts them (VGG16 with its top at 224 runs 5.6x float32
            in bfloat16 this way, 4.2x in mixed precision): for predicting and serving only.
    """
    if precision is None:
        return model
    precision = resolve_precision(precision)
    if _computes_in(model, precision, inference):
        return model
    try:
        config = keras.saving.serialize_keras_object(model)
    except Exception as error:  # a subclassed model without get_config
        raise ValueError(f"Expected a model with a config to copy into {precision}. Received: "
                         f"{model.name!r}, which cannot be serialized ({error}).") from error
    config = _with_policy(config, precision if inference else POLICIES[precision], True)
    with precision_scope("float32"):  # for layers without a dtype in their config
        copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def with_float32_outputs(model) -> keras.Model:
    """``model``, or a model sharing its layers whose outputs are cast to float32: what
    predictions gathered across workers need (``MultiWorkerMirroredStrategy``'s gather has no
    bfloat16), and what a feature cache stores."""
    outputs = keras.tree.flatten(model.outputs)
    if all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outputs):
        return model
    cast = [keras.layers.Activation("linear", dtype="float32")(o) for o in outputs]
    return keras.Model(model.inputs, cast if len(cast) > 1 else cast[0],
                       name=f"{model.name}_float32_outputs")
