"""LoRA phases: low-rank adapters on the kernels a phase trains, merged whenever it saves.

A phase with ``lora_rank: R`` (``phases.N.lora_rank``) calls Keras's own ``enable_lora(R)`` on
every Conv2D and Dense layer of the base that its ``freeze`` leaves trainable: the kernel W
stays fixed and the layer computes with W + A @ B (Keras scales A @ B by alpha / R, alpha = R).
Biases stay fixed too, so the base learns only through the adapters (and its unfrozen
BatchNormalization layers, when they train); the new head is small and trains fully.

Keras shapes the adapters as ``A: kernel.shape[:-1] + (R,)`` and ``B: (R, out)``, so a layer
adds ``R * (in + out)`` parameters, ``in`` being a Dense layer's inputs and a KxK Conv2D's
``K * K * channels_in``; a rank above ``min(in, out)`` (the layer's size) is refused.

What a run saves is plain: :func:`merged` rebuilds the model from its config without
``lora_rank`` and gives each layer its merged kernel, so best.keras (and every export) is a
VGG like any other, loaded with ``safe_mode=True`` and no LoRA layer. Resuming: Keras saves a
LoRA layer's merged kernel alone (BackupAndRestore's backup holds no adapters), so
:class:`AdapterBackup` keeps the fixed kernels and each epoch's adapters in the phase's
backup folder and puts them back after BackupAndRestore.

Example:
    >>> from keras_vgg.finetune.recipe import Recipe
    >>> from keras_vgg.finetune.model import build_finetune_model, freeze
    >>> from keras_vgg.finetune.lora import adapter_params, enable, merged
    >>> recipe = Recipe().but({"model.name": "vgg11", "model.image_size": 32})
    >>> model = build_finetune_model(recipe, num_classes=3)
    >>> _ = freeze(model, "block4")
    >>> [layer.name for layer in enable(model, 4, "phases.1.lora_rank")]
    ['block5_conv1', 'block5_conv2']
    >>> adapter_params(model) == 2 * 4 * (3 * 3 * 512 + 512)
    True
    >>> plain = merged(model)
    >>> any("lora_rank" in str(layer.get_config()) for layer in plain.get_layer("base").layers)
    False
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np

from keras_vgg.finetune.model import freeze

ADAPTED = (keras.layers.Conv2D, keras.layers.Dense)
LORA_KEYS = ("lora_rank", "lora_alpha")


def trained_kernels(model) -> list:
    """The base's Conv2D and Dense layers that train as the model is frozen now."""
    base = model.get_layer("base")
    if not base.trainable:
        return []
    return [layer for layer in base.layers if isinstance(layer, ADAPTED) and layer.trainable]


def layer_size(layer) -> int:
    """The largest useful rank of ``layer``: ``min(in, out)`` of its kernel as a matrix."""
    shape = layer.kernel.shape
    return int(min(np.prod(shape[:-1]), shape[-1]))


def check_ranks(recipe, model):
    """Refuses, before anything trains, a LoRA phase whose rank is above the size of a layer
    it would adapt, or one that leaves no conv or dense layer of the base to adapt. The
    model's trainable flags are set back as ``freeze`` sets them for each phase."""
    for index, phase in enumerate(recipe.phases):
        if not phase.lora_rank:
            continue
        key = f"phases.{index}.lora_rank"
        freeze(model, phase.freeze)
        layers = trained_kernels(model)
        if not layers:
            raise ValueError(f"Expected `{key}` = 0: phases.{index}.freeze={phase.freeze!r} "
                             "leaves no conv or dense layer of the base to adapt. Received: "
                             f"{key}={phase.lora_rank}")
        small = min(layers, key=layer_size)
        if phase.lora_rank > layer_size(small):
            raise ValueError(
                f"Expected `{key}` <= {layer_size(small)}, the size of {small.name} (min(in, "
                f"out) of its {tuple(small.kernel.shape)} kernel), the smallest layer "
                f"phase {index} adapts. Received: {key}={phase.lora_rank}")


def enable(model, rank: int, key: str) -> list:
    """Adapters of ``rank`` on the layers :func:`trained_kernels` finds (their kernels and
    biases fixed); returns those layers. ``key`` is the recipe's, named in errors."""
    layers = trained_kernels(model)
    if not layers:
        raise ValueError(f"Expected `{key}` = 0 on a phase that trains no conv or dense layer "
                         f"of the base. Received: {key}={rank}")
    for layer in layers:
        if rank > layer_size(layer):
            raise ValueError(f"Expected `{key}` <= {layer_size(layer)} (the size of "
                             f"{layer.name}). Received: {key}={rank}")
        layer.enable_lora(rank)
        if layer.use_bias:
            layer.bias.trainable = False
    return layers


def adapted(model) -> list:
    """Every layer of ``model`` (nested models included) with LoRA enabled."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += adapted(layer)
        elif getattr(layer, "lora_enabled", False):
            found.append(layer)
    return found


def adapter_params(model) -> int:
    """The parameters of every adapter in ``model``: rank * (in + out) per layer."""
    return sum(int(np.prod(v.shape)) for layer in adapted(model)
               for v in (layer.lora_kernel_a, layer.lora_kernel_b))


def _without_lora(config):
    """``config`` (nested plain values) with every ``lora_rank``/``lora_alpha`` key dropped."""
    if isinstance(config, dict):
        return {k: _without_lora(v) for k, v in config.items() if k not in LORA_KEYS}
    if isinstance(config, list):
        return [_without_lora(item) for item in config]
    return config


def _copy_merged(source, target):
    """``target``'s weights from ``source`` (the same graph): a LoRA layer gives its merged
    kernel (Keras's ``kernel``) and its bias, every other layer its weights."""
    for a, b in zip(source.layers, target.layers, strict=True):
        if isinstance(a, keras.Model):
            _copy_merged(a, b)
        elif getattr(a, "lora_enabled", False):
            merged_kernel = keras.ops.convert_to_numpy(a.kernel)
            b.set_weights([merged_kernel] + ([np.asarray(a.bias)] if a.use_bias else []))
        else:
            b.set_weights(a.get_weights())


def merged(model) -> keras.Model:
    """A plain copy of ``model``: its config without LoRA, each kernel the merged one. A
    model without adapters comes back as it is."""
    if not adapted(model):
        return model
    config = _without_lora(keras.saving.serialize_keras_object(model))
    plain = keras.saving.deserialize_keras_object(config)
    _copy_merged(model, plain)
    return plain


def first_images(dataset):
    """The images of ``dataset``'s first batch ((images, labels[, weights]) batches)."""
    return keras.ops.convert_to_numpy(next(iter(dataset))[0])


def trainable_params(model) -> int:
    """The parameters ``model`` trains as it is frozen (and adapted) now."""
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def record(folder, phase: str, model, saves: MergedSaves):
    """Adds phase ``phase``'s LoRA figures to the run folder's lora.json: the rank, the
    layers adapted, the adapters' and all trainable parameters, and the largest difference
    between the adapted model's outputs and the merged model's, over the phase's saves of
    best.keras (before a resume too) and its last epoch."""
    layers = adapted(model)
    records = json.loads(folder.lora.read_text()) if folder.lora.exists() else {}
    earlier = records.get(phase, {}).get("max_abs_diff")
    last = max_abs_diff(model, merged(model), saves.images)
    diff = max(d for d in [*saves.diffs, earlier, last] if d is not None)
    records[phase] = {"rank": layers[0].lora_rank, "layers": [l.name for l in layers],
                      "adapter_params": adapter_params(model),
                      "trainable_params": trainable_params(model), "max_abs_diff": diff}
    folder.write(folder.lora.name, records)


def max_abs_diff(model, plain, images) -> float:
    """The largest difference between the two models' outputs on ``images`` (inference)."""
    a = keras.ops.convert_to_numpy(model(images, training=False))
    b = keras.ops.convert_to_numpy(plain(images, training=False))
    return float(np.max(np.abs(a.astype("float64") - b.astype("float64"))))


class MergedSaves:
    """What a checkpoint saves in a LoRA phase: ``save`` writes :func:`merged` (a plain
    model), after checking it predicts what the adapted model predicts on ``images``;
    ``diffs`` holds the max abs difference of each save. Give it to the checkpoint as its
    model (ModelCheckpoint only calls ``save``)."""

    def __init__(self, model, images):
        self.model, self.images, self.diffs = model, images, []

    def jax_state_sync(self):  # Callback.model syncs a JAX model's state before a save
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()

    def save(self, filepath, overwrite=True):
        plain = merged(self.model)
        self.diffs.append(max_abs_diff(self.model, plain, self.images))
        plain.save(filepath, overwrite=overwrite)


class AdapterBackup:
    """Exact resume of a LoRA phase. Keras's backup of a LoRA layer holds its merged kernel
    alone; this keeps, in the phase's backup ``folder``, the fixed kernels (``kernels.npz``,
    once) and the adapters after each epoch (``adaptersE.npz``, the last three). ``saving``
    goes before BackupAndRestore among the callbacks (the adapters are on disk before the
    backup that needs them), ``restoring`` after it (it puts back the fixed kernels and the
    adapters of the epoch BackupAndRestore restored)."""

    def __init__(self, folder, layers):
        self.folder, self.layers = Path(folder), list(layers)
        self.saving = keras.callbacks.LambdaCallback(on_train_begin=self._keep_kernels,
                                                     on_epoch_end=self._save)
        self.restoring = _Restoring(self)

    def _write(self, name, arrays):
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.folder / name)

    def _keep_kernels(self, logs=None):
        if not (self.folder / "kernels.npz").exists():  # before any restore: the fixed ones
            self._write("kernels.npz", {l.name: np.asarray(l._kernel) for l in self.layers})

    def _save(self, epoch, logs=None):
        self._write(f"adapters{epoch + 1}.npz", {
            f"{l.name}/{part}": np.asarray(getattr(l, f"lora_kernel_{part}"))
            for l in self.layers for part in ("a", "b")})
        for old in self.folder.glob("adapters*.npz"):
            if int(old.stem[len("adapters"):]) < epoch - 1:
                old.unlink()

    def restore(self, epoch):
        """The fixed kernels and the adapters after ``epoch`` epochs put back."""
        kernels = np.load(self.folder / "kernels.npz")
        adapters = np.load(self.folder / f"adapters{epoch}.npz")
        for layer in self.layers:
            layer._kernel.assign(kernels[layer.name])
            layer.lora_kernel_a.assign(adapters[f"{layer.name}/a"])
            layer.lora_kernel_b.assign(adapters[f"{layer.name}/b"])


class _Restoring(keras.callbacks.Callback):
    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_train_begin(self, logs=None):
        restored = self.model._initial_epoch  # set by BackupAndRestore when it restored
        if restored:
            self.backup.restore(restored)
