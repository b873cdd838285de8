"""What an export bundle holds: formats, quantisation modes, file names, tolerances.

Plain constants and ``ExportError``; importing this module loads neither TensorFlow's
converter nor ``ai_edge_litert``.

Example:
    >>> from keras_vgg.export.formats import QUANTIZE, TFLITE_FILES, TOLERANCE
    >>> [TFLITE_FILES[q] for q in QUANTIZE]
    ['model_float32.tflite', 'model_float16.tflite', 'model_dynamic.tflite', 'model_int8.tflite']
    >>> TOLERANCE["float16"]  # "dynamic" and "int8" are gated on agreement only
    0.05
"""

from keras_vgg._helpers import expected

FORMATS = ("saved_model", "tflite")
QUANTIZE = ("none", "float16", "dynamic", "int8")
INT8_IO = ("uint8", "int8")
TFLITE_FILES = {"none": "model_float32.tflite", "float16": "model_float16.tflite",
                "dynamic": "model_dynamic.tflite", "int8": "model_int8.tflite"}
TFLITE_PRECISION = {"none": "float32", "float16": "float16 weights", "dynamic": "int8 weights",
                    "int8": "int8"}
# Largest max |exported - Keras| an export may show and still be written: by quantize mode,
# and for a SavedModel by the precision it computes in.
TOLERANCE = {"saved_model": 1e-4, "none": 1e-4, "float16": 5e-2,
             "saved_model bfloat16": 5e-2, "saved_model float16": 5e-2}
CALIBRATION_IMAGES = 200
RANDOM_IMAGES = 16  # the sample when none is given: a numeric gate, not an accuracy check
REPORT = "export_report.json"
# Dtype policies TFLite has no kernels for; their models are exported as float32.
LOW_PRECISION = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16")


def tolerance_key(row) -> str:
    """The ``TOLERANCE`` key of a report row: its quantize mode, or the SavedModel's."""
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
