"""A latency table for ``compress --latency``: each conv's time in the TFLite file compress
ships, measured alone at a few widths (NetAdapt, Yang et al. 2018: per-layer latency lookup
tables), so the latency of any plan is predicted without exporting it.

For each conv of the model at its input size, the table holds the median time of a TFLite
file holding only that conv (its kernel, strides and padding, with its ReLU, and the
max-pool when one follows it) at each pair of shares from ``GRID`` of its input and output
channels (the first conv reads the image's 3 channels, so only its output share varies),
in the mode compress ships (``quantize``, int8 when it exports int8) by TFLite's converter
with the export's settings, and run by the LiteRT interpreter on every core, batch 1. A
plan's predicted latency is the sum over the convs, each read on the bilinear surface
between the measured shares; what lies outside the convs (the pixels' scaling, the head)
hardly changes with the widths and is left out, so a ``latency`` target is a fraction of
the convs' time.

Measured, the table reads what FLOPs hide: the first convs of a VGG at 224x224 do few FLOPs
for their time (memory-bound: on 2 cores VGG11-BN's first conv takes 1.56 ms of int8 for
0.17 GFLOPs, block 2's 3.10 ms for 1.85: benchmarks/latency_plan.py), so a latency budget
spends differently than a FLOPs one.

Timings move between measurements (two tables of one model minutes apart differed by up to
a fifth, docs/compress.md): the table is written beside the compress (``latency.json``), a
resumed compress keeps its plan, and ``read_latency_table`` reads one back to plan by again.

Example:
    >>> made = LatencyTable(("a", "b"), (1.0, 0.5), (((2.0, 1.0),), ((4.0, 3.0), (2.0, 1.0))),
    ...                     "int8")  # measured ms, made up
    >>> made.conv_ms(1, 0.75, 0.5), made.predict((0.5, 0.5))  # 2.0: half way; 1.0 + 1.0
    (2.0, 2.0)
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_vgg._helpers import expected
from keras_vgg.finetune.sensitivity import Sensitivity, spend
from keras_vgg.pruning import conv_names, conv_widths, vgg_base

GRID = (1.0, 0.5, 0.25, 0.125)  # the shares of each conv's input and output channels timed
# Each entry is timed, after a warm-up, at least REPEATS times and SECONDS long; the median
# is kept.
REPEATS, SECONDS = 20, 0.05


@dataclass(frozen=True)
class LatencyTable:
    """Each conv's measured milliseconds: ``ms[i][a][b]`` for conv ``names[i]`` with
    ``shares[a]`` of its input channels (a single row for the first conv, which reads the
    image) and ``shares[b]`` of its filters; ``quantize``: the TFLite mode timed."""

    names: tuple
    shares: tuple
    ms: tuple
    quantize: str
    widths: tuple = ()  # the model's full conv widths, and its input size: what it fits
    size: tuple = ()

    def conv_ms(self, i: int, share_in: float, share_out: float) -> float:
        """Conv ``i``'s time at these shares, read between the measured ones (bilinear;
        outside them, the nearest measured share)."""
        ascending = np.array(self.shares)[::-1]
        rows = np.array(self.ms[i])[::-1, ::-1]  # both axes ascending for np.interp
        by_out = np.array([np.interp(share_out, ascending, row) for row in rows])
        if len(by_out) == 1:  # the first conv: its input is the image
            return float(by_out[0])
        return float(np.interp(share_in, ascending, by_out))

    def predict(self, shares) -> float:
        """The convs' time (ms) with conv ``i`` keeping ``shares[i]`` of its filters."""
        inputs = (1.0, *shares[:-1])
        return sum(self.conv_ms(i, a, b) for i, (a, b) in enumerate(zip(inputs, shares)))

    def time_of(self, widths) -> float:
        """The convs' time (ms) at these conv widths (of the full ``widths`` measured)."""
        return self.predict([w / n for w, n in zip(widths, self.widths)])

    def to_json(self) -> dict:
        return {"quantize": self.quantize, "shares": list(self.shares),
                "widths": list(self.widths), "size": list(self.size),
                "ms": {name: [list(row) for row in rows]
                       for name, rows in zip(self.names, self.ms)}}

    @classmethod
    def from_json(cls, value: dict) -> LatencyTable:
        """The table ``to_json`` wrote (``latency.json`` of a compress)."""
        return cls(tuple(value["ms"]), tuple(value["shares"]), tuple(
            tuple(tuple(row) for row in rows) for rows in value["ms"].values()),
            value["quantize"], tuple(value.get("widths", ())), tuple(value.get("size", ())))


def read_latency_table(path, model) -> LatencyTable:
    """The table in ``path`` (a compress's ``latency.json``), checked to be measured on a
    model of ``model``'s convs, widths and input size: a plan from it repeats."""
    what = ("Expected `latency_table` to be a latency.json written by compress --latency "
            "(keras_vgg.finetune.latency)")
    try:
        table = LatencyTable.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        reason = "it does not exist" if not Path(path).is_file() else f"it is not one ({error})"
        raise ValueError(f"{what}. Received: latency_table={str(path)!r}: {reason}") from None
    mine = (tuple(conv_names(model)), conv_widths(model), _input_size(model))
    if (table.names, table.widths, table.size) != mine:
        raise ValueError(f"{what}, measured on this model (convs of widths {list(mine[1])} "
                         f"at {mine[2][0]}x{mine[2][1]}). Received: latency_table="
                         f"{str(path)!r}, measured on widths {list(table.widths)} at "
                         f"{'x'.join(map(str, table.size)) or 'an unknown size'}")
    return table


def _input_size(model) -> tuple:
    """The height and width the model's first conv reads."""
    return tuple(int(d) for d in _convs_with_pools(model)[0][0].input.shape[1:3])


def plan_for_latency(model, table: LatencyTable, latency: float,
                     sensitivity: Sensitivity | None = None) -> tuple[int, ...]:
    """Conv widths whose predicted time (``table``) is at most ``latency`` of the unpruned
    convs': the same share of every conv, the largest that fits (``sensitivity`` None), or
    filters taken where the loss rises least per millisecond saved (``spend``). No conv
    goes below the smallest share the table measured."""
    full, floor = conv_widths(model), min(table.shares)

    def time(shares):  # the table read at the shares the rounded widths keep
        return table.predict([max(1, round(s * n)) / n for s, n in zip(shares, full)])

    budget = latency * time([1.0] * len(full))
    if time([floor] * len(full)) > budget + 1e-12:
        least = time([floor] * len(full)) / time([1.0] * len(full))
        raise expected(f"`latency` of at least {least:.3f}: the convs at {floor:g} of their "
                       "filters, the least the latency table measures, take that share of "
                       "the unpruned convs' time", latency=latency)
    if sensitivity is not None:
        shares = spend(sensitivity, list(table.names), time, budget, floor)
    else:
        low, high = floor, 1.0  # bisection on the share: the time grows with it
        if time([high] * len(full)) > budget:
            for _ in range(30):
                middle = (low + high) / 2
                low, high = (middle, high) if time([middle] * len(full)) <= budget else (
                    low, middle)
        else:
            low = high
        shares = [low] * len(full)
    return tuple(max(1, round(share * n)) for share, n in zip(shares, full))


def measure_latency_table(model, quantize="int8", shares=None) -> LatencyTable:
    """Time each conv of ``model`` alone, as a TFLite file in ``quantize`` mode, at each
    pair of ``shares`` (default ``GRID``) of its input and output channels (see the
    module's docstring)."""
    names, rows = conv_names(model), []
    shares = tuple(sorted(GRID if shares is None else shares, reverse=True))
    for i, (conv, pool) in enumerate(_convs_with_pools(model)):
        channels = int(conv.input.shape[-1])
        row = []
        for share_in in (shares if i else (1.0,)):
            row.append(tuple(_conv_ms(conv, pool, max(1, round(share_in * channels)),
                                      max(1, round(share_out * conv.filters)), quantize)
                             for share_out in shares))
        rows.append(tuple(row))
    return LatencyTable(tuple(names), tuple(shares), tuple(rows), quantize, conv_widths(model),
                        _input_size(model))


def _convs_with_pools(model) -> list:
    """``(conv, the max-pool right after it or None)`` for each conv of ``model``'s base."""
    found, layers = [], list(vgg_base(model).layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        pool = None
        for after in layers[i + 1:]:
            if isinstance(after, keras.layers.Conv2D):
                break
            if isinstance(after, keras.layers.MaxPooling2D):
                pool = after
                break
        found.append((layer, pool))
    return found


def _conv_ms(conv, pool, channels: int, filters: int, quantize: str) -> float:
    """The median time of one TFLite file: ``conv`` with ``channels`` in and ``filters``
    out, its ReLU and ``pool``, on a zero image of the conv's input size."""
    inputs = keras.Input((*conv.input.shape[1:3], channels))
    config = {**conv.get_config(), "filters": filters, "activation": "relu", "name": None,
              "dtype": "float32"}  # as exported: a model trained in bfloat16 exports float
    outputs = keras.layers.Conv2D.from_config(config)(inputs)
    if pool is not None:
        outputs = keras.layers.MaxPooling2D.from_config({**pool.get_config(), "name": None,
                                                         "dtype": "float32"})(outputs)
    single = keras.Model(inputs, outputs)
    calibration = np.random.default_rng(0).uniform(0, 255, (2, *single.input_shape[1:]))
    interpreter = _interpreter(_tflite_bytes(single, quantize, calibration.astype("float32")))
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()  # the warm-up
    times = []
    while len(times) < REPEATS or sum(times) < SECONDS:
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 5)


def _tflite_bytes(single, quantize: str, calibration) -> bytes:
    """``single`` as a TFLite file, converted with the export's settings for ``quantize``
    (``converter_settings``: the same ops as an exported file) from its traced function:
    0.07 s a conv against 0.45 s through a SavedModel, as the export goes (measured)."""
    import tensorflow as tf

    from keras_vgg.export.tflite import converter_settings

    traced = tf.function(lambda x: single(x), input_signature=[
        tf.TensorSpec((1, *single.input_shape[1:]), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [traced.get_concrete_function()])
    for key, value in converter_settings(quantize, calibration).items():
        if key == "target_spec":
            for name, setting in value.items():
                setattr(converter.target_spec, name, setting)
        else:
            setattr(converter, key, value)
    return converter.convert()


def _interpreter(model_bytes: bytes):
    """The LiteRT interpreter the export report times with (every core)."""
    from keras_vgg._extras import require

    Interpreter = require("ai_edge_litert.interpreter", "export",
                          package="ai-edge-litert").Interpreter
    interpreter = Interpreter(model_content=model_bytes, num_threads=os.cpu_count() or 1)
    interpreter.allocate_tensors()
    return interpreter
