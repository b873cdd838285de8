"""ONNX files of the serving model: written by Keras's ``Model.export(format="onnx")``,
quantized to int8 by ONNX Runtime's static quantization (QDQ, per-channel, calibrated on
the representative images), and run with ONNX Runtime.

The file takes ``pixels``, float32 RGB values 0-255 of shape ``(batch, H, W, 3)``, and
returns the probabilities; the preprocessing is inside (``serving_model``). ONNX Runtime,
onnx and the converter Keras uses come with the ``serve`` extra.

Example:
    >>> from keras_vgg.export.onnx_export import ONNX_FILES, onnx_backends
    >>> ONNX_FILES["int8"], onnx_backends()
    ('model_int8.onnx', ('tensorflow', 'torch'))
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import keras
import numpy as np

from keras_vgg._extras import require
from keras_vgg.export.formats import CALIBRATION_IMAGES, ONNX_FILES
from keras_vgg.export.serving import keras_export

# What Keras's Model.export needs to write an ONNX file, by backend (measured, Keras 3.15:
# docs/backends.md). The jax backend writes one through jax2onnx, but its MaxPool nodes
# fail in ONNX Runtime ("Unsupported pooling size"), and every VGG has them.
WRITERS = {"tensorflow": ("tf2onnx", "onnx"), "torch": ("onnxscript", "onnx")}


def onnx_backends() -> tuple:
    """The Keras backends that write a VGG's ONNX file here."""
    return tuple(WRITERS)


def require_onnx(quantize=("none",)):
    """Imports what writing and checking the ONNX files of ``quantize`` modes needs under
    this backend, or a one-line error naming the ``serve`` extra."""
    for module in WRITERS.get(keras.backend.backend(), ()):
        require(module, "serve")
    return require("onnxruntime", "serve")


def write_onnx(serving, path, quantize="none", representative=None) -> None:
    """``serving`` (see ``serving_model``) as an ONNX file at ``path``: float32, or int8
    (``quantize="int8"``: static QDQ quantization calibrated on ``representative``, uint8
    RGB images at the model's size)."""
    path = Path(path)
    if quantize == "none":
        _keras_onnx(serving, path)
        return
    if representative is None or len(representative) == 0:
        raise ValueError("Expected `representative_data` (--representative-data: training "
                         f"images) to calibrate {ONNX_FILES['int8']}. Received: "
                         "representative_data=None")
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "model.onnx"
        _keras_onnx(serving, float_path)
        quantization = require("onnxruntime.quantization", "serve")
        with _root_log_level(logging.ERROR):  # "consider pre-processing" (shapes are fixed)
            quantization.quantize_static(
                str(float_path), str(path),
                _Calibration(float_path, representative[:CALIBRATION_IMAGES]),
                quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8)


@contextlib.contextmanager
def _root_log_level(level):
    """The root logger (ONNX Runtime's quantizer warns there) at ``level`` inside."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(max(level, before))
    try:
        yield
    finally:
        root.setLevel(before)


def _keras_onnx(serving, path):
    keras_export(serving, path, "onnx", Path(path).name)


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over uint8 images: one float32 image a time."""

    def __init__(self, path, images):
        ort = require("onnxruntime", "serve")
        self.name = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) \
            .get_inputs()[0].name
        self.images = iter(np.asarray(images, dtype="float32"))

    def get_next(self):
        image = next(self.images, None)
        return None if image is None else {self.name: image[None]}


class OnnxRunner:
    """Runs an ONNX file with ONNX Runtime on uint8 (or float) images of its input size."""

    def __init__(self, path):
        ort = require("onnxruntime", "serve")
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.image_size = tuple(int(d) for d in self.input.shape[1:3])

    def __call__(self, images):
        pixels = np.asarray(images, dtype="float32")
        return np.asarray(self.session.run(None, {self.input.name: pixels})[0], "float32")
