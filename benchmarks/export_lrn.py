"""What LRN's float island costs a full-int8 TFLite model.

TFLite's LOCAL_RESPONSE_NORMALIZATION kernel is float32 only, so in a full-int8 model of an
LRN variant the converter puts a DEQUANTIZE before each LRN and a QUANTIZE after it (a float
island). VGG11 (A) and VGG11-LRN (A-LRN) have the same convolutions and differ by that one
LRN after conv1, so timing both, side by side in one run, float32 and int8, isolates it:

    LRN cost = LRN model / plain model, per mode.

Usage:
    python benchmarks/export_lrn.py               # 224x224, 20 timed runs per model
    python benchmarks/export_lrn.py --size 64 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import keras
import numpy as np

from keras_vgg import get_model
from keras_vgg.export import TFLiteRunner, median_ms, serving_model, tflite_ops, write_tflite


def classifier(variant, size, classes=10):
    keras.utils.set_random_seed(0)
    base = get_model(variant, include_top=False, input_shape=(size, size, 3), pooling="avg")
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(base(inputs)))


def measure(size, repeats):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("vgg11", "vgg11_lrn"):
            serving = serving_model(classifier(variant, size), "caffe")
            for quantize in ("none", "int8"):
                path = Path(tmp) / f"{variant}_{quantize}.tflite"
                write_tflite(serving, path, quantize, representative=images)
                ops = tflite_ops(path.read_bytes())
                runner = TFLiteRunner(path)
                rows[variant, quantize] = {
                    "ms": median_ms(runner, images[0], repeats),
                    "mb": path.stat().st_size / 1e6,
                    "islands": ops.get("DEQUANTIZE", 0) if quantize == "int8" else 0,
                }
            keras.backend.clear_session()
    return rows


def table(rows, size, repeats) -> str:
    lines = [f"TFLite latency per image (batch 1, median of {repeats}), {size}x{size}, "
             f"{os.cpu_count()} CPU threads:", "",
             "| mode | VGG11 ms | VGG11-LRN ms | LRN model / plain | float islands |",
             "|---|---:|---:|---:|---:|"]
    for quantize, label in (("none", "float32"), ("int8", "full int8")):
        plain, lrn = rows["vgg11", quantize], rows["vgg11_lrn", quantize]
        lines.append(f"| {label} | {plain['ms']:.1f} | {lrn['ms']:.1f} | "
                     f"{lrn['ms'] / plain['ms']:.3f} | {lrn['islands']} |")
    int8_speedup = {v: rows[v, "none"]["ms"] / rows[v, "int8"]["ms"] for v in ("vgg11", "vgg11_lrn")}
    lines += ["", f"int8 speed-up over float32: VGG11 {int8_speedup['vgg11']:.2f}x, "
              f"VGG11-LRN {int8_speedup['vgg11_lrn']:.2f}x."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    print(table(measure(args.size, args.repeats), args.size, args.repeats))


if __name__ == "__main__":
    main()
