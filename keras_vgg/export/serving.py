"""The serving graph: raw pixels in, the model's preprocessing inside, float32 in and out,
BatchNorm folded into the convs (``keras_vgg.batch_norm.inference_model``).

Example:
    >>> import keras
    >>> from keras_vgg.export.serving import serving_model
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> serving = serving_model(model, "torch")
    >>> serving.input_shape, serving.layers[1].name, serving.layers[1].trainable
    ((None, 8, 8, 3), 'preprocessing', False)
"""

from __future__ import annotations

import keras

from keras_vgg.batch_norm import inference_model
from keras_vgg.precision import precision_scope, with_precision
from keras_vgg.preprocessing import as_preprocessing, preprocessing_affine


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(int(s) for s in size)


def float32_policy():
    """Keras's global dtype policy is float32 inside; the previous one comes back after
    (``precision_scope("float32")``, usable as a decorator)."""
    return precision_scope("float32")


def float32_model(model) -> keras.Model:
    """``model`` itself, or a float32 copy of it (same weights) when any of its layers
    computes in mixed or low precision: TFLite builtins have no bfloat16 kernels. A model
    without a config is exported as it is."""
    try:
        return with_precision(model, "float32")
    except ValueError:
        return model


@float32_policy()
def serving_model(model, preprocessing, image_size=None, precision="float32") -> keras.Model:
    """``pixels (float 0-255) -> preprocessing -> model`` as one Keras model, float32 in
    and out.

    The preprocessing is a frozen 1x1 convolution (see ``preprocessing_affine``).
    ``image_size`` is needed only when the model's own input size is open. The model
    computes in ``precision`` (``float32``, ``bfloat16``, ``float16``; a model built under
    a mixed-precision policy is copied, ``with_precision``); its classifier stays float32.
    A BatchNormalization after a conv is folded into it before the cast (``inference_model``;
    a model without a config is served as it is): the BN forms serve at the plain forms'
    cost, SavedModel, TFLite and the Keras runner alike.
    """
    preprocessing = as_preprocessing(preprocessing)
    model = inference_model(model, precision)
    if len(model.output_shape) != 2:
        raise ValueError("Expected a model with one (batch, classes) output, such as a classifier "
                         f"or a pooled base. Received output shape {model.output_shape}.")
    own = tuple(model.input_shape[1:3])
    if image_size is None and None in own:
        raise ValueError("Expected `image_size`: the model's input size is open "
                         f"({model.input_shape}) and an export needs a fixed one.")
    size = _pair(image_size) if image_size is not None else own
    if None not in own and size != own:
        raise ValueError(f"Expected `image_size` to match the model's input {own}. "
                         f"Received: image_size={image_size!r}")
    matrix, offset = preprocessing_affine(preprocessing.mode, preprocessing.mean)
    pixels = keras.Input((*size, 3), name="pixels")
    preprocess = keras.layers.Conv2D(3, 1, name="preprocessing", trainable=False)
    outputs = model(preprocess(pixels))
    preprocess.set_weights([matrix.reshape(1, 1, 3, 3).astype("float32"),
                            offset.astype("float32")])
    return keras.Model(pixels, outputs, name=f"{model.name}_serving")


def keras_export(serving, path, fmt: str, what: str):
    """``serving.export(path, format=fmt)`` (Keras's ``Model.export``: ``"onnx"``,
    ``"openvino"``), called once first (a model never called cannot export under jax); its
    failure an ``ExportError`` naming ``what`` and the backend in one line."""
    from keras_vgg.export.formats import ExportError

    serving(keras.ops.zeros((1, *serving.input_shape[1:3], 3), "float32"))
    try:
        serving.export(str(path), format=fmt, verbose=False)
    except Exception as error:
        raise ExportError(f"Keras could not write {what} under KERAS_BACKEND="
                          f"{keras.backend.backend()}: {str(error).splitlines()[0][:300]}; "
                          "nothing was written.") from error
