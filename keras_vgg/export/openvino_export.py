"""OpenVINO IR files of the serving model: written by Keras's
``Model.export(format="openvino")`` (``model.xml`` + ``model.bin``, float32 weights),
quantized to int8 by NNCF's post-training quantization (calibrated on the representative
images), and run with OpenVINO on the CPU.

The model takes ``pixels``, float32 RGB values 0-255 of shape ``(batch, H, W, 3)``, and
returns the probabilities; the preprocessing is inside (``serving_model``). OpenVINO's CPU
plugin computes in bfloat16 by default on CPUs with AMX: each file records the inference
precision it was checked in (``INFERENCE_PRECISION_HINT``: ``f32``, or ``bf16`` for
``precision="bfloat16"``) in its runtime info, and :class:`OpenVINORunner` compiles with it
(``inference_hint``). OpenVINO and NNCF come with the ``serve`` extra.

Example:
    >>> from keras_vgg.export.openvino_export import HINTS, OPENVINO_FILES, openvino_backends
    >>> OPENVINO_FILES["int8"], HINTS["bfloat16"], openvino_backends()
    ('openvino_int8/model.xml', 'bf16', ('tensorflow', 'torch'))
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from keras_vgg._extras import require
from keras_vgg.export.formats import CALIBRATION_IMAGES, OPENVINO_FILES
from keras_vgg.export.serving import keras_export
from keras_vgg.layers import LocalResponseNormalization

# The inference precision hint a file is compiled with, by the export's precision.
HINTS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
HINT_KEY = ["runtime_options", "INFERENCE_PRECISION_HINT"]  # where the file records it
# The jax backend's Model.export(format="openvino") stops at XlaCallModule ("no conversion
# rule"), measured with Keras 3.15 and OpenVINO 2026.4 (docs/backends.md).
BACKENDS = ("tensorflow", "torch")


def openvino_backends() -> tuple:
    """The Keras backends that write an OpenVINO file here."""
    return BACKENDS


def require_openvino(quantize=("none",)):
    """Imports OpenVINO (and NNCF for int8), or a one-line error naming the ``serve``
    extra."""
    if "int8" in quantize:
        require("nncf", "serve")
    return require("openvino", "serve")


def write_openvino(serving, path, quantize="none", representative=None,
                   precision="float32") -> str:
    """``serving`` (see ``serving_model``) as OpenVINO IR at ``path`` (``.xml``, with its
    ``.bin`` beside): float32, or int8 (``quantize="int8"``: NNCF calibrated on
    ``representative``, uint8 RGB images at the model's size). The file records the
    inference precision hint of ``precision``; returns it."""
    ov = require_openvino((quantize,))
    path = Path(path)
    if quantize == "int8" and (representative is None or len(representative) == 0):
        raise ValueError(f"Expected `representative_data` (--representative-data: training "
                         f"images) to calibrate {OPENVINO_FILES['int8']} with NNCF. "
                         "Received: representative_data=None")
    size = tuple(serving.input_shape[1:3])
    with tempfile.TemporaryDirectory() as tmp:
        model = _keras_openvino(ov, serving, Path(tmp) / "model.xml", size)
        if quantize == "int8":
            nncf = require("nncf", "serve")
            images = [image[None] for image in np.asarray(representative[:CALIBRATION_IMAGES], "float32")]
            with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars
                model = nncf.quantize(model, nncf.Dataset(images), subset_size=len(images),
                                      **_nncf_options(nncf, serving))
        hint = HINTS[precision]
        model.set_rt_info(hint, HINT_KEY)
        path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(path), compress_to_fp16=False)
    return hint


def _nncf_options(nncf, serving) -> dict:
    """NNCF's options for ``serving``: bias correction off for a model with an LRN. Its
    window sum is a 1x1 conv followed by a scalar add of the bias (a (1, 1, 1, 1) constant
    in the IR), which NNCF's bias correction takes for the conv's bias and fails to write
    back ("cannot reshape array of size 64 into shape (1,1,1,1)": VGG-F at 224, NNCF 3.4)."""
    lrn = any(isinstance(layer, LocalResponseNormalization) for layer in _all_layers(serving))
    if not lrn:
        return {}
    return {"advanced_parameters": nncf.AdvancedQuantizationParameters(
        disable_bias_correction=True)}


def _all_layers(model):
    """Every layer of ``model``, nested models' included."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _keras_openvino(ov, serving, path, size):
    """Keras's OpenVINO export of ``serving``, read back with a ``(batch, H, W, 3)`` input
    (the torch backend's trace leaves every dimension open)."""
    keras_export(serving, path, "openvino", "OpenVINO IR")
    model = ov.Core().read_model(str(path))
    model.reshape([-1, *size, 3])
    return model


def inference_hint(model) -> str:
    """The inference precision hint an OpenVINO model records (``f32`` when none)."""
    return model.get_rt_info(HINT_KEY).astype(str) if model.has_rt_info(HINT_KEY) else "f32"


class OpenVINORunner:
    """Runs an OpenVINO ``.xml`` (or a folder holding ``model.xml``) on the CPU, in the
    inference precision the file records, on uint8 (or float) images of its input size."""

    def __init__(self, path):
        ov = require_openvino()
        path = Path(path)
        if path.is_dir():
            path = path / "model.xml"
        core = ov.Core()
        model = core.read_model(str(path))
        self.hint = inference_hint(model)
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": self.hint,
            "INFERENCE_NUM_THREADS": os.cpu_count() or 1})
        shape = model.inputs[0].get_partial_shape()
        self.image_size = (shape[1].get_length(), shape[2].get_length())

    def __call__(self, images):
        pixels = np.asarray(images, dtype="float32")
        return np.asarray(self.compiled(pixels)[0], "float32")
