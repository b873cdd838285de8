"""Inference on image files: a trained model (Keras, or any saved form of one) applied to
pictures, for the three answers the command line gives: the top classes (``predict``),
Grad-CAM pictures (``explain``) and retrieval embeddings (``embed_files``, ``nearest_files``).

``keras_vgg.export`` writes and checks bundles; this package reads them (and ``.keras``
files, run folders) and runs them. It sits between the export (whose runners and serving
model it uses) and the command line; fine-tuning does not import it.

Modules, in import order (each imports only those above it): ``predict`` (image files read,
top classes from any saved form), ``explain`` (Grad-CAM pictures), ``embed`` (an ``.npz`` of
embeddings and its nearest neighbours).

Example:
    >>> import numpy as np
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.inference import predict
    >>> model = VGG11(input_shape=(32, 32, 3), classes=2, adaptive_pool=1)
    >>> model.preprocessing, model.class_names = "torch", ["cat", "dog"]
    >>> [(p.image, sorted(p.classes)) for p in predict(model, np.zeros((1, 40, 40, 3), "uint8"))]
    [('0', ['cat', 'dog'])]
"""

from keras_vgg._helpers import lazy_exports

# {module: the names the package gives from it}, imported when first used.
LAZY = {
    "keras_vgg.inference.predict": ("Prediction", "image_paths", "predict", "read_image"),
    "keras_vgg.inference.explain": ("explain",),
    "keras_vgg.inference.embed": ("embed_files", "nearest_files"),
}

__all__ = ["Prediction", "embed_files", "explain", "image_paths", "nearest_files", "predict",
           "read_image"]

__getattr__, __dir__ = lazy_exports(__name__, LAZY)
