"""Runners: the Keras serving model, a ``.tflite`` file or a SavedModel as one callable
from uint8 RGB images to probabilities, their latency, and a runner for any saved path.

Example:
    >>> import keras, numpy as np
    >>> from keras_vgg.export.runners import KerasRunner, median_ms
    >>> from keras_vgg.export.serving import serving_model
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> run = KerasRunner(serving_model(model, "caffe"))
    >>> images = np.zeros((3, 20, 30, 3), dtype=np.uint8)  # any size: resized to 8x8
    >>> run(images).shape, median_ms(run, images[0], repeats=2) > 0
    ((3, 2), True)
"""

import os
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_vgg._extras import require
from keras_vgg._helpers import expected, recorded
from keras_vgg.export.flatbuffer import tflite_labels
from keras_vgg.export.onnx_export import OnnxRunner
from keras_vgg.export.openvino_export import OpenVINORunner
from keras_vgg.export.serving import serving_model
from keras_vgg.precision import resolve_precision
from keras_vgg.preprocessing import resize_uint8
from keras_vgg.run_folder import BEST
from keras_vgg.saving import load_model


class KerasRunner:
    """Runs the Keras serving model (see ``serving_model``) on uint8 images of any size."""

    def __init__(self, serving):
        self.serving = serving
        self.image_size = tuple(serving.input_shape[1:3])

    def __call__(self, images):
        pixels = np.asarray(resize_uint8(images, self.image_size), dtype="float32")
        return np.asarray(self.serving.predict_on_batch(pixels), dtype="float32")


class TFLiteRunner:
    """Runs a ``.tflite`` file with ``ai_edge_litert`` on uint8 images of its input size."""

    def __init__(self, path):
        Interpreter = require("ai_edge_litert.interpreter", "export",
                              package="ai-edge-litert").Interpreter
        self.model_bytes = Path(path).read_bytes()
        self.interpreter = Interpreter(model_content=self.model_bytes,
                                       num_threads=os.cpu_count() or 1)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.image_size = tuple(int(d) for d in self.input["shape"][1:3])

    def __call__(self, images):
        out = []
        for image in np.asarray(images):
            x = image[None].astype("float32")
            if self.input["dtype"] != np.float32:
                scale, zero = self.input["quantization"]
                info = np.iinfo(self.input["dtype"])
                x = np.clip(np.round(x / scale + zero), info.min, info.max)
            self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"]))
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"]).astype("float32")
            if self.output["dtype"] != np.float32:
                scale, zero = self.output["quantization"]
                y = (y - zero) * scale
            out.append(y[0])
        return np.stack(out)


class SavedModelRunner:
    """Runs an exported SavedModel's ``serving_default`` signature on uint8 images."""

    def __init__(self, path):
        self.signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def __call__(self, images):
        outputs = self.signature(tf.constant(np.asarray(images, dtype="uint8")))
        return outputs["probabilities"].numpy()


def median_ms(run, image, repeats=10) -> float:
    """Median wall time of ``run`` on one image, in milliseconds (after one warm-up)."""
    run(image[None])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(image[None])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def load_predictor(path, precision="auto"):
    """``(run, class_names)`` for a ``.keras`` file or run folder, a SavedModel folder, an
    export folder (its ``saved_model/``), a ``.tflite`` or ``.onnx`` file, or an OpenVINO
    ``.xml`` (or the folder holding its ``model.xml``); ``run`` maps uint8 RGB images
    of any size to probabilities. A Keras model computes in ``precision`` (see
    ``keras_vgg.precision``); an exported file in what it was exported in."""
    path = Path(path)
    if (path / "saved_model" / "saved_model.pb").is_file():  # an export bundle
        path = path / "saved_model"
    _check_predictor_path(path)
    folder = path if path.is_dir() else path.parent  # labels.txt beside, or in the bundle
    labels_file = next((f / "labels.txt" for f in (folder, folder.parent)
                        if (f / "labels.txt").is_file()), None)
    names = labels_file.read_text().splitlines() if labels_file else None
    if path.suffix in SERVED or (path / "saved_model.pb").is_file() or \
            (path / "model.xml").is_file():
        _exported_precision(path, precision)
    else:
        resolve_precision(precision)  # a bad value fails before the model loads
    if path.suffix in SERVED or (path / "model.xml").is_file():
        runner = SERVED.get(path.suffix, OpenVINORunner)(path)
        if path.suffix == ".tflite":
            names = tflite_labels(runner.model_bytes) or names

        def run(images):
            return runner(resize_uint8(images, runner.image_size).numpy())

        return run, names
    if (path / "saved_model.pb").is_file():
        return SavedModelRunner(path), names
    model = load_model(path, compile=False)
    preprocessing = recorded(model, "preprocessing")
    if preprocessing is None:
        raise ValueError(f"{path} does not say its preprocessing (a model built with "
                         "weights=None, saved outside a run); export it with an explicit "
                         "preprocessing first.")
    return KerasRunner(serving_model(model, preprocessing, precision=precision)), \
        recorded(model, "class_names") or names


PREDICTORS = ("a .keras file, a run folder (holding best.keras), a SavedModel or export "
              "folder, a .tflite or .onnx file, or an OpenVINO .xml (or its folder)")
# The exported files a runner takes by their suffix.
SERVED = {".tflite": TFLiteRunner, ".onnx": OnnxRunner, ".xml": OpenVINORunner}


def _check_predictor_path(path: Path):
    """A ValueError naming every form ``load_predictor`` takes, when ``path`` is none."""
    if path.is_file() and path.suffix in (".keras", *SERVED):
        return
    if path.is_dir() and any((path / name).is_file() for name in ("saved_model.pb",
                                                                   BEST, "model.xml")):
        return
    what = ("no such file or folder" if not path.exists() else
            "a folder without best.keras, saved_model.pb or model.xml" if path.is_dir() else
            f"a {path.suffix or 'suffix-less'} file")
    raise ValueError(f"Expected the model as {PREDICTORS}. Received: {str(path)!r} ({what})")


def _exported_precision(path, precision):
    """An exported file computes in the precision it was exported in: asking for one is an
    error, not a silent no-op."""
    if precision != "auto":
        raise expected(f"`precision` 'auto' (--precision auto) for an exported file: {path} "
                       "computes in the precision it was exported in", precision=precision)
