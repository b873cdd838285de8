"""Reading and writing TFLite flatbuffers: op counts and the ``labels`` metadata.

TensorFlow's flatbuffer schema is read on first use, not at import.

Example:
    >>> import tempfile, keras
    >>> from keras_vgg.export.flatbuffer import add_labels, tflite_labels, tflite_ops
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    >>> path = tempfile.mkdtemp() + "/model.tflite"
    >>> model.export(path, format="litert", verbose=False)
    >>> data = add_labels(open(path, "rb").read(), ["cat", "dog"])
    >>> tflite_ops(data), tflite_labels(data)
    ({'FULLY_CONNECTED': 1, 'SOFTMAX': 1}, ['cat', 'dog'])
"""

import functools

import numpy as np


@functools.cache
def op_names() -> dict:
    """TFLite builtin op code -> name."""
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


@functools.cache
def builtin_names() -> frozenset:
    """The names of TFLite's builtin ops (``CUSTOM`` is none)."""
    return frozenset(op_names().values()) - {"CUSTOM"}


def tflite_ops(model_bytes: bytes) -> dict:
    """``{op name: count}`` of a TFLite file, as written (before any delegate)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_bytes, 0)
    names = op_names()
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else names[builtin])
    counts = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            name = codes[graph.Operators(o).OpcodeIndex()]
            counts[name] = counts.get(name, 0) + 1
    return counts


def add_labels(model_bytes: bytes, class_names) -> bytes:
    """The TFLite file with ``class_names`` (one per line) as its ``labels`` metadata."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = _read_model(model_bytes)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer("\n".join(class_names).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name, metadata.buffer = "labels", len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), metadata]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def tflite_labels(model_bytes: bytes):
    """The class names kept in a TFLite file's ``labels`` metadata, or None."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_bytes, 0)
    for i in range(model.MetadataLength()):
        if model.Metadata(i).Name() == b"labels":
            data = model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy()
            return bytes(data).decode().split("\n")
    return None


def with_uint8_io(model_bytes: bytes) -> bytes:
    """An int8-io TFLite file with uint8 ends: a QUANTIZE (uint8 -> int8) before its input
    and one (int8 -> uint8) after its output, as TFLiteConverter writes for
    ``inference_input_type=uint8``; same scales, zero points + 128. The signature names
    stay."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = _read_model(model_bytes)
    graph = model.subgraphs[0]
    quantize = _opcode(model, schema.BuiltinOperator.QUANTIZE)
    moves = {}
    for end, role in ((graph.inputs, "input"), (graph.outputs, "output")):
        for k, index in enumerate(end):
            outer = _uint8_twin(graph, index, schema)
            op = schema.OperatorT()
            op.opcodeIndex = quantize
            op.inputs, op.outputs = ([outer], [index]) if role == "input" else ([index], [outer])
            if role == "input":
                graph.operators.insert(0, op)
            else:
                graph.operators.append(op)
            end[k] = outer
            moves[index] = outer
    for signature in model.signatureDefs or []:
        for tensor_map in [*signature.inputs, *signature.outputs]:
            tensor_map.tensorIndex = moves.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def with_pixel_input(model_bytes: bytes) -> bytes:
    """An int8 TFLite file whose int8 input is quantized as raw pixels: scale 1, zero point
    -128 (``with_uint8_io`` then gives the uint8 input scale 1, zero point 0), as the
    converter writes it.

    The LiteRT Quantizer calibrates the input's range on the representative images (scale
    0.88 when their brightest pixel was 224): a plain interpreter fed camera pixels read
    them 12% too bright and clipped the brighter ones. The input's consumers must be
    CONV_2Ds with int32 biases (the preprocessing convolution of a keras_vgg serving
    model): their biases, quantized at input scale x filter scale, are requantized to the
    new scale. Any other file is returned as it is."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = _read_model(model_bytes)
    graph = model.subgraphs[0]
    conv = _opcode(model, schema.BuiltinOperator.CONV_2D)
    for index in graph.inputs:
        tensor = graph.tensors[index]
        consumers = [op for op in graph.operators if index in list(op.inputs)]
        biases = [graph.tensors[op.inputs[2]] for op in consumers
                  if op.opcodeIndex == conv and len(op.inputs) > 2 and op.inputs[2] >= 0]
        if (tensor.type != schema.TensorType.INT8 or not consumers
                or len(biases) != len(consumers)
                or any(b.type != schema.TensorType.INT32 for b in biases)):
            return model_bytes
        old_scale = float(tensor.quantization.scale[0])
        tensor.quantization.scale, tensor.quantization.zeroPoint = [1.0], [-128]
        for bias in biases:
            _rescale_bias(model.buffers[bias.buffer], bias.quantization, 1.0 / old_scale)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _read_model(model_bytes: bytes):
    """The object tree of a TFLite file (TensorFlow's ``flatbuffer_utils``), every buffer's
    data a numpy array.

    A file the LiteRT Quantizer writes keeps its weights after the flatbuffer, at offsets;
    ``flatbuffer_utils`` reads them back as bytearrays, and flatbuffers packs anything but a
    numpy array one byte at a time in Python: 5.4 s to add labels to the 9.3 MB of a
    quantized VGG11, against 0.03 s as arrays (measured; the same bytes)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    for buffer in model.buffers:
        if buffer.data is not None and not isinstance(buffer.data, np.ndarray):
            buffer.data = np.frombuffer(bytes(buffer.data), np.uint8)
    return model


def _rescale_bias(buffer, quantization, factor: float):
    """An int32 bias's scales multiplied by ``factor``, its integers divided by it."""
    import numpy as np

    values = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), "<i4")
    values = np.round(values / factor).astype("<i4")
    buffer.data = np.frombuffer(values.tobytes(), np.uint8)
    quantization.scale = [float(scale) * factor for scale in quantization.scale]


def _opcode(model, builtin) -> int:
    """The index of ``builtin``'s operator code in ``model``, added when missing."""
    from tensorflow.lite.python import schema_py_generated as schema

    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = builtin
    code.version = 1  # as the converter writes a uint8 <-> int8 QUANTIZE
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _uint8_twin(graph, index, schema) -> int:
    """A new uint8 tensor shaped as the int8 tensor ``index``, zero point + 128: its index."""
    tensor = graph.tensors[index]
    if tensor.type != schema.TensorType.INT8:
        raise ValueError(f"Expected an int8 input and output. Received tensor "
                         f"{tensor.name!r} of TFLite type {tensor.type}")
    twin = schema.TensorT()
    twin.name = (tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name) \
        + "_uint8"
    twin.shape, twin.shapeSignature = tensor.shape, tensor.shapeSignature
    twin.type, twin.buffer = schema.TensorType.UINT8, 0
    twin.quantization = schema.QuantizationParametersT()
    twin.quantization.scale = list(tensor.quantization.scale)
    twin.quantization.zeroPoint = [int(z) + 128 for z in tensor.quantization.zeroPoint]
    graph.tensors.append(twin)
    return len(graph.tensors) - 1
