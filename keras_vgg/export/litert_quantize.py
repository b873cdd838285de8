"""TFLite quantization with the LiteRT Quantizer (``litert-quantizer``): the float32 file,
converted once, quantized by a recipe, and the quantizer's own numerical validation.

LiteRT's docs deprecate quantizing inside ``TFLiteConverter``; these modes come from the
quantizer's recipes instead (measured on this package's VGGs, docs/export.md):

- ``dynamic``: ``dynamic_wi8_afp32``: int8 weights per channel, activations float in the file
  (quantized on the fly by the kernels).
- ``int8``: ``static_wi8_ai8``: int8 weights per channel and int8 activations, calibrated on
  the representative images; int8 input and output (``with_uint8_io`` gives uint8 ends).
- ``int4``: int4 weights where VGG keeps them, in its large FC layers (blockwise: 32 weights
  per scale, the only op the quantizer blocks), int8 weights per channel in the convs,
  activations float in the file (``INT4_MIN_WEIGHTS``).

The quantizer has no int8 recipe for LOG and EXP, the LRN's builtins: an ``int8`` file of an
LRN variant would hold DEQUANTIZE islands, so that one file stays with the converter
(:func:`tflite_tool` says which tool writes a file, and why).

Example:
    >>> from keras_vgg.export.litert_quantize import RECIPES, tflite_tool
    >>> RECIPES["int8"], tflite_tool("int8", {"CONV_2D": 2, "SOFTMAX": 1}).tool
    ('static_wi8_ai8', 'litert-quantizer')
    >>> tflite_tool("int8", {"CONV_2D": 2, "LOG": 1, "EXP": 1}).tool  # an LRN: the converter
    'converter'
"""

from __future__ import annotations

import contextlib
import io
import math
import statistics
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from keras_vgg._extras import require
from keras_vgg.export.formats import CALIBRATION_IMAGES

RECIPES = {"dynamic": "dynamic_wi8_afp32", "int8": "static_wi8_ai8",
           "int4": "dynamic_wi4_afp32 blockwise 32 on FCs of >= 2**20 weights, "
                   "dynamic_wi8_afp32 on convs"}
QUANTIZER_MODES = tuple(RECIPES)
VALIDATION_IMAGES = 8  # images the quantizer's per-tensor validation runs on (both models)
BLOCK = "BLOCKWISE_32"
# int4 goes where VGG keeps its weights: FC layers of at least this many (fc1, fc2 and an
# ImageNet classifier; 89% of VGG16's weights). Smaller FCs (a fine-tuned head) stay float32,
# convs int8 per channel. Measured on the tests' fitted heads: int4 convs (per channel; the
# quantizer blocks only FC weights) agreed with Keras on 85-90% (VGG11) and 40% (VGG11-BN)
# of the sample, an int4 classifier head on 20-55% of the BN net's.
INT4_MIN_WEIGHTS = 2**20


def require_quantizer():
    """The ``litert_quantizer`` package, or a one-line error naming the ``export`` extra."""
    return require("litert_quantizer", "export", package="litert-quantizer")


@dataclass(frozen=True)
class TFLiteTool:
    """Which tool writes a TFLite file of one quantize mode: ``"converter"`` (TFLiteConverter,
    float32 and float16, and an int8 file the quantizer cannot keep integer) or
    ``"litert-quantizer"`` with its ``recipe``; ``reason`` when the converter stands in."""

    tool: str
    recipe: str | None = None
    reason: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def float_only_ops(float_ops) -> list:
    """The ops of a float32 TFLite file that the quantizer has no int8 recipe for (they
    would stay float between DEQUANTIZE and QUANTIZE)."""
    qtyping = require_quantizer().qtyping
    known = {op.value for op in qtyping.TFLOperationName}
    return sorted(op for op in float_ops if op not in known)


def tflite_tool(quantize, float_ops) -> TFLiteTool:
    """The :class:`TFLiteTool` of a ``quantize`` file of a model whose float32 file has
    ``float_ops`` (``{op: count}``)."""
    if quantize not in RECIPES:
        return TFLiteTool("converter")
    if quantize == "int8":
        islands = float_only_ops(float_ops)
        if islands:
            return TFLiteTool("converter", reason=(
                f"litert-quantizer has no int8 recipe for {', '.join(islands)} (the LRN's "
                "builtins): its static_wi8_ai8 file would compute them in float32 between "
                "DEQUANTIZE and QUANTIZE ops"))
    return TFLiteTool("litert-quantizer", RECIPES[quantize])


@contextlib.contextmanager
def _quiet():
    """The quantizer's calibration progress bar and its interpreter's "preserve all
    tensors is for debugging" warning, silenced."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        yield


def _recipe(quantize):
    """The quantizer's recipe of ``quantize`` (``RECIPES``)."""
    lq = require_quantizer()
    if quantize == "dynamic":
        return lq.recipe.dynamic_wi8_afp32()
    if quantize == "int8":
        return lq.recipe.static_wi8_ai8()
    qtyping = lq.qtyping
    manager = lq.recipe_manager.RecipeManager()
    manager.add_dynamic_config(".*", qtyping.TFLOperationName.CONV_2D, 8,
                               qtyping.QuantGranularity.CHANNELWISE)
    weights = qtyping.TensorQuantizationConfig(
        num_bits=4, symmetric=True, granularity=getattr(qtyping.QuantGranularity, BLOCK))
    manager.add_quantization_config(".*", qtyping.TFLOperationName.FULLY_CONNECTED,
                                    qtyping.OpQuantizationConfig(
                                        weight_tensor_config=weights,
                                        compute_precision=qtyping.ComputePrecision.INTEGER,
                                        explicit_dequantize=False,
                                        min_weight_elements=INT4_MIN_WEIGHTS))
    return manager.get_quantization_recipe()


def _signature_data(float_model: bytes, images) -> dict:
    """``{signature: [{input name: float32 image batch of 1}, ...]}`` for the quantizer."""
    Interpreter = require("ai_edge_litert.interpreter", "export",
                          package="ai-edge-litert").Interpreter
    signatures = Interpreter(model_content=float_model).get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    return {key: [{name: image[None].astype("float32")} for image in np.asarray(images)]}


def quantize_tflite(float_model: bytes, quantize: str, representative=None) -> bytes:
    """The float32 TFLite file ``float_model`` quantized by the recipe of ``quantize``
    (``"dynamic"``, ``"int8"``: calibrated on ``representative``, uint8 RGB images at the
    model's size; ``"int4"``)."""
    lq = require_quantizer()
    quantizer = lq.quantizer.Quantizer(bytearray(float_model), _recipe(quantize))
    calibration = None
    if quantizer.need_calibration:
        if representative is None or len(representative) == 0:
            raise ValueError("Expected `representative_data` (training images) for "
                             "quantize='int8': full-integer quantisation is calibrated on them.")
        data = _signature_data(float_model, representative[:CALIBRATION_IMAGES])
        with _quiet():
            calibration = quantizer.calibrate(data, num_threads=1)
    with _quiet():
        result = quantizer.quantize(calibration, enable_progress_bar=False,
                                    enable_progress_report=False)
    return bytes(result.quantized_model)


@dataclass(frozen=True)
class Validation:
    """The quantizer's per-tensor comparison of a quantized file with its float32 file on
    ``images`` images: the output's SNR (dB) and cosine similarity, and over every tensor
    both have (``tensors``) the lowest and median of each, and the tensor with the lowest
    SNR."""

    images: int
    tensors: int
    output_snr_db: float
    output_cosine: float
    min_snr_db: float
    median_snr_db: float
    min_cosine: float
    median_cosine: float
    worst_tensor: str

    def to_json(self) -> dict:
        return asdict(self)


def _db(ratio) -> float:
    return round(10 * math.log10(max(float(ratio), 1e-12)), 2)


def validate(float_model: bytes, quantized_model: bytes, images) -> Validation:
    """:class:`Validation` of ``quantized_model`` (as the quantizer wrote it: int8 ends for
    int8) against ``float_model`` on up to ``VALIDATION_IMAGES`` uint8 ``images``."""
    lq = require_quantizer()
    metric = lq.quantizer.ValidationErrorMetric
    images = np.asarray(images)[:VALIDATION_IMAGES]
    quantizer = lq.quantizer.Quantizer(bytearray(float_model),
                                       previous_quantized_model=bytearray(quantized_model))
    with _quiet():
        result = quantizer.validate(_signature_data(float_model, images),
                                    [metric.SNR, metric.COSINE_SIMILARITY], num_threads=1)
    found = result.get_signature_comparison_result()
    tensors = {**found.intermediate_tensors, **found.output_tensors}
    snr = {name: figures["snr"] for name, figures in tensors.items()}
    cosine = [figures["cosine_similarity"] for figures in tensors.values()]
    output = next(iter(found.output_tensors.values()))
    return Validation(
        images=len(images), tensors=len(tensors), output_snr_db=_db(output["snr"]),
        output_cosine=round(float(output["cosine_similarity"]), 5),
        min_snr_db=_db(min(snr.values())), median_snr_db=_db(statistics.median(snr.values())),
        min_cosine=round(float(min(cosine)), 5),
        median_cosine=round(float(statistics.median(cosine)), 5),
        worst_tensor=min(snr, key=snr.get))
