"""The export bundle: every requested file written into a temporary folder, run against the
Keras model, reported, and moved into place only when all of them passed their check.

Example:
    >>> import tempfile, keras
    >>> from pathlib import Path
    >>> from keras_vgg.export.bundle import export
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> out = Path(tempfile.mkdtemp()) / "bundle"
    >>> report = export(model, out, ["saved_model"], preprocessing="tf", verbose=False)
    >>> row = report["exports"][0]  # no sample given: 16 random images, no agreement claimed
    >>> row["file"], row["checked_on"], "top1_agreement" in row, row["max_abs_diff"] < 1e-4
    ('saved_model', 'random images', False, True)
    >>> sorted(p.name for p in out.iterdir())
    ['export_report.json', 'labels.txt', 'saved_model']
"""

from __future__ import annotations

import json
import numbers
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vgg.export.checks import (
    agreement_gate,
    as_images,
    check_row,
    compare,
    supported_figures,
)
from keras_vgg.export.formats import (
    DEFAULT_FORMATS,
    FORMATS,
    INT8_IO,
    MIN_AGREEMENT,
    QUANTIZE,
    RANDOM_IMAGES,
    REPORT,
    SERVE_FILES,
    TFLITE_FILES,
    TFLITE_ONLY,
    TFLITE_PRECISION,
    one_of,
)
from keras_vgg.export.flatbuffer import tflite_ops
from keras_vgg.export.report import format_report, row_summary
from keras_vgg.export.runners import KerasRunner, SavedModelRunner, TFLiteRunner, median_ms
from keras_vgg.export.onnx_export import OnnxRunner, onnx_backends, require_onnx, write_onnx
from keras_vgg.export.openvino_export import (OpenVINORunner, openvino_backends,
                                              require_openvino, write_openvino)
from keras_vgg.export.saved_model import write_saved_model
from keras_vgg.export.serving import float32_policy, serving_model
from keras_vgg.export.litert_quantize import (QUANTIZER_MODES, require_quantizer, tflite_tool,
                                              validate)
from keras_vgg.export.tflite import converter_settings, float_tflite, write_tflite
from keras_vgg._helpers import OutputExists, expected, new_folder, recorded
from keras_vgg.pruning import conv_widths, model_cost
from keras_vgg.precision import detect_precision, resolve_precision, with_precision
from keras_vgg.preprocessing import as_preprocessing, model_preprocessing
from keras_vgg.stats import accuracy_of, paired_difference


@float32_policy()
def check_backend(what="export", formats=DEFAULT_FORMATS):
    """SavedModel and TFLite files are written by TensorFlow, ONNX and OpenVINO files by the
    backends of ``onnx_backends()`` and ``openvino_backends()``: an error, saying what to do,
    when this Keras backend cannot write one of ``formats``."""
    backend = keras.backend.backend()
    for fmt, able in (("onnx", onnx_backends()), ("openvino", openvino_backends())):
        if fmt in formats and backend not in able:
            raise ValueError(
                f"Expected KERAS_BACKEND={' or '.join(able)} for {fmt} files (Keras's "
                f"Model.export cannot write a VGG's {fmt} file under {backend}: "
                f"docs/backends.md). Received: KERAS_BACKEND={backend}")
    if backend != "tensorflow" and {"saved_model", "tflite"} & set(formats):
        raise ValueError(
            f"Expected KERAS_BACKEND=tensorflow for {what} (SavedModel and TFLite files are "
            f"written by TensorFlow). Received: KERAS_BACKEND={backend}. Save the model as "
            f".keras (a run's best.keras is one) and export it with `KERAS_BACKEND=tensorflow "
            f"keras-vgg export MODEL.keras`: a model trained on jax or torch exports there, "
            f"the same weights, checked against Keras.")


def export(model, out, formats=DEFAULT_FORMATS, quantize=("none",), *, preprocessing=None,
           class_names=None, image_size=None, representative_data=None, sample=None,
           sample_labels=None, int8_io="uint8", min_agreement=None, precision="float32",
           overwrite=False, latency_repeats=10, verbose=True) -> dict:
    """Export ``model`` into the folder ``out``, check every file, and report.

    Args:
        model: a Keras model with one ``(batch, classes)`` output.
        out: the bundle folder: ``saved_model/``, ``model_*.tflite``, ``labels.txt``,
            ``export_report.json``. An existing one is replaced only with ``overwrite``.
        formats: any of ``"saved_model"``, ``"tflite"`` (the default: both), ``"onnx"``
            (``model.onnx``, run by ONNX Runtime), ``"openvino"`` (``openvino/model.xml``
            and ``.bin``, run by OpenVINO); the last two need the ``serve`` extra.
        quantize: TFLite modes, any of ``"none"`` (float32), ``"float16"``,
            ``"dynamic"`` (int8 weights), ``"int8"`` (full integer), ``"int4"`` (int4
            weights); the last three by the LiteRT Quantizer's recipes from the float32
            file (``keras_vgg.export.litert_quantize``), each row with the quantizer's
            per-tensor validation (``"quantizer"``).
            ONNX and OpenVINO files take ``"none"`` and ``"int8"`` (``model_int8.onnx``: ONNX Runtime's
            static QDQ quantization; ``openvino_int8/``: NNCF), both calibrated on
            ``representative_data``.
        preprocessing: the weights' mode (``"caffe"``, ``"torch"``, ``"tf"``), or a
            ``Preprocessing`` with a mean pixel; default: what the model records
            (``model.preprocessing``, also of a nested base).
        class_names: one name per output; default: what the model records, else
            ``"0", "1", ...``.
        image_size: the input size, when the model's own is open.
        representative_data: uint8 RGB training images to calibrate ``"int8"``.
        sample: uint8 RGB held-out images to check against. Without them, 16 random
            images gate SavedModel, float32 and float16 on their max abs difference only,
            and no agreement is claimed (``"checked_on": "random images"``).
        sample_labels: their labels, to report accuracy: each file's paired difference
            with the Keras model (``keras_vgg.stats.paired_difference``).
        int8_io: ``"uint8"`` or ``"int8"`` input and output of the int8 model.
        min_agreement: refuse a file whose top-1 agreement with Keras on ``sample`` is
            lower, and write nothing. Default (None): ``MIN_AGREEMENT`` (0.8) for dynamic
            and int8 files when ``sample`` is given (random images cannot judge it). A
            fraction from 0 to 1 gates every file (needs ``sample``); 0 turns it off. A
            file within ``NEAR_TIE`` (0.05) of every Keras probability passes: each answer
            it changed was a near tie of the Keras model.
        precision: what the SavedModel computes in: ``"float32"``, ``"bfloat16"``,
            ``"float16"`` or ``"auto"`` (this machine's fastest, see ``keras_vgg.precision``);
            checked against the float32 Keras model. TFLite files are float32 or quantized;
            ONNX files float32 or int8; OpenVINO files are float32 or int8 and record the
            inference precision hint they were checked in (``bf16`` for bfloat16).
    """
    targets = _targets(formats, quantize, int8_io)
    check_backend("export", [fmt for fmt, _ in targets])
    _check_serve(targets, representative_data)
    _check_min_agreement(min_agreement)
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExists(f"{out} exists; pass overwrite=True (--overwrite) to replace it.")
    if preprocessing is None:
        preprocessing = model_preprocessing(model)
    if class_names is None:
        class_names = recorded(model, "class_names")
    precision = resolve_precision(precision)
    serving = serving_model(model, preprocessing, image_size)
    size = tuple(serving.input_shape[1:3])
    class_names = _class_names(class_names, serving.output_shape[-1])
    sample, labels, source = _sample(sample, sample_labels, size, min_agreement)
    if representative_data is not None:
        representative_data = as_images(representative_data, size, "representative_data")
    if ("tflite", "int8") in targets:
        converter_settings("int8", representative_data)  # fails now, not after other exports

    keras_run = KerasRunner(serving)
    reference = keras_run(sample)
    keras_figures = {"latency_ms": median_ms(keras_run, sample[0], latency_repeats)}
    if labels is not None:
        scored = accuracy_of(labels, reference.argmax(-1))
        keras_figures.update(accuracy=scored.value, accuracy_with_ci=scored.to_json())
    job = _Job(serving, precision, class_names, representative_data, int8_io, sample, reference,
               labels, source == "given", min_agreement, latency_repeats)
    report = _report(model, job, preprocessing, keras_figures, source)
    _in_place(out, lambda folder: _write_bundle(folder, targets, job, report, verbose))
    if verbose:
        print(format_report(report))
    return report


def _targets(formats, quantize, int8_io):
    """``[(format, quantize), ...]`` in export order: the SavedModel, each TFLite mode, then
    the ONNX and OpenVINO files of the modes they take (``"none"``, ``"int8"``)."""
    if isinstance(formats, str):
        formats = [formats]
    formats = [one_of("formats", f, FORMATS) for f in formats]
    quantize = [one_of("quantize", q, QUANTIZE) for q in quantize]
    if not formats:
        raise ValueError(f"Expected at least one of {FORMATS} in `formats`.")
    one_of("int8_io", int8_io, INT8_IO)
    targets = [("saved_model", None)] if "saved_model" in formats else []
    targets += [("tflite", q) for q in quantize] if "tflite" in formats else []
    tflite_only = [q for q in quantize if q in TFLITE_ONLY]
    if tflite_only and "tflite" not in formats:
        raise expected(f"`formats` to hold 'tflite' for quantize {tflite_only} (TFLite files "
                       f"only)", formats=list(formats), quantize=list(quantize))
    for fmt in (f for f in SERVE_FILES if f in formats):
        modes = [q for q in quantize if q in SERVE_FILES[fmt]]
        if not modes:
            raise expected(f"`quantize` to hold 'none' or 'int8' for {fmt} files "
                           f"({', '.join(TFLITE_ONLY)} are TFLite's)", quantize=list(quantize))
        targets += [(fmt, q) for q in modes]
    return targets


def _check_serve(targets, representative):
    """The LiteRT Quantizer the dynamic, int8 and int4 TFLite files need and the runtimes the
    ONNX and OpenVINO targets need, imported (a missing one: an error naming its extra); an
    int8 ONNX or OpenVINO target without representative images: an error."""
    if any(f == "tflite" and q in QUANTIZER_MODES for f, q in targets):
        require_quantizer()
    for fmt, needs in (("onnx", require_onnx), ("openvino", require_openvino)):
        modes = [q for f, q in targets if f == fmt]
        if modes:
            needs(modes)
        if "int8" in modes and representative is None:
            raise expected(f"`representative_data` (--representative-data: training images) "
                           f"to calibrate {SERVE_FILES[fmt]['int8']}",
                           representative_data=None)


def _check_min_agreement(min_agreement):
    """A ValueError unless ``min_agreement`` is None or a fraction from 0 to 1."""
    if min_agreement is None:
        return
    if isinstance(min_agreement, bool) or not isinstance(min_agreement, numbers.Real) or \
            not 0 <= min_agreement <= 1:
        raise expected(f"`min_agreement` to be a fraction from 0 to 1 (--min-agreement; "
                       f"default {MIN_AGREEMENT} for dynamic and int8 files, 0 turns the "
                       f"gate off)", min_agreement=min_agreement)


def _class_names(class_names, classes):
    names = [str(name) for name in (range(classes) if class_names is None else class_names)]
    if len(names) != classes:
        raise ValueError(f"Expected {classes} `class_names` (one per model output). "
                         f"Received {len(names)}.")
    return names


def _sample(sample, sample_labels, size, min_agreement):
    """``(images, labels or None, source)``: the given images at ``size``, or random ones."""
    if sample is None:
        if min_agreement or sample_labels is not None:
            raise ValueError("Expected `sample` (real held-out images) with `min_agreement` "
                             "or `sample_labels`: agreement and accuracy on random images "
                             "mean nothing. Received: sample=None")
        images = np.random.default_rng(0).integers(0, 256, (RANDOM_IMAGES, *size, 3),
                                                   dtype=np.uint8)
        return images, None, "random"
    sample = as_images(sample, size, "sample")
    labels = None if sample_labels is None else np.asarray(sample_labels)
    if labels is not None and len(labels) != len(sample):
        raise ValueError(f"Expected one label per sample image ({len(sample)}). "
                         f"Received {len(labels)} `sample_labels`.")
    return sample, labels, "given"


@dataclass(frozen=True, eq=False)
class _Job:
    """What every file of one bundle is written with (the serving model, its precision,
    class names, int8 calibration images and io) and checked on (the sample, the Keras
    model's outputs on it, its labels, whether it is real images, the agreement gate's
    minimum, the latency repeats)."""

    serving: keras.Model
    precision: str
    class_names: list
    representative: np.ndarray | None
    int8_io: str
    sample: np.ndarray
    reference: np.ndarray
    labels: np.ndarray | None
    real: bool
    min_agreement: float | None
    repeats: int
    converted: dict = field(default_factory=dict)  # the float32 TFLite file, converted once

    def float_tflite(self) -> bytes:
        """The serving model's float32 TFLite file (no labels), converted on first use."""
        if "float32" not in self.converted:
            self.converted["float32"] = float_tflite(self.serving)
        return self.converted["float32"]


def _report(model, job: _Job, preprocessing, keras_figures, source) -> dict:
    """The report before any export: the model, its sample, Keras's figures, the machine."""
    sample = {"images": len(job.sample), "source": source, "labels": job.labels is not None}
    return {
        "model": model.name, "image_size": list(job.serving.input_shape[1:3]), **_cost(model),
        "preprocessing": as_preprocessing(preprocessing).to_json(),
        "classes": len(job.class_names), "sample": sample, "keras": keras_figures,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "tensorflow": tf.__version__,
                    "keras": keras.__version__, "auto_precision": str(detect_precision())},
        "exports": [],
    }


def _cost(model) -> dict:
    """A keras_vgg model's parameters, FLOPs and conv widths (``keras_vgg.pruning``); {} for
    another model or an open input size."""
    try:
        cost = model_cost(model)
    except ValueError:
        return {}
    return {"params": cost.params, "flops": cost.flops, "widths": list(conv_widths(model))}


def _write_and_check(job: _Job, folder, target) -> dict:
    """One ``(format, quantize)`` file written into ``folder``, run on the sample and checked
    against ``job.reference`` (the Keras model's outputs): its report row."""
    fmt, q = target
    sample, labels, real, precision = job.sample, job.labels, job.real, job.precision
    started = time.perf_counter()
    name, run, ops, hint = _write_file(job, folder, target)
    files = (folder / name).parent if fmt == "openvino" else folder / name  # .xml and .bin
    row = {"format": fmt, "quantize": q, "file": name, "size_bytes": _size(files),
           "precision": precision if fmt == "saved_model" else TFLITE_PRECISION[q],
           **({"inference_precision": hint} if hint else {}),
           "seconds": round(time.perf_counter() - started, 1),
           "checked_on": "real images" if real else "random images",
           "latency_ms": median_ms(run, sample[0], job.repeats)}
    outputs = run(sample)
    row.update(supported_figures(compare(job.reference, outputs, labels), row, real))
    if real and labels is not None:  # Keras first: the difference is the file's drop
        row["paired_difference"] = paired_difference(
            labels, job.reference.argmax(-1), outputs.argmax(-1)).to_json()
    if ops is not None:  # a TFLite file: its ops
        row["ops"] = ops
        if q == "int8":
            row["io"] = job.int8_io
        if q in QUANTIZER_MODES:
            row["quantizer"] = _quantizer_figures(job, folder / name, q)
    gate = agreement_gate(q, job.min_agreement, real)
    row["agreement_gate"] = {**gate.to_json(), "result": check_row(row, gate, len(sample))}
    return row


def _write_file(job: _Job, folder, target):
    """``(name, runner, TFLite ops or None, OpenVINO inference hint or None)`` of the
    ``(format, quantize)`` file it writes into ``folder``."""
    fmt, q = target
    serving, precision, class_names = job.serving, job.precision, job.class_names
    representative = job.representative
    if fmt == "saved_model":
        write_saved_model(with_precision(serving, precision, inference=True),
                          folder / "saved_model", class_names)
        return "saved_model", SavedModelRunner(folder / "saved_model"), None, None
    if fmt == "onnx":
        name = SERVE_FILES["onnx"][q]
        write_onnx(serving, folder / name, q, representative)
        return name, OnnxRunner(folder / name), None, None
    if fmt == "openvino":
        name = SERVE_FILES["openvino"][q]
        hint = write_openvino(serving, folder / name, q, representative, precision)
        return name, OpenVINORunner(folder / name), None, hint
    name = TFLITE_FILES[q]
    float_model = job.float_tflite() if q in ("none", *QUANTIZER_MODES) else None
    ops = write_tflite(serving, folder / name, q, representative, job.int8_io, class_names,
                       float_model=float_model)
    return name, TFLiteRunner(folder / name), ops, None


def _quantizer_figures(job: _Job, path: Path, quantize) -> dict:
    """A quantized TFLite file's ``"quantizer"`` entry: the tool that wrote it (the LiteRT
    Quantizer's recipe, or the converter and why) and, for the quantizer's files, its
    per-tensor validation against the float32 file on the sample's first images."""
    float_model = job.float_tflite()
    tool = tflite_tool(quantize, tflite_ops(float_model))
    figures = tool.to_json()
    if tool.tool == "litert-quantizer":
        figures["validation"] = validate(float_model, path.read_bytes(), job.sample).to_json()
    return figures


def _write_bundle(folder, targets, job: _Job, report, verbose):
    """``labels.txt``, each target's file (``_write_and_check`` gives its report row) and
    the report, with every TFLite, ONNX and OpenVINO file's size against its format's
    float32 file's."""
    (folder / "labels.txt").write_text("\n".join(job.class_names) + "\n")
    for target in targets:
        row = _write_and_check(job, folder, target)
        report["exports"].append(row)
        if verbose:
            print(f"{row['file']}: {row_summary(row)}", flush=True)
    float32 = {r["format"]: r["size_bytes"] for r in report["exports"] if r["quantize"] == "none"}
    for row in report["exports"]:  # against the float32 file of the same format
        if float32.get(row["format"]) and row["format"] != "saved_model":
            row["size_vs_float32"] = row["size_bytes"] / float32[row["format"]]
    report["fastest"] = fastest(report)
    (folder / REPORT).write_text(json.dumps(report, indent=2))


def fastest(report) -> dict:
    """The file of ``report`` with the lowest latency here (batch 1, each file's median as
    timed by its check, one after another), with its speed-up over the Keras model."""
    best = min(report["exports"], key=lambda row: row["latency_ms"])
    return {"file": best["file"], "latency_ms": best["latency_ms"],
            "vs_keras": report["keras"]["latency_ms"] / best["latency_ms"],
            "machine": report["machine"]["cpu"], "cores": report["machine"]["cores"]}


def _size(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _in_place(out: Path, build):
    """``build(folder)`` fills a new hidden folder beside ``out``, which then becomes ``out``.
    On any failure or interrupt nothing of it is left, nor any parent folder it made."""
    created = next((p for p in reversed(out.absolute().parents) if not p.exists()), None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_folder(out.parent, f".{out.name}.tmp-")
    try:
        build(tmp)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created is not None:  # folders this export made for its output
            shutil.rmtree(created, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, out: Path):
    """``tmp`` becomes ``out``; an old ``out`` is removed only once the new one is there."""
    if not out.exists():
        tmp.replace(out)
        return
    old = new_folder(out.parent, f".{out.name}.old-")
    out.replace(old / out.name)
    try:
        tmp.replace(out)
    except BaseException:
        (old / out.name).replace(out)  # the old bundle goes back
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)
