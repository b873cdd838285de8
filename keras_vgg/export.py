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
difference, top-1 agreement, accuracy when labels are given, size, median latency per
image). With no sample, 16 random images only gate SavedModel, float32 and float16 on
their max abs difference; no agreement is claimed and each row says
``"checked_on": "random images"``. The bundle is built in a temporary folder, moved into
place only when every file is written and passed its check. ``export_report.json``
holds the figures. A model built under a mixed-precision policy is exported as float32
(its float32 weights), whatever the global policy.

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

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vgg.preprocessing import as_preprocessing, preprocessing_affine, resize_uint8

FORMATS = ("saved_model", "tflite")
QUANTIZE = ("none", "float16", "dynamic", "int8")
INT8_IO = ("uint8", "int8")
TFLITE_FILES = {"none": "model_float32.tflite", "float16": "model_float16.tflite",
                "dynamic": "model_dynamic.tflite", "int8": "model_int8.tflite"}
# Largest max |exported - Keras| an export may show and still be written.
TOLERANCE = {"saved_model": 1e-4, "none": 1e-4, "float16": 5e-2}
FLATBUFFER_LIMIT = 2**31  # bytes: TFLite's flatbuffer cannot hold more
CALIBRATION_IMAGES = 200
RANDOM_IMAGES = 16  # the sample when none is given: a numeric gate, not an accuracy check
REPORT = "export_report.json"
# Dtype policies TFLite has no kernels for; their models are exported as float32.
LOW_PRECISION = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16")


def _op_names():
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


_OP_NAMES = _op_names()  # TFLite builtin op code -> name
_BUILTIN_NAMES = set(_OP_NAMES.values()) - {"CUSTOM"}


class ExportError(RuntimeError):
    """An export that could not be made or failed its check; nothing was written."""


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"Expected `{name}` to be one of {allowed}. Received: {name}={value!r}")
    return value


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(int(s) for s in size)


@contextlib.contextmanager
def float32_policy():
    """Keras's global dtype policy is float32 inside; the previous one comes back after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _float32_config(config):
    """A serialized model with every low-precision ``dtype`` replaced by float32."""
    if isinstance(config, list):
        return [_float32_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    fixed = {key: _float32_config(value) for key, value in config.items()}
    dtype = config.get("dtype")
    name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    if name in LOW_PRECISION:
        fixed["dtype"] = "float32"
    return fixed


@float32_policy()
def float32_model(model) -> keras.Model:
    """``model`` itself, or a float32 copy of it (same weights) when any of its layers
    computes in mixed or low precision: TFLite builtins have no bfloat16 kernels."""
    try:
        config = keras.saving.serialize_keras_object(model)
    except Exception:  # a model without a config: exported as it is
        return model
    fixed = _float32_config(config)
    if fixed == config:
        return model
    copy = keras.saving.deserialize_keras_object(fixed)
    copy.set_weights(model.get_weights())  # mixed precision keeps float32 variables
    return copy


@float32_policy()
def serving_model(model, preprocessing, image_size=None) -> keras.Model:
    """``pixels (float 0-255) -> preprocessing -> model`` as one float32 Keras model.

    The preprocessing is a frozen 1x1 convolution (see ``preprocessing_affine``).
    ``image_size`` is needed only when the model's own input size is open. A model
    built under a mixed-precision policy is copied to float32 (``float32_model``).
    """
    preprocessing = as_preprocessing(preprocessing)
    model = float32_model(model)
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

        # Builtins stay allowed beside the int8 kernels: an op with no int8 kernel
        # (LRN) runs as a float island between QUANTIZE/DEQUANTIZE.
        settings["target_spec"]["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                    *builtins]
        settings.update(representative_dataset=calibration, inference_input_type=io_type,
                        inference_output_type=io_type)
    return settings


def tflite_ops(model_bytes: bytes) -> dict:
    """``{op name: count}`` of a TFLite file, as written (before any delegate)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_bytes, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else _OP_NAMES[builtin])
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


def write_tflite(serving, path, quantize="none", representative=None, int8_io="uint8",
                 class_names=None) -> dict:
    """Convert ``serving`` to a TFLite file of builtin ops; returns its op counts."""
    _choice("quantize", quantize, QUANTIZE)
    _choice("int8_io", int8_io, INT8_IO)
    float_bytes = 4 * serving.count_params()
    if float_bytes >= FLATBUFFER_LIMIT:
        raise ExportError(
            f"The model holds {float_bytes / 2**30:.1f} GiB of float32 weights, over TFLite's "
            "2 GiB flatbuffer limit. Export a smaller input size or a pooled head "
            "(include_top=False, pooling='avg') instead of a large flatten head.")
    settings = converter_settings(quantize, representative, int8_io)
    size = tuple(serving.input_shape[1:3])
    path = Path(path)
    try:
        serving.export(str(path), format="litert", verbose=False,
                       input_signature=[tf.TensorSpec((1, *size, 3), tf.float32)], **settings)
    except Exception as error:  # the converter's own errors are long MLIR dumps
        message = str(error).strip().splitlines()
        raise ExportError(
            f"TFLite could not convert the model (quantize={quantize!r}): "
            f"{' '.join(message[:3])[:600]}. Every layer must map to a TFLite builtin op; "
            "replace custom or Lambda layers that use other TensorFlow ops.") from error
    model_bytes = path.read_bytes()
    ops = tflite_ops(model_bytes)
    foreign = sorted(op for op in ops if op not in _BUILTIN_NAMES)
    if foreign:
        raise ExportError(f"The TFLite model needs ops outside TFLite's builtins: {foreign}. "
                          "They would need the Flex delegate on the phone; replace the layers "
                          "that produce them.")
    if class_names is not None:
        path.write_bytes(add_labels(model_bytes, class_names))
    return ops




class KerasRunner:
    """Runs the Keras serving model (see ``serving_model``) on uint8 images of any size."""

    def __init__(self, serving):
        self.serving = serving
        self.image_size = tuple(serving.input_shape[1:3])

    def __call__(self, images):
        pixels = np.asarray(resize_uint8(images, self.image_size), dtype="float32")
        return self.serving.predict_on_batch(pixels)


class TFLiteRunner:
    """Runs a ``.tflite`` file with ``ai_edge_litert`` on uint8 images of its input size."""

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

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


def _as_images(images, size, name):
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected `{name}` to be RGB images (N, H, W, 3) with values "
                         f"0-255. Received shape {images.shape}.")
    return np.asarray(resize_uint8(images, size))


def compare(reference, outputs, labels=None) -> dict:
    """Max abs difference, top-1 agreement and (with labels) accuracy of ``outputs``."""
    row = {"max_abs_diff": float(np.max(np.abs(outputs - reference))),
           "top1_agreement": float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))}
    if labels is not None:
        row["accuracy"] = float(np.mean(outputs.argmax(-1) == labels))
    if not np.all(np.isfinite(outputs)):
        row["max_abs_diff"] = float("inf")
    return row


def _check(row, min_agreement):
    key = row["quantize"] or "saved_model"
    limit = TOLERANCE.get(key)
    if limit is not None and not row["max_abs_diff"] <= limit:
        raise ExportError(f"{row['file']} differs from the Keras model by "
                          f"{row['max_abs_diff']:.3g} (allowed {limit:g}); nothing was written.")
    if min_agreement is not None and row["top1_agreement"] < min_agreement:
        raise ExportError(f"{row['file']} agrees with the Keras model's top-1 on "
                          f"{row['top1_agreement']:.1%} of the sample (required "
                          f"{min_agreement:.1%}); nothing was written.")


def _size(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@float32_policy()
def export(model, out, formats=FORMATS, quantize=("none",), *, preprocessing,
           class_names=None, image_size=None, representative_data=None, sample=None,
           sample_labels=None, int8_io="uint8", min_agreement=None, overwrite=False,
           latency_repeats=10, verbose=True) -> dict:
    """Export ``model`` into the folder ``out``, check every file, and report.

    Args:
        model: a Keras model with one ``(batch, classes)`` output.
        out: the bundle folder: ``saved_model/``, ``model_*.tflite``, ``labels.txt``,
            ``export_report.json``. An existing one is replaced only with ``overwrite``.
        formats: any of ``"saved_model"``, ``"tflite"``.
        quantize: TFLite modes, any of ``"none"`` (float32), ``"float16"``,
            ``"dynamic"`` (int8 weights), ``"int8"`` (full integer).
        preprocessing: the weights' mode (``"caffe"``, ``"torch"``, ``"tf"``), or a
            ``Preprocessing`` with a mean pixel (``model.preprocessing`` of MatConvNet weights).
        class_names: one name per output; default ``"0", "1", ...``.
        image_size: the input size, when the model's own is open.
        representative_data: uint8 RGB training images to calibrate ``"int8"``.
        sample: uint8 RGB held-out images to check against. Without them, 16 random
            images gate SavedModel, float32 and float16 on their max abs difference only,
            and no agreement is claimed (``"checked_on": "random images"``).
        sample_labels: their labels, to report accuracy.
        int8_io: ``"uint8"`` or ``"int8"`` input and output of the int8 model.
        min_agreement: refuse an export whose top-1 agreement with Keras on ``sample``
            is lower (needs ``sample``).
    """
    formats = [_choice("formats", f, FORMATS) for f in formats]
    quantize = [_choice("quantize", q, QUANTIZE) for q in quantize]
    quantize = quantize if "tflite" in formats else []
    if not formats:
        raise ValueError(f"Expected at least one of {FORMATS} in `formats`.")
    _choice("int8_io", int8_io, INT8_IO)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it.")
    serving = serving_model(model, preprocessing, image_size)
    size = tuple(serving.input_shape[1:3])
    classes = serving.output_shape[-1]
    class_names = [str(name) for name in (range(classes) if class_names is None else class_names)]
    if len(class_names) != classes:
        raise ValueError(f"Expected {classes} `class_names` (one per model output). "
                         f"Received {len(class_names)}.")
    real = sample is not None
    if not real:
        if min_agreement is not None or sample_labels is not None:
            raise ValueError("Expected `sample` (real held-out images) with `min_agreement` "
                             "or `sample_labels`: agreement and accuracy on random images "
                             "mean nothing. Received: sample=None")
        sample_source = "random"
        sample = np.random.default_rng(0).integers(0, 256, (RANDOM_IMAGES, *size, 3),
                                                   dtype=np.uint8)
    else:
        sample_source = "given"
        sample = _as_images(sample, size, "sample")
    labels = None if sample_labels is None else np.asarray(sample_labels)
    if labels is not None and len(labels) != len(sample):
        raise ValueError(f"Expected one label per sample image ({len(sample)}). "
                         f"Received {len(labels)} `sample_labels`.")
    if representative_data is not None:
        representative_data = _as_images(representative_data, size, "representative_data")
    if "int8" in quantize:
        converter_settings("int8", representative_data)  # fails now, not after other exports

    keras_run = KerasRunner(serving)
    reference = keras_run(sample)
    report = {
        "model": model.name, "image_size": list(size),
        "preprocessing": as_preprocessing(preprocessing).to_json(),
        "classes": classes, "sample": {"images": len(sample), "source": sample_source,
                                       "labels": labels is not None},
        "keras": {"latency_ms": median_ms(keras_run, sample[0], latency_repeats),
                  **({"accuracy": float(np.mean(reference.argmax(-1) == labels))}
                     if labels is not None else {})},
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "tensorflow": tf.__version__,
                    "keras": keras.__version__},
        "exports": [],
    }
    created = next((p for p in reversed(out.absolute().parents) if not p.exists()), None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_folder(out.parent, f".{out.name}.tmp-")
    try:
        (tmp / "labels.txt").write_text("\n".join(class_names) + "\n")
        targets = [("saved_model", None)] if "saved_model" in formats else []
        targets += [("tflite", q) for q in quantize]
        for fmt, q in targets:
            name = "saved_model" if fmt == "saved_model" else TFLITE_FILES[q]
            started = time.perf_counter()
            if fmt == "saved_model":
                write_saved_model(serving, tmp / name, class_names)
                run, ops = SavedModelRunner(tmp / name), None
            else:
                ops = write_tflite(serving, tmp / name, q, representative_data, int8_io,
                                   class_names)
                run = TFLiteRunner(tmp / name)
            row = {"format": fmt, "quantize": q, "file": name, "size_bytes": _size(tmp / name),
                   "seconds": round(time.perf_counter() - started, 1),
                   "checked_on": "real images" if real else "random images",
                   **_figures(compare(reference, run(sample), labels), q, real),
                   "latency_ms": median_ms(run, sample[0], latency_repeats)}
            if ops is not None:
                row["ops"] = ops
                if q == "int8":
                    row["io"] = int8_io
            _check(row, min_agreement)
            report["exports"].append(row)
            if verbose:
                print(f"{name}: {_summary(row)}", flush=True)
        float32 = next((r["size_bytes"] for r in report["exports"] if r["quantize"] == "none"),
                       None)
        for row in report["exports"]:
            if float32 and row["format"] == "tflite":
                row["size_vs_float32"] = row["size_bytes"] / float32
        (tmp / REPORT).write_text(json.dumps(report, indent=2))
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created is not None:  # folders this export made for its output
            shutil.rmtree(created, ignore_errors=True)
        raise
    if verbose:
        print(format_report(report))
    return report


def _figures(row, quantize, real):
    """The figures of ``compare`` that the sample supports: on random images, only the max
    abs difference of the exports that are gated on it (SavedModel, float32, float16)."""
    if real:
        return row
    return {"max_abs_diff": row["max_abs_diff"]} if (quantize or "saved_model") in TOLERANCE \
        else {}


def _summary(row):
    if row["checked_on"] == "real images":
        return (f"max |diff| {row['max_abs_diff']:.2g}, "
                f"top-1 agreement {row['top1_agreement']:.1%}")
    gate = f"max |diff| {row['max_abs_diff']:.2g} on random images; " \
        if "max_abs_diff" in row else ""
    return gate + "not checked on real images"


def _new_folder(parent: Path, prefix: str) -> Path:
    """A new empty folder in ``parent`` with the usual permissions (0o777 less the umask;
    ``tempfile.mkdtemp`` makes 0o700, which other users, such as a server, cannot read)."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _move_into_place(tmp: Path, out: Path):
    """``tmp`` becomes ``out``; an old ``out`` is removed only once the new one is there."""
    if not out.exists():
        tmp.replace(out)
        return
    old = _new_folder(out.parent, f".{out.name}.old-")
    out.replace(old / out.name)
    try:
        tmp.replace(out)
    except BaseException:
        (old / out.name).replace(out)  # the old bundle goes back
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


def format_report(report) -> str:
    """The report as a table: one row for Keras, one per exported file."""
    header = ("export", "size MB", "vs f32", "max |diff|", "top-1 agree", "accuracy",
              "ms/image")
    keras_row = report["keras"]
    rows = [header, ("keras", "", "", "", "", _pct(keras_row.get("accuracy")),
                     f"{keras_row['latency_ms']:.2f}")]
    for r in report["exports"]:
        rows.append((r["file"], f"{r['size_bytes'] / 1e6:.2f}",
                     f"{r['size_vs_float32']:.3f}" if "size_vs_float32" in r else "",
                     f"{r['max_abs_diff']:.2g}" if "max_abs_diff" in r else "",
                     _pct(r.get("top1_agreement")), _pct(r.get("accuracy")),
                     f"{r['latency_ms']:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    sample = report["sample"]
    lines.append(f"Sample: {sample['images']} {sample['source']} images at "
                 f"{report['image_size'][0]}x{report['image_size'][1]}; latency is the "
                 f"median per image (batch 1) on {report['machine']['cores']} CPU cores.")
    if sample["source"] == "random":
        lines.append("Not checked on real images: max |diff| on random images is a sanity "
                     "check only; give sample images (--sample-data DIR) for agreement.")
    return "\n".join(lines)


def _pct(value):
    return "" if value is None else f"{value:.1%}"


def read_model_info(path):
    """A ``.keras`` file (or a run folder holding ``best.keras``) and what the recipe
    run wrote beside it: ``(model, {"preprocessing": ..., "class_names": [...]})``."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.keras"
    if path.suffix != ".keras" or not path.is_file():
        raise ValueError(f"Expected a .keras file or a run folder holding best.keras. "
                         f"Received: {path}")
    info = {}
    metrics = path.parent / "metrics.json"
    if metrics.is_file():
        final = json.loads(metrics.read_text()).get("final", {})
        info = {k: final[k] for k in ("preprocessing", "class_names") if k in final}
    names = path.parent / "class_names.txt"
    if "class_names" not in info and names.is_file():
        info["class_names"] = names.read_text().splitlines()
    return keras.saving.load_model(path), info


def load_predictor(path):
    """``(run, class_names)`` for a ``.keras`` file or run folder, a SavedModel folder, an
    export folder (its ``saved_model/``) or a ``.tflite`` file; ``run`` maps uint8 RGB images
    of any size to probabilities."""
    path = Path(path)
    if (path / "saved_model" / "saved_model.pb").is_file():  # an export bundle
        path = path / "saved_model"
    folder = path if path.is_dir() else path.parent  # labels.txt beside, or in the bundle
    labels_file = next((f / "labels.txt" for f in (folder, folder.parent)
                        if (f / "labels.txt").is_file()), None)
    names = labels_file.read_text().splitlines() if labels_file else None
    if path.suffix == ".tflite":
        runner = TFLiteRunner(path)
        names = tflite_labels(runner.model_bytes) or names

        def run(images):
            return runner(resize_uint8(images, runner.image_size).numpy())

        return run, names
    if (path / "saved_model.pb").is_file():
        return SavedModelRunner(path), names
    model, info = read_model_info(path)
    if "preprocessing" not in info:
        raise ValueError(f"{path} does not say its preprocessing (no metrics.json beside it); "
                         "export it with an explicit preprocessing first.")
    return KerasRunner(serving_model(model, info["preprocessing"])), info.get("class_names", names)
