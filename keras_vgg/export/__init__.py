"""Export for serving and mobile: SavedModel and TFLite/LiteRT, verified and reported.

Every export takes raw RGB pixels (0-255) and runs the model's preprocessing inside,
so the caller never needs to know the weights' mode:

- **SavedModel** (``saved_model/``, Keras's ``ExportArchive``): ``serving_default``
  takes a uint8 batch of any height and width, resizes, preprocesses and returns
  ``probabilities``, ``top_classes`` (names) and ``top_scores``; ``serving_bytes``
  takes encoded JPEG/PNG/BMP/GIF strings. Loads with plain ``tf.saved_model.load``.
- **TFLite** (``model_{float32,float16,dynamic,int8}.tflite``, Keras's ``litert``
  export restricted to TFLite builtin ops): a fixed ``1 x H x W x 3`` input of float
  pixels, or uint8/int8 pixels for full-integer int8 (read the input's quantisation
  parameters). Class names ride in the file's metadata (``labels``) and in
  ``labels.txt``.

Each export is run against the Keras model on a sample of real images (max abs
difference, top-1 agreement, accuracy and its paired difference with Keras's when labels
are given, size, median latency per image). Dynamic and int8 files must agree with the
Keras model's top-1 on ``MIN_AGREEMENT`` (80%) of the sample unless ``min_agreement``
says otherwise (0 turns the gate off). With no sample, 16 random images only gate
SavedModel, float32 and float16 on their max abs difference; no agreement is claimed or
gated and each row says ``"checked_on": "random images"``. The bundle is built in a temporary folder, moved into
place only when every file is written and passed its check. ``export_report.json``
holds the figures. A model built under a mixed-precision policy is exported as float32
(its float32 weights), whatever the global policy.

Modules, in import order (each imports only those above it):
``formats`` (constants, ``ExportError``), ``serving`` (the float32 serving graph),
``flatbuffer`` (TFLite op counts and labels), ``saved_model``, ``tflite``, ``onnx_export``,
``openvino_export`` (the writers), ``runners`` (a callable per format, ``load_predictor``),
``checks`` (figures and gates), ``report`` (the table), ``bundle`` (``export``). This package
only writes and checks bundles: running them on image files (``predict``, ``explain``,
``embed``) is :mod:`keras_vgg.inference`'s, reading a run folder's data the fine-tuning
side's (``keras_vgg.finetune.export_run``).

Example:
    >>> import tempfile, keras, numpy as np
    >>> from keras_vgg import VGG11
    >>> from keras_vgg.export import export
    >>> base = VGG11(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> model = keras.Sequential([base, keras.layers.Dense(3, activation="softmax")])
    >>> out = tempfile.mkdtemp() + "/bundle"
    >>> images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    >>> report = export(model, out, formats=["tflite"], preprocessing="torch",
    ...                 class_names=["cat", "dog", "fox"], sample=images, verbose=False)
    >>> row = report["exports"][0]
    >>> row["file"], row["max_abs_diff"] < 1e-5, row["top1_agreement"], row["checked_on"]
    ('model_float32.tflite', True, 1.0, 'real images')
"""

from keras_vgg._helpers import lazy_exports

# {module: the names the package gives from it}, imported when first used. The rest (the
# constants of ``formats``, ``checks.compare``, ``runners.median_ms``, ...) are their modules'.
LAZY = {
    "keras_vgg.export.formats": ("QUANTIZE", "TFLITE_FILES", "ExportError"),
    "keras_vgg.export.serving": ("serving_model",),
    "keras_vgg.export.flatbuffer": ("add_labels", "tflite_labels", "tflite_ops"),
    "keras_vgg.export.saved_model": ("write_saved_model",),
    "keras_vgg.export.tflite": ("write_tflite",),
    "keras_vgg.export.runners": ("KerasRunner", "SavedModelRunner", "TFLiteRunner",
                                 "load_predictor"),
    "keras_vgg.export.report": ("format_report",),
    "keras_vgg.export.bundle": ("export",),
}

__all__ = [
    "QUANTIZE", "TFLITE_FILES", "ExportError", "KerasRunner", "SavedModelRunner",
    "TFLiteRunner", "add_labels", "export", "format_report", "load_predictor", "serving_model",
    "tflite_labels", "tflite_ops", "write_saved_model", "write_tflite",
]

__getattr__, __dir__ = lazy_exports(__name__, LAZY)
