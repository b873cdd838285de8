"""LRN as TFLite builtins: what a full-int8 file of an LRN variant gains, side by side.

keras_vgg writes LRN with builtins that have int8 kernels (MUL, a banded 1x1 CONV_2D, LOG,
EXP) instead of TFLite's LOCAL_RESPONSE_NORMALIZATION, which is float32 only (a float
island between DEQUANTIZE and QUANTIZE in an int8 file) and which XNNPACK does not take.
All files below are timed in one process, in alternating rounds (batch 1, all CPU threads):

- VGG11 (A) and VGG11-LRN (A-LRN) have the same convolutions and differ by one LRN after
  conv1, so LRN model / plain isolates the LRN, per mode (target: int8 within 1.3x).
- VGG-F, VGG-M, VGG-S: int8 against their float32 export (target: int8 >= 3x faster).
- Float islands: DEQUANTIZE ops in each int8 file (0 when int8 end to end).
- Keras on TensorFlow (VGG-F, batch 8): the layer's builtin graph against
  tf.nn.local_response_normalization, forward and a training step, float32 and mixed
  bfloat16 (what decided that the layer keeps one implementation).

Models are headless with global average pooling and a 10-class head, random weights,
caffe preprocessing inside the file (conv1 outputs in the hundreds, as with real weights).

With --ops: where an int8 LRN's time goes. The layer alone on VGG11-LRN's conv1 map
(size x size x 64), and one-op int8 files of LOG, EXP and MUL on that map, each timed at 1
thread and at all threads: an op XNNPACK runs gets faster with threads, TFLite's own
single-threaded kernels do not.

Usage:
    python benchmarks/export_lrn.py               # 224x224, 20 rounds (about 6 minutes)
    python benchmarks/export_lrn.py --size 64 --repeats 3
    python benchmarks/export_lrn.py --ops         # the LRN's ops alone (about a minute)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

import common  # noqa: F401  (first: it quiets TensorFlow's logs)
import keras
import numpy as np
import tensorflow as tf
from common import alternate, median, paired, wall

from keras_vgg import get_model
from keras_vgg.export import TFLiteRunner, serving_model, tflite_ops, write_tflite
from keras_vgg.layers import LocalResponseNormalization

PAIR = ("vgg11", "vgg11_lrn")
FAST = ("vgg_f", "vgg_m", "vgg_s")
MODES = {"none": "float32", "int8": "int8"}
NAMES = {"vgg11": "VGG11", "vgg11_lrn": "VGG11-LRN", "vgg_f": "VGG-F", "vgg_m": "VGG-M",
         "vgg_s": "VGG-S"}
KERAS_BATCH = 8


def classifier(variant, size, classes=10):
    keras.utils.set_random_seed(0)
    base = get_model(variant, include_top=False, input_shape=(size, size, 3), pooling="avg")
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(base(inputs)))


def tflite_rows(size, repeats, images, tmp):
    """Per (variant, quantize): median ms per image, MB, DEQUANTIZE count, op counts."""
    runners, rows = {}, {}
    for variant in PAIR + FAST:
        serving = serving_model(classifier(variant, size), "caffe")
        for quantize in MODES:
            path = Path(tmp) / f"{variant}_{quantize}.tflite"
            ops = write_tflite(serving, path, quantize, representative=images)
            runners[variant, quantize] = TFLiteRunner(path)
            rows[variant, quantize] = {"mb": path.stat().st_size / 1e6, "ops": ops,
                                       "islands": ops.get("DEQUANTIZE", 0)}
        keras.backend.clear_session()
    image = images[:1]
    seconds = alternate({key: wall(lambda r=runner: r(image)) for key, runner in runners.items()},
                        repeats)
    for key, row in rows.items():
        row["ms"] = 1000 * median(seconds[key])
        row["seconds"] = seconds[key]
    return rows


def _tf_nn_call(self, inputs):
    x = tf.cast(inputs, "float32")  # tf.nn's CPU kernel has no bfloat16 form
    y = tf.nn.local_response_normalization(x, self.depth_radius, self.bias, self.alpha,
                                           self.beta)
    return tf.cast(y, inputs.dtype)


@contextlib.contextmanager
def tf_nn_lrn():
    """LocalResponseNormalization computed by tf.nn.local_response_normalization inside."""
    own = LocalResponseNormalization.call
    LocalResponseNormalization.call = _tf_nn_call
    try:
        yield
    finally:
        LocalResponseNormalization.call = own


def keras_rows(size, repeats):
    """Seconds per round of VGG-F's forward pass and training step (input gradients and
    weight gradients), the layer's own graph and tf.nn's, float32 and mixed bfloat16."""
    x = tf.constant(np.random.default_rng(0).uniform(-120, 130, (KERAS_BATCH, size, size, 3)),
                    "float32")
    clocks = {}
    previous = keras.config.dtype_policy().name
    try:
        for policy in ("float32", "mixed_bfloat16"):
            keras.config.set_dtype_policy(policy)
            model = get_model("vgg_f", include_top=False, input_shape=(size, size, 3),
                              pooling="avg")

            def train(x, model=model):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.cast(model(x, training=True), "float32") ** 2)
                return tape.gradient(loss, model.trainable_variables)

            for form in ("layer", "tf.nn"):
                with tf_nn_lrn() if form == "tf.nn" else contextlib.nullcontext():
                    forward = tf.function(lambda x, model=model: model(x, training=False))
                    step = tf.function(train)
                    forward(x), step(x)  # traced with this form's graph
                for mode, fn in (("forward", forward), ("train step", step)):
                    clocks[policy, mode, form] = wall(
                        lambda fn=fn: [t.numpy() for t in tf.nest.flatten(fn(x))])
    finally:
        keras.config.set_dtype_policy(previous)
    return alternate(clocks, repeats)


def measure(size, repeats):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        rows = tflite_rows(size, repeats, images, tmp)
    rows["keras"] = keras_rows(size, repeats)
    keras.backend.clear_session()
    return rows


def table(rows, size, repeats) -> str:
    ratio = {key: paired(rows[key[0], key[1]]["seconds"], rows[key[2], key[3]]["seconds"])
             for key in [(v, "none", v, "int8") for v in PAIR + FAST]
             + [(PAIR[1], q, PAIR[0], q) for q in MODES]}
    lines = [f"TFLite latency per image (batch 1, median of {repeats} alternating rounds), "
             f"{size}x{size}, {os.cpu_count()} CPU threads; ratios are medians of per-round "
             "ratios:", "",
             "| mode | VGG11 ms | VGG11-LRN ms | LRN model / plain | float islands |",
             "|---|---:|---:|---:|---:|"]
    for quantize, label in MODES.items():
        plain, lrn = rows[PAIR[0], quantize], rows[PAIR[1], quantize]
        lines.append(f"| {label} | {plain['ms']:.1f} | {lrn['ms']:.1f} | "
                     f"{ratio[PAIR[1], quantize, PAIR[0], quantize]:.2f} | {lrn['islands']} |")
    lines += ["", "| model | float32 ms | int8 ms | int8 speed-up | int8 MB | float islands |",
              "|---|---:|---:|---:|---:|---:|"]
    for variant in PAIR + FAST:
        f32, int8 = rows[variant, "none"], rows[variant, "int8"]
        lines.append(f"| {NAMES[variant]} | {f32['ms']:.1f} | {int8['ms']:.1f} | "
                     f"{ratio[variant, 'none', variant, 'int8']:.2f}x | {int8['mb']:.1f} | "
                     f"{int8['islands']} |")
    lrn_cost = ratio[PAIR[1], "int8", PAIR[0], "int8"]
    fast = {v: ratio[v, "none", v, "int8"] for v in FAST}
    lines += ["", f"Target VGG11-LRN int8 within 1.3x of VGG11 int8: {lrn_cost:.2f}x, "
              f"{'met' if lrn_cost <= 1.3 else 'not met'}.",
              "Target VGG-F/M/S int8 >= 3x faster than float32: "
              + ", ".join(f"{NAMES[v]} {s:.2f}x" for v, s in fast.items())
              + f", {'met' if min(fast.values()) >= 3 else 'not met'}."]
    seconds = rows["keras"]
    lines += ["", f"Keras on TensorFlow, VGG-F at {size}x{size}, batch {KERAS_BATCH} "
              "(tf.function, no XLA), ms per batch:", "",
              "| precision | pass | layer (builtins) | tf.nn LRN | layer / tf.nn |",
              "|---|---|---:|---:|---:|"]
    for policy in ("float32", "mixed_bfloat16"):
        for mode in ("forward", "train step"):
            own, tf_nn = seconds[policy, mode, "layer"], seconds[policy, mode, "tf.nn"]
            lines.append(f"| {policy} | {mode} | {1000 * median(own):.1f} | "
                         f"{1000 * median(tf_nn):.1f} | {paired(own, tf_nn):.3f} |")
    return "\n".join(lines)


OPS = {  # the int8 LRN and its elementwise ops on a positive map, as the layer sees it
    "LRN layer (all 7 ops)": LocalResponseNormalization(2, 2.0, 1e-4, 0.75),
    "LOG": keras.layers.Lambda(lambda x: keras.ops.log(x + 2.0)),
    "EXP": keras.layers.Lambda(lambda x: keras.ops.exp(-0.01 * x)),
    "MUL (x * x)": keras.layers.Lambda(lambda x: x * x),
}


def op_table(size, repeats, channels=64) -> str:
    """ms of each of OPS as a full-int8 file on a size x size x channels map, 1 thread and
    all threads, in alternating rounds."""
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    samples = [np.abs(rng.normal(0, 50, (1, size, size, channels))).astype("float32")
               for _ in range(8)]
    clocks = {}
    for name, layer in OPS.items():
        inputs = keras.Input((size, size, channels))
        converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, layer(inputs)))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x] for x in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        blob = converter.convert()
        for threads in sorted({1, os.cpu_count() or 1}):
            interpreter = Interpreter(model_content=blob, num_threads=threads)
            interpreter.allocate_tensors()
            index = interpreter.get_input_details()[0]["index"]
            interpreter.set_tensor(index, np.zeros((1, size, size, channels), np.int8))
            clocks[name, threads] = wall(interpreter.invoke)
    seconds = alternate(clocks, repeats)
    threads = sorted({t for _, t in seconds})
    lines = [f"int8 ops on a {size}x{size}x{channels} map (VGG11-LRN's first LRN), ms per call "
             f"(median of {repeats} alternating rounds):", "",
             "| op | " + " | ".join(f"{t} thread{'s' * (t > 1)} ms" for t in threads) + " |",
             "|---|" + "---:|" * len(threads)]
    for name in OPS:
        lines.append(f"| {name} | " + " | ".join(f"{1000 * median(seconds[name, t]):.2f}"
                                                 for t in threads) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--ops", action="store_true", help="only the int8 LRN's ops, alone")
    args = parser.parse_args(argv)
    if args.ops:
        print(op_table(args.size, args.repeats))
        return
    print(table(measure(args.size, args.repeats), args.size, args.repeats))


if __name__ == "__main__":
    main()
