"""Converters: published VGG weights from PyTorch and MatConvNet files into keras_vgg models.

Sources and their layouts:

- torchvision / timm state dicts (VGG11/13/16/19 and ``_bn``): ``.pth``/``.pt`` (read with
  ``torch.load(weights_only=True)``, needs torch), ``.safetensors`` and ``.npz`` (no torch).
  Conv kernels OIHW -> HWIO; ``Linear`` weights transposed; fc1 re-ordered from PyTorch's
  (C, H, W) flatten to Keras's (H, W, C); BatchNorm running statistics; timm's fc1/fc2 as
  convolutions. Its classifier expects a 7x7x512 map (``AdaptiveAvgPool2d(7)``): build with
  ``adaptive_pool=7`` to use it at input sizes other than 224.
- MatConvNet SimpleNN ``.mat`` (VGG-F/M/S, M-2048/1024/128, verydeep-16/19), read with
  SciPy: filters are already HWIO, fc layers are convolutions, ``meta.normalization
  .averageImage`` is the preprocessing, ``meta.classes.description`` the class names.

Every file is checked against the model before anything is assigned: a layer that does not
fit raises :class:`ConversionError` naming the layer and both shapes, and the model keeps its
weights.

Example:
    >>> import numpy as np, os, tempfile
    >>> from keras_vgg import build_vgg
    >>> state = {"features.0.weight": np.ones((64, 3, 3, 3), "float32"),
    ...          "features.0.bias": np.zeros(64, "float32")}
    >>> path = os.path.join(tempfile.mkdtemp(), "one_conv.npz")
    >>> np.savez(path, **state)
    >>> build_vgg("vgg11", include_top=False, weights=path)
    Traceback (most recent call last):
    ...
    keras_vgg.convert.ConversionError: The file has 1 conv layers, vgg11 has 8: it is for another variant. Received: weights='...one_conv.npz'
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass

import keras
import numpy as np

from keras_vgg._extras import require
from keras_vgg._helpers import OutputExists, expected as _expected
from keras_vgg.builder import build_graph
from keras_vgg.spec import build_spec
from keras_vgg.configs import LRN, Conv, get_config, layer_names
from keras_vgg.preprocessing import Preprocessing

TORCH_SUFFIXES = (".pth", ".pt")
STATE_DICT_SUFFIXES = TORCH_SUFFIXES + (".safetensors", ".npz")
SOURCE_SUFFIXES = STATE_DICT_SUFFIXES + (".mat",)
METADATA_GROUP = "keras_vgg"  # in converted .weights.h5 files: variant, preprocessing, classes

# Where torchvision and timm keep the three FC layers (fc1, fc2, predictions).
_TORCH_HEADS = (
    ("classifier.0", "classifier.3", "classifier.6"),  # torchvision
    ("pre_logits.fc1", "pre_logits.fc2", "head.fc"),  # timm
)


class ConversionError(ValueError):
    """A source file that does not fit the model (or is not a VGG file at all)."""


@dataclass
class SourceLayer:
    """One weight layer of a source file, already in Keras's layout."""

    name: str  # as the file calls it
    kernel: np.ndarray  # HWIO; fc layers too, as (h, w, inputs, units)
    bias: np.ndarray
    batch_norm: tuple | None = None  # (gamma, beta, moving_mean, moving_variance)
    stride: tuple | None = None  # (y, x), where the file records it
    pad: tuple | None = None  # (top, bottom, left, right)


@dataclass
class Source:
    """A source file read: its conv and fc layers, preprocessing and class names."""

    path: str
    format: str  # "torch" or "matconvnet"
    convs: list
    fcs: list
    preprocessing: Preprocessing
    class_names: list | None = None
    lrns: list | None = None  # [(name, (N, kappa, alpha, beta))] where the file records them


def _unreadable(path, error) -> ValueError:
    return ValueError(
        f"Could not read {os.path.basename(path)}: the file is truncated or corrupted "
        f"({type(error).__name__}: {str(error)[:200]}). Received: weights={os.fspath(path)!r}"
    )


# --------------------------------------------------------------------------------------
# PyTorch state dicts (torchvision, timm)


def read_state_dict(path) -> dict:
    """A torchvision/timm state dict as ``{key: numpy array}`` from .pth/.pt/.safetensors/.npz."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in STATE_DICT_SUFFIXES:
        raise ValueError(f"Expected a state dict file ({', '.join(STATE_DICT_SUFFIXES)}). "
                         f"Received: weights={path!r}")
    if suffix == ".safetensors":  # outside the try: a missing package is not a bad file
        load_file = require("safetensors.numpy", "convert", package="safetensors").load_file
    try:
        if suffix == ".safetensors":
            return load_file(path)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                return {key: arrays[key] for key in arrays.files}
    except Exception as error:  # safetensors, zipfile and numpy each raise their own kind
        raise _unreadable(path, error) from error
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"Reading {os.path.basename(path)} needs PyTorch (pip install torch). Without torch, "
            "save the state dict as .safetensors or .npz. Received: weights=" + repr(path)
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise _unreadable(path, error) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict", state.get("model")), dict):
        state = state.get("state_dict", state.get("model"))  # a training checkpoint
    return {key: value.float().numpy() for key, value in state.items() if hasattr(value, "numpy")}


def _fc_kernel(weight, inputs_per_position: int, name: str):
    """A torch fc weight as (h, w, inputs, units): Linear (units, C*h*w) flattened C, H, W,
    or timm's convolution (units, C, h, w)."""
    if weight.ndim == 4:
        return weight.transpose(2, 3, 1, 0)
    units, inputs = weight.shape
    side = math.isqrt(inputs // inputs_per_position)
    if side * side * inputs_per_position != inputs:
        raise ConversionError(
            f"{name} takes {inputs} inputs, which is not a square map of {inputs_per_position} "
            "channels, as a VGG fc1 is."
        )
    return weight.reshape(units, inputs_per_position, side, side).transpose(2, 3, 1, 0)


def torch_source(state: dict, path: str = "") -> Source:
    """A torchvision or timm VGG state dict as a :class:`Source` (mode "torch")."""
    indices = sorted(
        int(m.group(1)) for key in state if (m := re.fullmatch(r"features\.(\d+)\.weight", key))
    )
    if not indices:
        raise ConversionError(
            "Not a torchvision/timm VGG state dict: no 'features.N.weight' keys. "
            f"First keys: {sorted(state)[:5]}. Received: weights={path!r}"
        )
    convs = []
    for i in indices:
        key = f"features.{i}"
        weight = state[f"{key}.weight"]
        if weight.ndim == 4:
            if f"{key}.bias" not in state:
                raise ConversionError(f"{key} has a weight but no bias. Received: weights={path!r}")
            convs.append(SourceLayer(key, weight.transpose(2, 3, 1, 0), state[f"{key}.bias"]))
        elif f"{key}.running_mean" in state and convs:
            convs[-1].batch_norm = tuple(
                state[f"{key}.{part}"] for part in ("weight", "bias", "running_mean", "running_var")
            )
    fcs = []
    for head in _TORCH_HEADS:
        if all(f"{name}.weight" in state for name in head):
            channels = convs[-1].kernel.shape[-1]
            for position, name in enumerate(head):
                weight = state[f"{name}.weight"]
                kernel = (_fc_kernel(weight, channels, name) if position == 0 or weight.ndim == 4
                          else weight.T[None, None])
                fcs.append(SourceLayer(name, kernel, state[f"{name}.bias"]))
            break
    return Source(path, "torch", convs, fcs, Preprocessing("torch"))


# --------------------------------------------------------------------------------------
# MatConvNet SimpleNN .mat


@dataclass
class MatConvNetFile:
    """A MatConvNet SimpleNN file: its layers (dicts), average image and class names."""

    layers: list
    mean: np.ndarray
    class_names: list | None
    class_ids: list | None


def _one(value):
    """MATLAB wraps everything in arrays: unwrap the 1-element object arrays."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.item()
    return value


def _text(value) -> str:
    value = np.asarray(_one(value)).ravel()
    return str(value[0]) if value.size else ""


def _texts(cell) -> list:
    return [_text(item) for item in np.asarray(cell, dtype=object).ravel()]


def _field(struct, name, default=None):
    return _one(getattr(struct, name, default)) if struct is not None else default


def _matconvnet_layer(struct) -> dict:
    layer = {"name": _text(_field(struct, "name", "")), "type": _text(_field(struct, "type", ""))}
    if layer["type"] == "lrn":
        layer["param"] = tuple(float(v) for v in np.asarray(_field(struct, "param")).ravel())
    if layer["type"] == "conv":
        weights = np.asarray(getattr(struct, "weights", None), dtype=object).ravel()
        if weights.size == 0:  # files before MatConvNet beta-17 keep filters/biases apart
            weights = [_field(struct, "filters"), _field(struct, "biases")]
        filters = np.asarray(_one(weights[0]), dtype="float32")
        filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))  # MATLAB drops 1s
        stride = np.asarray(_field(struct, "stride", 1), dtype=int).ravel()
        pad = np.asarray(_field(struct, "pad", 0), dtype=int).ravel()
        layer.update(
            filters=filters,
            biases=np.asarray(_one(weights[1]), dtype="float32").ravel(),
            stride=tuple(int(v) for v in np.resize(stride, 2)),
            pad=tuple(int(v) for v in (np.repeat(pad, 2) if pad.size == 2 else np.resize(pad, 4))),
        )
    return layer


def read_matconvnet(path) -> MatConvNetFile:
    """Read a MatConvNet SimpleNN ``.mat`` (``layers``, ``meta.normalization``, ``meta.classes``)."""
    scipy_io = require("scipy.io", "convert", package="scipy")
    path = os.fspath(path)
    try:
        mat = scipy_io.loadmat(path, struct_as_record=False)
    except NotImplementedError as error:  # MATLAB v7.3 files are HDF5
        raise ValueError(
            f"{os.path.basename(path)} is a MATLAB v7.3 (HDF5) file. Expected a v5/v7 .mat as "
            "MatConvNet publishes them; re-save it in MATLAB with save(..., '-v7'). "
            f"Received: weights={path!r}"
        ) from error
    except Exception as error:  # scipy raises ValueError, TypeError, OSError, zlib errors...
        raise _unreadable(path, error) from error
    net = _one(mat.get("net")) if "net" in mat else None  # saved as a struct named net
    layers = mat.get("layers") if net is None else getattr(net, "layers", None)
    if layers is None:
        raise ConversionError(f"Not a MatConvNet SimpleNN file: no 'layers'. Received: weights={path!r}")
    meta = _one(mat.get("meta")) if net is None else _field(net, "meta")
    holder = meta if meta is not None else net  # before beta-17: fields on the net itself
    if holder is None:
        normalization, classes = _one(mat.get("normalization")), _one(mat.get("classes"))
    else:
        normalization, classes = _field(holder, "normalization"), _field(holder, "classes")
    mean = _field(normalization, "averageImage")
    if mean is None:
        raise ConversionError(f"The file has no meta.normalization.averageImage. Received: weights={path!r}")
    mean = np.asarray(mean, dtype="float32")
    mean = mean.reshape(3) if mean.size == 3 else mean
    names = getattr(classes, "description", None) if classes is not None else None
    ids = getattr(classes, "name", None) if classes is not None else None
    return MatConvNetFile(
        layers=[_matconvnet_layer(_one(item)) for item in np.asarray(layers, dtype=object).ravel()],
        mean=mean,
        class_names=None if names is None else _texts(names),
        class_ids=None if ids is None else _texts(ids),
    )


def matconvnet_source(path) -> Source:
    """A MatConvNet file as a :class:`Source` (mode "mean_image" with its average image)."""
    net = read_matconvnet(path)
    layers = [
        SourceLayer(layer["name"], layer["filters"], layer["biases"],
                    stride=layer["stride"], pad=layer["pad"])
        for layer in net.layers if layer["type"] == "conv"
    ]
    fcs = [layer for layer in layers if layer.name.startswith("fc")]
    for layer in fcs:
        layer.stride = layer.pad = None  # an fc layer as a conv: its stride/pad say nothing
    return Source(
        os.fspath(path), "matconvnet", [l for l in layers if l not in fcs], fcs,
        Preprocessing("mean_image", mean=net.mean), net.class_names,
        lrns=[(layer["name"], layer["param"]) for layer in net.layers if layer["type"] == "lrn"],
    )


def read_source(path) -> Source:
    """Any supported source file, by its suffix."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".mat":
        return matconvnet_source(path)
    return torch_source(read_state_dict(path), os.fspath(path))


# --------------------------------------------------------------------------------------
# Assigning a source to a model


def _fits(layer_name: str, what: str, expected, array, source_name: str):
    if tuple(expected) != tuple(array.shape):
        raise ConversionError(
            f"Layer {layer_name}: the model's {what} has shape {tuple(expected)}, the file's "
            f"({source_name}) {tuple(array.shape)}."
        )
    return array.astype("float32")


def _conv_values(model, name, spec: Conv, layer: SourceLayer) -> dict:
    """{keras layer name: [arrays]} for one conv (and its BN), all shapes checked."""
    if layer.stride is not None and (
        layer.stride != (spec.stride,) * 2 or layer.pad != (spec.pad,) * 4
    ):
        raise ConversionError(
            f"Layer {name}: the model uses stride {spec.stride} and pad {spec.pad}, the file's "
            f"({layer.name}) stride {layer.stride} and pad {layer.pad}: it is another variant."
        )
    conv = model.get_layer(name)
    values = {name: [_fits(name, "kernel", conv.kernel.shape, layer.kernel, layer.name),
                     _fits(name, "bias", conv.bias.shape, layer.bias, layer.name)]}
    has_bn = any(l.name == f"{name}_bn" for l in model.layers)
    if has_bn != (layer.batch_norm is not None):
        raise ConversionError(
            f"Layer {name}: the model {'has' if has_bn else 'has no'} batch norm, the file "
            f"{'has' if layer.batch_norm is not None else 'has no'} BN statistics: use the "
            f"{'plain' if not layer.batch_norm else '_bn'} variant."
        )
    if has_bn:
        bn = model.get_layer(f"{name}_bn")
        values[bn.name] = [_fits(bn.name, "BN " + part, v.shape, array, layer.name)
                           for part, v, array in zip(("gamma", "beta", "mean", "variance"),
                                                     bn.weights, layer.batch_norm)]
    return values


def _fc_values(model, fcs: list) -> dict:
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    if not fcs:
        raise ConversionError("The file has no classifier (fc layers). Expected include_top=False "
                              "(keras-vgg convert --no-top).")
    if len(fcs) != len(dense):
        raise ConversionError(f"The file has {len(fcs)} fc layers, the model {len(dense)}.")
    values = {}
    for keras_layer, layer in zip(dense, fcs):
        inputs = tuple(keras_layer.input.shape[1:])
        units = keras_layer.kernel.shape[-1]
        if keras_layer is dense[0]:  # fc1 after flatten: the kernel is for an (h, w, c) map
            inputs = tuple(model.get_layer("flatten").input.shape[1:])
        expected = (inputs + (units,)) if len(inputs) == 3 else (1, 1) + inputs + (units,)
        kernel = _fits(keras_layer.name, "kernel (as h, w, inputs, units)", expected,
                       layer.kernel, layer.name)
        values[keras_layer.name] = [
            kernel.reshape(-1, units),  # (h, w, c) row order = Keras's Flatten
            _fits(keras_layer.name, "bias", keras_layer.bias.shape, layer.bias, layer.name),
        ]
    return values


def _check_lrns(config, lrns):
    """MatConvNet's LRN [N kappa alpha beta] against the model's (alpha is per element in both)."""
    ours = [(name, (2 * s.depth_radius + 1, s.bias, s.alpha, s.beta))
            for name, s in layer_names(config) if isinstance(s, LRN)]
    if len(ours) != len(lrns):
        raise ConversionError(f"The file has {len(lrns)} LRN layers, {config.name} has "
                              f"{len(ours)}: it is for another variant.")
    for (name, expected), (file_name, param) in zip(ours, lrns):
        if not np.allclose(expected, param, rtol=1e-6):
            raise ConversionError(
                f"Layer {name}: the model's LRN [N kappa alpha beta] is {list(expected)}, the "
                f"file's ({file_name}) {list(param)}: it is another variant."
            )


def assign(model: keras.Model, source: Source, variant) -> None:
    """Put ``source``'s weights into ``model`` (a keras_vgg ``variant``): all or nothing."""
    config = get_config(variant)
    specs = [(name, spec) for name, spec in layer_names(config) if isinstance(spec, Conv)]
    if len(source.convs) != len(specs):
        raise ConversionError(
            f"The file has {len(source.convs)} conv layers, {config.name} has {len(specs)}: "
            f"it is for another variant. Received: weights={source.path!r}"
        )
    values = {}
    try:
        for (name, spec), layer in zip(specs, source.convs):
            values.update(_conv_values(model, name, spec, layer))
        if source.lrns is not None:
            _check_lrns(config, source.lrns)
        if any(isinstance(l, keras.layers.Dense) for l in model.layers):
            values.update(_fc_values(model, source.fcs))
    except ConversionError as error:
        raise ConversionError(f"{error} Received: weights={source.path!r}") from None
    for name, arrays in values.items():
        model.get_layer(name).set_weights(arrays)
    model.preprocessing = source.preprocessing
    model.class_names = source.class_names


# --------------------------------------------------------------------------------------
# Keras weights files with our metadata


def save_converted(model: keras.Model, output: str, variant: str, source: str = "") -> str:
    """Write ``model``'s weights as a Keras ``.weights.h5`` plus what the weights imply
    (variant, preprocessing, class names), atomically: a temporary file, then a rename."""
    import h5py

    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".keras_vgg-", suffix=".weights.h5", dir=folder)
    os.close(handle)
    try:
        model.save_weights(temporary, overwrite=True)
        preprocessing = getattr(model, "preprocessing", None)
        with h5py.File(temporary, "a") as f:
            group = f.create_group(METADATA_GROUP)
            group.attrs["info"] = json.dumps({
                "variant": get_config(variant).name,
                "source": os.path.basename(source),
                "preprocessing": None if preprocessing is None else preprocessing.mode,
                "widths": None if getattr(model, "widths", None) is None else list(model.widths),
            })
            if preprocessing is not None and preprocessing.mean is not None:
                group.create_dataset("mean", data=preprocessing.mean)
            if getattr(model, "class_names", None) is not None:
                group.create_dataset("class_names", data=np.array(model.class_names, dtype=object),
                                     dtype=h5py.string_dtype())
        os.replace(temporary, output)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return output


def read_metadata(path) -> dict | None:
    """The metadata :func:`save_converted` wrote, or None for a plain Keras weights file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if METADATA_GROUP not in f:
                return None
            group = f[METADATA_GROUP]
            info = json.loads(group.attrs["info"])
            mean = group["mean"][()] if "mean" in group else None
            names = ([n.decode() if isinstance(n, bytes) else n for n in group["class_names"][()]]
                     if "class_names" in group else None)
    except OSError:
        return None  # not HDF5 (a .keras zip): Keras reports what is wrong with it
    mode = info.get("preprocessing")
    info["preprocessing"] = None if mode is None else Preprocessing(mode, mean=mean)
    info["class_names"] = names
    return info


def convert(source, variant, output, *, include_top=True, input_shape=None, classes=1000,
            adaptive_pool=None, widths=None, overwrite=False) -> str:
    """Convert a torchvision/timm/MatConvNet file into a Keras ``.weights.h5`` for ``variant``.

    ``build_vgg(variant, weights=output, ...)`` (same ``include_top``/``input_shape``/
    ``classes``/``adaptive_pool``) then loads it, preprocessing and class names included.
    ``classes`` other than 1000 is for your own fine-tuned checkpoints; ``widths`` (one int
    per conv) for a pruned network's file.
    """
    output = os.fspath(output)
    if not output.endswith(".weights.h5"):
        raise ValueError(f"Expected `output` (-o/--output) to end in .weights.h5. "
                         f"Received: output={output!r}")
    if os.path.exists(output) and not overwrite:
        raise OutputExists(f"Expected `output` (-o/--output) not to exist (pass overwrite=True, "
                           f"--overwrite, to replace it). Received: output={output!r}")
    if not os.path.isfile(source):
        raise _expected("`source` to be an existing file to convert", source=os.fspath(source))
    model = build_graph(build_spec(variant, widths=widths, include_top=include_top,
                                   input_shape=input_shape, classes=classes,
                                   adaptive_pool=adaptive_pool))
    assign(model, read_source(source), get_config(variant).name)
    return save_converted(model, output, variant, os.fspath(source))
