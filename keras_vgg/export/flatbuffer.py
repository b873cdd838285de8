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

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
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
