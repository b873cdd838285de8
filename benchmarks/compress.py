"""Structured pruning end to end: the built-in run compressed, against itself.

Trains the README's main job (VGG11-BN on the built-in shapes at 32x32; or reads a
finished run with --run DIR), compresses it with ``keras_vgg.finetune.compress`` (prune to
--flops of the FLOPs, fine-tune --epochs per step, --steps rounds), then times the unpruned
and the pruned TFLite file of each mode side by side in this process: one image at a time,
the two files alternating, 1 thread and every thread. With --large-size N (default 224) it
also times the two models' int8 files rebuilt at NxN (the same weights: the conv base and
the pooled head take any size), where a phone's images are and fixed per-op costs weigh
less; latency only, the models were trained at the run's size.

Targets (issue 17): >= 3x fewer FLOPs; an int8 file >= 3x smaller than the unpruned int8;
held-out accuracy within 1 point of the unpruned model (the run's own, and the control: the
unpruned model fine-tuned as many epochs as the pruned one); int8 latency >= 2.5x lower.
By default the pruned model is distilled from the unpruned one (compress's default), and
the same pruning is also fine-tuned on the labels alone (--no-distill's) to pair the two.
Accuracy is compared on the same images (the run's test split, else its validation split):
each comparison is a paired difference with its 95% interval and the images that changed
answer, and the 1-point target is judged on the intervals (issue 27): met when both lie
within it, missed when either lies past it, else undecided (the split is too small to tell).

Usage:
    python benchmarks/compress.py                          # about 6 minutes on 2 CPU cores
    python benchmarks/compress.py --run runs/builtin --flops 0.3 --steps 1
    python benchmarks/compress.py --quick                  # a smoke run (no fine-tuning)
    python benchmarks/compress.py --write                  # also update docs/benchmarks.md
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

TITLE = "Compress: structured pruning of the built-in run, end to end"
MODES = ("none", "float16", "dynamic", "int8")


THREADS = sorted({1, os.cpu_count() or 1})  # each file is timed at 1 thread and at all


def threads_label(n: int) -> str:
    return f"{n} thread{'s' * (n > 1)}"


def interleaved_ms(paths, image, repeats, threads) -> list[float]:
    """Median ms per image of each file, the files run in turn so that load hits all."""
    from ai_edge_litert.interpreter import Interpreter

    runs = []
    for path in paths:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        x = image[None].astype(detail["dtype"])
        runs.append((interpreter, detail["index"], x))
    times = [[] for _ in paths]
    for repeat in range(repeats + 5):  # the first 5 warm up
        for i, (interpreter, index, x) in enumerate(runs):
            start = time.perf_counter()
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            if repeat >= 5:
                times[i].append(time.perf_counter() - start)
    return [1000 * statistics.median(t) for t in times]


def at_size(model, size: int):
    """``model`` rebuilt for size x size input with the same weights: its input layer takes
    that size, nested models' inputs any size."""
    import json

    config = json.loads(json.dumps(model.get_config()))

    def resize(node, outer):
        if isinstance(node, dict):
            if node.get("class_name") == "InputLayer":
                shape = node["config"]["batch_shape"]
                node["config"]["batch_shape"] = [shape[0], *[size if outer else None] * 2,
                                                 shape[-1]]
            for value in node.values():
                resize(value, False)
        elif isinstance(node, list):
            for value in node:
                resize(value, outer)

    for layer in config["layers"]:
        resize(layer, layer.get("class_name") == "InputLayer")
    rebuilt = model.__class__.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def large_int8_ms(models, size, repeats, root: Path) -> dict:
    """``{threads: [ms of each model's int8 file at size x size]}``, the files alternating
    (calibrated on random pixels: these files are for timing only)."""
    from keras_vgg.export import serving_model, write_tflite

    pixels = np.random.default_rng(1).integers(0, 256, (8, size, size, 3)).astype("float32")
    paths = []
    for i, model in enumerate(models):
        paths.append(root / f"large{i}_int8.tflite")
        write_tflite(serving_model(at_size(model, size), model.preprocessing), paths[-1],
                     "int8", representative=pixels)
    return {n: interleaved_ms(paths, pixels[0].astype(np.uint8), repeats, n) for n in THREADS}


def train_run(root: Path, overrides) -> Path:
    from keras_vgg.finetune import finetune, load_recipe
    from keras_vgg.stats import accuracy

    started = time.time()
    result = finetune(load_recipe("builtin", overrides), run_dir=root / "run", verbose=0)
    final = result.metrics["final"]
    record = final[final["reported"]]
    print(f"trained {result.run_dir} in {time.time() - started:.0f} s: {final['reported']} "
          f"{accuracy(record['correct'], record['count'])}", flush=True)
    return result.run_dir


def measure(args) -> dict:
    """Train (or read) the run, compress it, and time both models' files side by side."""
    import keras_vgg
    from keras_vgg.export import TFLITE_FILES
    from keras_vgg.finetune import compress
    from keras_vgg.finetune.compress import compared

    root = Path(tempfile.mkdtemp(prefix="compress_bench_"))
    run = Path(args.run) if args.run else train_run(root, args.set)
    started = time.time()
    report = compress(run, root / "compressed", flops=args.flops, steps=args.steps,
                      epochs=args.epochs, quantize=args.quantize, verbose=0,
                      distill=not args.no_distill)
    report["compress_seconds"] = round(time.time() - started, 1)
    # the control: the unpruned model fine-tuned as long (flops=1 keeps every filter), on
    # the labels (a teacher of itself would teach it nothing new)
    control = compress(run, root / "control", flops=1.0, steps=args.steps, epochs=args.epochs,
                       quantize=["none"], verbose=0, distill=False)
    report["control_accuracy"] = control["accuracy"]["after"]
    # the control and the pruned model on the same images: control minus pruned
    report["control_minus_pruned"] = compared(root / "control",
                                              root / "compressed").to_json()
    if report["distillation"]["on"]:  # the same pruning fine-tuned on the labels alone
        compress(run, root / "labels_only", flops=args.flops, steps=args.steps,
                 epochs=args.epochs, quantize=["none"], verbose=0, distill=False)
        report["labels_only_minus_distilled"] = compared(root / "labels_only",
                                                         root / "compressed").to_json()
    size = keras_vgg.load_model(run).input_shape[1:3]
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    for row in report["exports"]:
        name = TFLITE_FILES[row["quantize"]]
        paths = [root / "compressed" / folder / name for folder in ("reference_export", "export")]
        for threads in THREADS:
            row[f"ms_{threads}"] = interleaved_ms(paths, image, args.repeats, threads)
    report["image_size"] = list(size)
    if args.large_size:
        models = [keras_vgg.load_model(run), keras_vgg.load_model(root / "compressed")]
        report["large"] = {"size": args.large_size, "ms": large_int8_ms(
            models, args.large_size, args.repeats, root)}
    return report


def points(figures) -> str:
    """A paired record (first minus second) as the pruned model's change in points, with
    its interval: "-0.3 pts (95% CI -0.9 to +0.4)"."""
    low, high = figures["ci95"]
    return (f"{-100 * figures['difference']:+.1f} pts (95% CI {-100 * high:+.1f} to "
            f"{-100 * low:+.1f})")


def table(report, repeats) -> str:
    """The figures before and after, and each target."""
    from keras_vgg.stats import PairedDifference

    ratio = lambda before, after: before / after  # noqa: E731
    own, control = report["before_minus_after"], report["control_minus_pruned"]
    split = report["held_out"]
    lines = ["| figure | unpruned | pruned | unpruned / pruned |", "|---|---:|---:|---:|",
             f"| parameters | {report['params']['before']:,} | {report['params']['after']:,} | "
             f"{ratio(report['params']['before'], report['params']['after']):.2f}x |",
             f"| MFLOPs per image | {report['flops']['before'] / 1e6:.1f} | "
             f"{report['flops']['after'] / 1e6:.1f} | "
             f"{ratio(report['flops']['before'], report['flops']['after']):.2f}x |",
             f"| {split} accuracy | {own['first']['accuracy']:.1%} | "
             f"{own['second']['accuracy']:.1%} | {points(own)} |",
             f"| {split} accuracy, both fine-tuned as long | {control['first']['accuracy']:.1%} "
             f"| {control['second']['accuracy']:.1%} | {points(control)} |"]
    labels = report.get("labels_only_minus_distilled")
    if labels:
        lines.append(f"| {split} accuracy, pruned: labels only / distilled | "
                     f"{labels['first']['accuracy']:.1%} | {labels['second']['accuracy']:.1%} | "
                     f"{points(labels)} |")
    for row in report["exports"]:
        lines.append(f"| {row['file']} MB | {row['size_before'] / 1e6:.2f} | "
                     f"{row['size_after'] / 1e6:.2f} | "
                     f"{ratio(row['size_before'], row['size_after']):.2f}x |")
        for n in THREADS:
            before, after = row[f"ms_{n}"]
            lines.append(f"| {row['file']} ms, {threads_label(n)} | "
                         f"{before:.3f} | {after:.3f} | {ratio(before, after):.2f}x |")
        lines.append(f"| {row['file']} top-1 agreement with its Keras model | "
                     f"{row['agreement_before']:.1%} | {row['agreement_after']:.1%} | |")
    large = report.get("large")
    for n, (before, after) in (large["ms"].items() if large else ()):
        lines.append(f"| int8 at {large['size']}x{large['size']} (same weights) ms, "
                     f"{threads_label(n)} | {before:.3f} | {after:.3f} | "
                     f"{ratio(before, after):.2f}x |")
    size = report["image_size"]
    lines += ["", f"Accuracy: both models on the same {report['held_out_images']:,} {split} "
              f"images, paired. Unpruned minus pruned: {PairedDifference.from_json(own)}. "
              f"Control (the unpruned model fine-tuned as long) minus pruned: "
              f"{PairedDifference.from_json(control)}." + (
                  " The pruned model fine-tuned on the labels alone (--no-distill) minus the "
                  f"distilled one: {PairedDifference.from_json(labels)}." if labels else ""),
              "", f"Pruned conv widths: {report['widths']['after']} (from "
              f"{report['widths']['before']}); {report['steps']} step(s) of {report['epochs']} "
              f"fine-tune epochs at lr {report['lr']}, criterion {report['criterion']}. "
              f"Latency: median of {repeats} single-image runs at {size[0]}x{size[1]}, the two "
              f"files alternating. Compress took {report['compress_seconds']:.0f} s."]
    return "\n".join(lines)


def accuracy_target(report) -> common.Target:
    """Within 1 point of the unpruned model (the run's and the control), judged on the
    paired intervals: met when both are, missed when either is past it, else undecided."""
    from keras_vgg.finetune.compress import DROP_MARGIN
    from keras_vgg.stats import PairedDifference

    pairs = {"the run": PairedDifference.from_json(report["before_minus_after"]),
             "the control": PairedDifference.from_json(report["control_minus_pruned"])}
    judged = {name: pair.judge(DROP_MARGIN) for name, pair in pairs.items()}
    result = "missed" if "missed" in judged.values() else (
        "met" if set(judged.values()) == {"met"} else "undecided")
    measured = ", ".join(f"{points(report[key])} vs {name}" for name, key in (
        ("the run", "before_minus_after"), ("the control", "control_minus_pruned")))
    reading = "" if result == "met" else f"{result}: " + "; ".join(
        f"vs {name}, {pair.verdict(DROP_MARGIN)}" for name, pair in pairs.items())
    return common.Target(f"{report['held_out']} accuracy",
                         f"within {100 * DROP_MARGIN:.0f} point (95% interval of the paired "
                         "drop)", measured, result == "met", reading)


def latency_target(name, ms_by_threads, at_least=2.5) -> common.Target:
    """>= ``at_least`` times lower at every thread count; ``ms_by_threads``: {threads:
    (before, after)}."""
    faster = {n: before / after for n, (before, after) in ms_by_threads.items()}
    return common.Target(name, f">= {at_least:g}x lower at every thread count", ", ".join(
        f"{v:.2f}x ({threads_label(n)})" for n, v in faster.items()),
        min(faster.values()) >= at_least)


def targets(report) -> list[common.Target]:
    int8 = next((r for r in report["exports"] if r["quantize"] == "int8"), None)
    flops = report["flops"]["before"] / report["flops"]["after"]
    found = [common.Target("pruned FLOPs", ">= 3x fewer", f"{flops:.2f}x", flops >= 3),
             accuracy_target(report)]
    if int8 is not None:
        smaller = int8["size_before"] / int8["size_after"]
        found += [common.Target("int8 file", ">= 3x smaller", f"{smaller:.2f}x", smaller >= 3),
                  latency_target("int8 latency", {n: int8[f"ms_{n}"] for n in THREADS})]
    if report.get("large"):
        size = report["large"]["size"]
        found.append(latency_target(f"int8 latency at {size}x{size}", report["large"]["ms"]))
    return found


def section(args, command, report) -> common.Section:
    """The docs section from :func:`measure`'s report: the table, then each target."""
    found = targets(report)
    body = table(report, args.repeats) + "\n\n" + "\n".join(
        f"- {t.name}: {t.goal}; measured {t.measured} "
        f"({'met' if t.met else 'not met' + (': ' + t.reading if t.reading else '')})"
        for t in found)
    return common.Section(TITLE, command, body, targets=found, extra=report)


def add_run_arguments(parser, repeats: int):
    """--repeats, --large-size, --set, --quick and --write: what compress_targets.py takes
    too."""
    parser.add_argument("--repeats", type=common.positive_int, default=repeats)
    parser.add_argument("--large-size", type=int, default=224,
                        help="also time both int8 files rebuilt at this size (0: not)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recipe overrides of the trained run (builtin recipe)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, a smoke run")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")


def arguments(argv=None):
    """``(args, command)``: the parsed arguments (``--quick`` applied) and the command line
    as given, without ``--write``."""
    parser = common.parser(__doc__)
    parser.add_argument("--run", help="a finished run folder (default: train the main job)")
    parser.add_argument("--flops", type=float, default=0.25, help="the fraction kept")
    parser.add_argument("--steps", type=common.positive_int, default=1)
    parser.add_argument("--epochs", type=int, default=5, help="fine-tune epochs per step")
    parser.add_argument("--quantize", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--no-distill", action="store_true", help="fine-tune the pruned model "
                        "on the labels alone (default: distilled, and compared with that)")
    add_run_arguments(parser, repeats=200)
    args = parser.parse_args(argv)
    if args.quick:
        args.set += ["data.builtin_images_per_class=8", "phases.0.epochs=1", "tensorboard=false"]
        # no fine-tuning: the control is then the run's own model (tests/test_compress.py
        # fine-tunes compresses; this run checks the script end to end)
        args.epochs, args.repeats, args.quantize = 0, 3, ["none", "int8"]
        args.large_size = args.large_size and 64
    if args.large_size and args.large_size < 32:
        parser.error(f"--large-size: expected 0 (off) or a size >= 32, got {args.large_size}")
    given = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/compress.py " + " ".join(a for a in given if a != "--write")
    return args, command.strip()


def main(argv=None) -> common.Section:
    args, command = arguments(argv)
    report = measure(args)
    result = common.report(section(args, command, report))
    if args.write:
        common.write_section(result)
    return result


if __name__ == "__main__":
    main()
