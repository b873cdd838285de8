"""The TFLite/LiteRT export: Keras's ``litert`` export restricted to TFLite builtin ops,
float32, float16, dynamic-range or full-integer int8, with the class names inside.

Example:
    >>> import tempfile, keras
    >>> from keras_vgg.export.flatbuffer import tflite_labels
    >>> from keras_vgg.export.serving import serving_model
    >>> from keras_vgg.export.tflite import converter_settings, write_tflite
    >>> sorted(converter_settings("float16"))
    ['optimizations', 'target_spec']
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> path = tempfile.mkdtemp() + "/model_float32.tflite"
    >>> ops = write_tflite(serving_model(model, "torch"), path, class_names=["cat", "dog"])
    >>> sorted(ops), tflite_labels(open(path, "rb").read())
    (['CONV_2D', 'FULLY_CONNECTED', 'MEAN', 'SOFTMAX'], ['cat', 'dog'])
"""

import tempfile
from pathlib import Path

import tensorflow as tf

from keras_vgg.export.flatbuffer import (add_labels, builtin_names, tflite_ops, with_pixel_input,
                                         with_uint8_io)
from keras_vgg.export.formats import CALIBRATION_IMAGES, INT8_IO, QUANTIZE, ExportError, one_of
from keras_vgg.export.litert_quantize import QUANTIZER_MODES, quantize_tflite, tflite_tool

FLATBUFFER_LIMIT = 2**31  # bytes: TFLite's flatbuffer cannot hold more


def converter_settings(quantize: str, representative=None, int8_io="uint8") -> dict:
    """Keyword arguments for Keras's ``litert`` export: TFLite builtins only, never Flex."""
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "none":
        return {"target_spec": {"supported_ops": builtins}}
    settings = {"optimizations": [tf.lite.Optimize.DEFAULT],
                "target_spec": {"supported_ops": builtins}}
    if quantize == "float16":
        settings["target_spec"]["supported_types"] = [tf.float16]
    elif quantize == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("Expected `representative_data` (training images) for "
                             "quantize='int8': full-integer quantisation is calibrated on them.")
        io_type = tf.uint8 if int8_io == "uint8" else tf.int8

        def calibration():
            for image in representative[:CALIBRATION_IMAGES]:
                yield [image[None].astype("float32")]

        # Builtins stay allowed beside the int8 kernels, so an op with no int8 kernel would
        # run as a float island between QUANTIZE/DEQUANTIZE (our LRN is builtins: it has none).
        settings["target_spec"]["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                    *builtins]
        settings.update(representative_dataset=calibration, inference_input_type=io_type,
                        inference_output_type=io_type)
    return settings


def float_tflite(serving) -> bytes:
    """``serving`` as a float32 TFLite file of builtin ops (Keras's ``litert`` export), the
    one conversion every quantized file of the LiteRT Quantizer starts from."""
    return converter_bytes(serving, "none")


def write_tflite(serving, path, quantize="none", representative=None, int8_io="uint8",
                 class_names=None, float_model=None) -> dict:
    """Write ``serving`` as a TFLite file of builtin ops; returns its op counts.

    The tool for each mode is ``litert_quantize.tflite_tool``'s (the converter or the LiteRT
    Quantizer, measured per mode in docs/export.md): :func:`converter_bytes` or
    :func:`quantizer_bytes` writes it.
    ``float_model``: the float32 file's bytes when already converted.
    """
    one_of("quantize", quantize, QUANTIZE)
    one_of("int8_io", int8_io, INT8_IO)
    if quantize in ("none", *QUANTIZER_MODES) and float_model is None:
        float_model = float_tflite(serving)
    tool = tflite_tool(quantize, tflite_ops(float_model)).tool if float_model else "converter"
    if quantize == "none":
        model_bytes = float_model
    elif tool == "converter":
        model_bytes = converter_bytes(serving, quantize, representative, int8_io)
    else:
        model_bytes = quantizer_bytes(float_model, quantize, representative, int8_io)
    ops = tflite_ops(model_bytes)
    foreign = sorted(op for op in ops if op not in builtin_names())
    if foreign:
        raise ExportError(f"The TFLite model needs ops outside TFLite's builtins: {foreign}. "
                          "They would need the Flex delegate on the phone; replace the layers "
                          "that produce them.")
    path = Path(path)
    path.write_bytes(model_bytes if class_names is None else add_labels(model_bytes,
                                                                        class_names))
    return ops


def quantizer_bytes(float_model, quantize, representative=None, int8_io="uint8") -> bytes:
    """The LiteRT Quantizer's TFLite file in ``quantize`` mode (its recipe applied to the
    float32 file ``float_model``, bytes), as bytes; int8 reads raw pixels exactly
    (``with_pixel_input``), with uint8 ends by ``with_uint8_io``.
    """
    model_bytes = quantize_tflite(float_model, quantize, representative)
    if quantize == "int8":
        model_bytes = with_pixel_input(model_bytes)
    if quantize == "int8" and int8_io == "uint8":
        model_bytes = with_uint8_io(model_bytes)
    return model_bytes


def converter_bytes(serving, quantize, representative=None, int8_io="uint8") -> bytes:
    """TFLiteConverter's TFLite file of ``serving`` in ``quantize`` mode (its own
    quantization), as bytes."""
    float_bytes = 4 * serving.count_params()
    if float_bytes >= FLATBUFFER_LIMIT:
        raise ExportError(
            f"The model holds {float_bytes / 2**30:.1f} GiB of float32 weights, over TFLite's "
            "2 GiB flatbuffer limit. Export a smaller input size or a pooled head "
            "(include_top=False, pooling='avg') instead of a large flatten head.")
    settings = converter_settings(quantize, representative, int8_io)
    size = tuple(serving.input_shape[1:3])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        try:
            serving.export(str(path), format="litert", verbose=False,
                           input_signature=[tf.TensorSpec((1, *size, 3), tf.float32)],
                           **settings)
        except Exception as error:  # the converter's own errors are long MLIR dumps
            message = str(error).strip().splitlines()
            raise ExportError(
                f"TFLite could not convert the model (quantize={quantize!r}): "
                f"{' '.join(message[:3])[:600]}. Every layer must map to a TFLite builtin "
                "op; replace custom or Lambda layers that use other TensorFlow ops.") from error
        return path.read_bytes()
