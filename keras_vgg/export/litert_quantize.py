"""Quantizing a float32 TFLite file with the LiteRT Quantizer (``litert-quantizer``): its
recipes for ``dynamic``, ``int8`` and ``int4``, and its per-tensor validation summary.

TFLite's converter-side quantisation is deprecated; LiteRT converts to float32 and
quantizes the file. ``int8`` is ``static_wi8_ai8`` (per-channel, calibrated); the quantizer
writes int8 input and output, so ``uint8_io`` adds the uint8 <-> int8 QUANTIZE ops the
converter wrote. ``int4`` keeps weights in 4 bits: fully connected layers blockwise (32),
convolutions per channel, activations float. The quantizer allows blockwise int4 only for
fully connected layers, and only with integer compute (its policy refuses weight-only
blockwise, measured), so those run dynamic; the convolutions' int4 weights are
dequantized to float.

Example:
    >>> import tempfile, keras, numpy as np
    >>> from keras_vgg.export.flatbuffer import tflite_ops
    >>> from keras_vgg.export.litert_quantize import quantize_tflite
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
    ...                           keras.layers.GlobalAveragePooling2D(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> path = tempfile.mkdtemp() + "/model.tflite"
    >>> model.export(path, format="litert", verbose=False)
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    >>> result = quantize_tflite(open(path, "rb").read(), "int8", images, images, "uint8")
    >>> sorted(tflite_ops(result.model)), result.recipe
    (['CONV_2D', 'FULLY_CONNECTED', 'MEAN', 'QUANTIZE', 'SOFTMAX'], 'static_wi8_ai8')
    >>> sorted(result.validation.to_json())[:3]
    ['images', 'output_cosine_similarity', 'output_snr_db']
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from keras_vgg._extras import require

VALIDATION_IMAGES = 8  # images the quantizer's per-tensor validation runs (2 runs each)
RECIPES = {"dynamic": "dynamic_wi8_afp32", "int8": "static_wi8_ai8",
           "int4": "fully connected int4 blockwise 32 (dynamic), conv int4 per channel "
                   "(weight-only)"}


@dataclasses.dataclass(frozen=True)
class QuantizerValidation:
    """The quantizer's per-tensor comparison with the float32 file: SNR in dB (signal power
    over error power) and cosine similarity, of the output and of the worst tensor."""

    images: int
    tensors: int
    output_snr_db: float
    output_cosine_similarity: float
    worst_tensor: str
    worst_snr_db: float
    worst_cosine_similarity: float

    def to_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Quantized:
    """A quantized TFLite file's bytes, the recipe that made it, and its validation."""

    model: bytes
    recipe: str
    validation: QuantizerValidation


def quantize_tflite(float_model: bytes, quantize: str, calibration=None, validation=None,
                    int8_io="int8") -> Quantized:
    """``float_model`` (a float32 TFLite file) quantized as ``"dynamic"``, ``"int8"``
    (calibrated on ``calibration``, uint8 RGB images) or ``"int4"``, validated per tensor
    on ``validation`` images; ``int8_io="uint8"`` wraps the int8 file in uint8 I/O."""
    lq = require("litert_quantizer", "export", package="litert-quantizer")
    quantizer = lq.Quantizer(bytearray(float_model))
    quantizer.load_quantization_recipe(_recipe(quantize))
    signature, name = _signature(float_model)
    calibration_result = None
    if quantizer.need_calibration:
        calibration_result = quantizer.calibrate(_data(signature, name, calibration),
                                                 num_threads=os.cpu_count() or 1)
    model = bytes(quantizer.quantize(calibration_result,
                                     enable_progress_report=False).quantized_model)
    checked = _validate(quantizer, _data(signature, name, validation[:VALIDATION_IMAGES]))
    if quantize == "int8" and int8_io == "uint8":
        model = uint8_io(model)
    return Quantized(model, RECIPES[quantize], checked)


def _recipe(quantize):
    from litert_quantizer import qtyping, recipe
    from litert_quantizer.recipe_manager import RecipeManager

    if quantize == "dynamic":
        return recipe.dynamic_wi8_afp32()
    if quantize == "int8":
        return recipe.static_wi8_ai8()
    if quantize != "int4":
        raise ValueError(f"Expected quantize to be one of {tuple(RECIPES)}. "
                         f"Received: quantize={quantize!r}")
    op, granularity = qtyping.TFLOperationName, qtyping.QuantGranularity
    manager = RecipeManager()
    manager.add_dynamic_config(".*", op.FULLY_CONNECTED, 4, granularity.BLOCKWISE_32)
    manager.add_weight_only_config(".*", op.CONV_2D, 4, granularity.CHANNELWISE)
    return manager.get_quantization_recipe()


def _signature(model_bytes):
    """The float file's signature key and its one input's name."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=model_bytes).get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


def _data(signature, name, images):
    """The quantizer's data dict: one float32 batch-1 input per image."""
    return {signature: [{name: np.asarray(image, "float32")[None]} for image in images]}


def _validate(quantizer, data) -> QuantizerValidation:
    from litert_quantizer.utils.validation_utils import ValidationErrorMetric as Metric

    result = quantizer.validate(data, error_metrics=[Metric.SNR, Metric.COSINE_SIMILARITY],
                                num_threads=os.cpu_count() or 1)
    key = result.available_signature_keys()[0]
    figures = result.get_signature_comparison_result(key)
    output = next(iter(figures.output_tensors.values()))
    tensors = {**figures.intermediate_tensors, **figures.output_tensors}
    worst = min(tensors, key=lambda t: tensors[t]["snr"])
    return QuantizerValidation(
        images=len(next(iter(data.values()))), tensors=len(tensors),
        output_snr_db=_db(output["snr"]),
        output_cosine_similarity=output["cosine_similarity"],
        worst_tensor=worst, worst_snr_db=_db(tensors[worst]["snr"]),
        worst_cosine_similarity=tensors[worst]["cosine_similarity"])


def _db(ratio):
    return 10 * math.log10(max(ratio, 1e-12))


def uint8_io(model_bytes: bytes) -> bytes:
    """The int8 file with uint8 input and output: a QUANTIZE op (uint8 <-> int8, the same
    scale, zero point + 128) before its input and after its output, as the converter
    writes them."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    code = _quantize_opcode(model, schema)
    for position, index in enumerate(graph.inputs):
        twin = _uint8_twin(model, graph, index, schema)
        graph.operators.insert(0, _operator(schema, code, twin, index))
        _rewire(model, graph.inputs, position, index, twin)
    for position, index in enumerate(graph.outputs):
        twin = _uint8_twin(model, graph, index, schema)
        graph.operators.append(_operator(schema, code, index, twin))
        _rewire(model, graph.outputs, position, index, twin)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _quantize_opcode(model, schema) -> int:
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 2
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _uint8_twin(model, graph, index, schema) -> int:
    """A new uint8 tensor like ``graph.tensors[index]`` (an int8 one): its index."""
    tensor = graph.tensors[index]
    if tensor.type != schema.TensorType.INT8:
        raise ValueError(f"Expected an int8 tensor at the model's edge; found type "
                         f"{tensor.type} ({tensor.name!r}).")
    twin = schema.TensorT()
    twin.shape, twin.shapeSignature = tensor.shape, tensor.shapeSignature
    twin.type, twin.name = schema.TensorType.UINT8, tensor.name
    tensor.name = (tensor.name or b"") + b"_int8"
    twin.quantization = schema.QuantizationParametersT()
    twin.quantization.scale = list(tensor.quantization.scale)
    twin.quantization.zeroPoint = [z + 128 for z in tensor.quantization.zeroPoint]
    model.buffers.append(schema.BufferT())
    twin.buffer = len(model.buffers) - 1
    graph.tensors.append(twin)
    return len(graph.tensors) - 1


def _operator(schema, code, source, target):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, [source], [target]
    return op


def _rewire(model, edge, position, old, new):
    """The graph's input or output ``old`` becomes ``new``, in its signatures too."""
    edge[position] = new
    for signature in model.signatureDefs or []:
        for tensor_map in [*(signature.inputs or []), *(signature.outputs or [])]:
            if tensor_map.tensorIndex == old:
                tensor_map.tensorIndex = new
