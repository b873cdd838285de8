"""The SavedModel export: signatures that take raw images (or encoded files) and return
probabilities, the top class names and their scores.

Example:
    >>> import tempfile, keras, numpy as np, tensorflow as tf
    >>> from keras_vgg.export.saved_model import write_saved_model
    >>> from keras_vgg.export.serving import serving_model
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> path = tempfile.mkdtemp() + "/saved_model"
    >>> write_saved_model(serving_model(model, "tf"), path, ["cat", "dog"], top_k=1)
    >>> serve = tf.saved_model.load(path).signatures["serving_default"]
    >>> out = serve(tf.zeros((1, 20, 30, 3), tf.uint8))  # any size: resized inside
    >>> sorted(out), out["top_classes"].shape
    (['probabilities', 'top_classes', 'top_scores'], TensorShape([1, 1]))
"""

import keras
import tensorflow as tf

from keras_vgg.preprocessing import resize_uint8


def write_saved_model(serving, path, class_names, top_k=5):
    """A SavedModel whose signatures take raw images and return probabilities and names."""
    size = tuple(serving.input_shape[1:3])
    names = tf.constant(class_names)
    k = min(top_k, len(class_names))

    def predict(pixels):
        probabilities = serving(tf.cast(pixels, tf.float32), training=False)
        top = tf.math.top_k(probabilities, k)
        return {"probabilities": probabilities, "top_classes": tf.gather(names, top.indices),
                "top_scores": top.values}

    def serve_images(images):
        return predict(resize_uint8(images, size))

    def serve_bytes(encoded):
        def decode(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            return resize_uint8(image, size)

        return predict(tf.map_fn(decode, encoded,
                                 fn_output_signature=tf.TensorSpec((*size, 3), tf.uint8)))

    # No archive.track(serving): the endpoints capture the variables already, and
    # tracking them too stores every weight twice (Keras 3.15 / TF 2.21).
    archive = keras.export.ExportArchive()
    archive.add_endpoint("serving_default", serve_images,
                         input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8)])
    archive.add_endpoint("serving_bytes", serve_bytes,
                         input_signature=[tf.TensorSpec((None,), tf.string)])
    archive.write_out(str(path), verbose=False)
