"""What an export bundle holds: formats, quantisation modes, file names, tolerances.

Plain constants and ``ExportError``; importing this module loads neither TensorFlow's
converter nor ``ai_edge_litert``.

Example:
    >>> from keras_vgg.export.formats import (AGREEMENT_GATED, MIN_AGREEMENT, QUANTIZE,
    ...                                       TFLITE_FILES, TOLERANCE)
    >>> [TFLITE_FILES[q] for q in QUANTIZE]
    ['model_float32.tflite', 'model_float16.tflite', 'model_dynamic.tflite', 'model_int8.tflite', 'model_int4.tflite']
    >>> TOLERANCE["float16"]  # "dynamic" and "int8" are gated on agreement only
    0.05
    >>> MIN_AGREEMENT, AGREEMENT_GATED  # their default gate, on real sample images
    (0.8, ('dynamic', 'int8', 'int4'))
"""

from keras_vgg._helpers import expected
from keras_vgg.choices import (DEFAULT_FORMATS, FORMATS, INT8_IO, MIN_AGREEMENT, QUANTIZE,
                               TFLITE_ONLY)

TFLITE_FILES = {"none": "model_float32.tflite", "float16": "model_float16.tflite",
                "dynamic": "model_dynamic.tflite", "int8": "model_int8.tflite",
                "int4": "model_int4.tflite"}
# ONNX (ONNX Runtime) and OpenVINO files: float32, or int8 calibrated on the representative
# images (float16, dynamic and int4 are TFLite's: TFLITE_ONLY). An OpenVINO file is model.xml + model.bin.
ONNX_FILES = {"none": "model.onnx", "int8": "model_int8.onnx"}
OPENVINO_FILES = {"none": "openvino/model.xml", "int8": "openvino_int8/model.xml"}
SERVE_FILES = {"onnx": ONNX_FILES, "openvino": OPENVINO_FILES}
TFLITE_PRECISION = {"none": "float32", "float16": "float16 weights", "dynamic": "int8 weights",
                    "int8": "int8", "int4": "int4 weights"}
# Largest max |exported - Keras| an export may show and still be written: by quantize mode,
# and for a SavedModel by the precision it computes in.
TOLERANCE = {"saved_model": 1e-4, "none": 1e-4, "float16": 5e-2,
             "saved_model bfloat16": 5e-2, "saved_model float16": 5e-2,
             "openvino bf16": 5e-2, "openvino f16": 5e-2}  # OpenVINO's inference hint
CALIBRATION_IMAGES = 200
RANDOM_IMAGES = 16  # the sample when none is given: a numeric gate, not an accuracy check
# The top-1 agreement with the Keras model that a dynamic or int8 file must reach on real
# sample images when `min_agreement` is not given (0 turns the gate off; random images
# cannot judge it). Measured (TF 2.21, x86): good files 99-100% on trained models (100-120
# held-out images) and 90-100% on the tests' fitted heads (20 images); int8 files calibrated
# on other images (black, dim, half-range) 15-55%. docs/export.md gives the figures.
# MIN_AGREEMENT = 0.8, in keras_vgg.choices (the command line reads it without TensorFlow).
# A file under its agreement gate is still written when it matches every Keras probability
# to NEAR_TIE: each changed answer is then an image whose top two Keras probabilities are
# within 2 * NEAR_TIE (a near tie, as on a barely trained model's near-uniform outputs), not
# an error of the file. Measured: good int8 files of a 1-epoch model differ by 0.002 and
# change 2 of 10 answers; files calibrated on other images differ by 0.70-1.0.
NEAR_TIE = 0.05
AGREEMENT_GATED = ("dynamic", "int8", "int4")  # the quantize modes gated on agreement by default
REPORT = "export_report.json"
# Dtype policies TFLite has no kernels for; their models are exported as float32.
LOW_PRECISION = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16")


def tolerance_key(row) -> str:
    """The ``TOLERANCE`` key of a report row: its quantize mode, or the SavedModel's (an
    OpenVINO float file computing in bf16 or f16: its inference hint's)."""
    if row.get("inference_precision", "f32") != "f32" and row["quantize"] == "none":
        return f"openvino {row['inference_precision']}"
    if row["quantize"]:
        return row["quantize"]
    precision = row.get("precision", "float32")
    return "saved_model" if precision == "float32" else f"saved_model {precision}"


class ExportError(RuntimeError):
    """An export that could not be made or failed its check; nothing was written."""


def one_of(name, value, allowed):
    """``value``, or a ValueError naming the argument ``name`` and what is ``allowed``."""
    if value not in allowed:
        raise expected(f"`{name}` to be one of {allowed}", **{name: value})
    return value
