"""The latency-aware plan (``keras-vgg compress --latency``, issue 31 item 2) against the uniform
FLOPs plan, on the README's main job:

1. Each conv of VGG11-BN at 224x224 timed alone as an int8 TFLite file at its full width
   (as the latency table times it, every core), beside its GFLOPs: the convs whose time is
   out of proportion to their FLOPs are the memory-bound ones.
2. The main job trained (or ``--run``) and compressed twice, both distilled
   ``--epochs`` epochs: the uniform plan at ``--flops`` (1/4), and ``--latency F --plan
   sensitivity --latency-table`` with F the share of the convs' time the uniform plan's
   widths keep by one latency table of the run, measured first (the same predicted time,
   spent where the validation loss rises least per millisecond). Paired on the test
   images; the three int8 files (unpruned, uniform, latency) timed one image at a time,
   alternating, at 1 thread and at every core.

Usage:
    python benchmarks/latency_plan.py                 # about 8 min on 2 cores
    python benchmarks/latency_plan.py --quick         # a smoke run
    python benchmarks/latency_plan.py --write         # also update docs/benchmarks.md
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import common
import numpy as np
from compress import THREADS, interleaved_ms, threads_label, train_run

TITLE = "Latency-aware plan: compress --latency against the uniform FLOPs plan"


def full_width_convs(size: int) -> list[dict]:
    """Each VGG11-BN conv at ``size`` x ``size``, full width: GFLOPs and int8 ms alone."""
    import keras_vgg
    from keras_vgg.finetune.latency import measure_latency_table

    model = keras_vgg.VGG11(include_top=False, input_shape=(size, size, 3), batch_norm=True,
                            weights=None)
    table = measure_latency_table(model, "int8", shares=(1.0,))
    rows = []
    for name, ms in zip(table.names, table.ms):
        conv = model.get_layer(name)
        height, width, channels = conv.input.shape[1:]
        flops = 2 * height * width * channels * conv.filters * int(np.prod(conv.kernel_size))
        rows.append({"conv": name, "gflops": flops / 1e9, "ms": ms[0][0]})
    return rows


def measure(args) -> dict:
    import keras_vgg
    from keras_vgg.finetune import compress
    from keras_vgg.finetune.compress import compared
    from keras_vgg.finetune.latency import measure_latency_table
    from keras_vgg.pruning import conv_widths

    root = Path(tempfile.mkdtemp(prefix="latency_plan_"))
    found = {"convs": full_width_convs(args.size)}
    run = Path(args.run) if args.run else train_run(root, args.set)
    model = keras_vgg.load_model(run)
    table = measure_latency_table(model, "int8", shares=args.shares)
    (root / "latency_table.json").write_text(json.dumps(table.to_json()))
    common_args = dict(epochs=args.epochs, quantize=["int8"], verbose=0)
    uniform = compress(run, root / "uniform", flops=args.flops, **common_args)
    full = conv_widths(model)
    fraction = round(table.time_of(uniform["widths"]["after"]) / table.time_of(full), 4)
    timed = compress(run, root / "latency", latency=fraction, plan="sensitivity",
                     latency_table=root / "latency_table.json", **common_args)
    paths = [root / "uniform" / "reference_export" / "model_int8.tflite",
             root / "uniform" / "export" / "model_int8.tflite",
             root / "latency" / "export" / "model_int8.tflite"]
    image = np.zeros((*model.input_shape[1:3], 3), "uint8")
    found.update(
        fraction=fraction, flops=args.flops, epochs=args.epochs,
        plans={name: {"widths": report["widths"]["after"], "flops": report["flops"]["after"],
                      "predicted_ms": table.time_of(report["widths"]["after"]),
                      "correct": report["before_minus_after"]["second"]["correct"]}
               for name, report in (("uniform", uniform), ("latency", timed))},
        unpruned={"widths": list(full), "flops": uniform["flops"]["before"],
                  "predicted_ms": table.time_of(full),
                  "correct": uniform["before_minus_after"]["first"]["correct"]},
        count=uniform["held_out_images"],
        uniform_minus_latency=compared(root / "uniform", root / "latency",
                                       ("after", "after")).to_json(),
        ms={n: interleaved_ms(paths, image, args.repeats, n) for n in THREADS})
    return found


def section(args, command, found) -> common.Section:
    convs = ["| conv | GFLOPs | int8 ms alone | ms per GFLOP |", "|---|---:|---:|---:|"]
    for row in found["convs"]:
        convs.append(f"| {row['conv']} | {row['gflops']:.3f} | {row['ms']:.2f} | "
                     f"{row['ms'] / row['gflops']:.1f} |")
    plans = [f"| model | conv widths | MFLOPs | convs' predicted ms | "
             + " | ".join(f"int8 file ms, {threads_label(n)}" for n in THREADS)
             + f" | test images right (of {found['count']:,}) |",
             "|---|---|---:|---:|" + "---:|" * len(THREADS) + "---:|"]
    models = {"unpruned": found["unpruned"], **found["plans"]}
    for i, (name, plan) in enumerate(models.items()):
        label = {"unpruned": "unpruned", "uniform": f"uniform, --flops {found['flops']}",
                 "latency": f"--latency {found['fraction']} --plan sensitivity"}[name]
        plans.append(f"| {label} | {' '.join(map(str, plan['widths']))} | "
                     f"{plan['flops'] / 1e6:.1f} | {plan['predicted_ms']:.3f} | "
                     + " | ".join(f"{found['ms'][n][i]:.3f}" for n in THREADS)
                     + f" | {plan['correct']:,} |")
    pair = found["uniform_minus_latency"]
    low, high = pair["ci95"]
    body = (f"Each conv alone at {args.size}x{args.size}, full width, int8, every core:\n\n"
            + "\n".join(convs) + "\n\nThe main job compressed twice, both distilled "
            f"{found['epochs']} epoch{'s' * (found['epochs'] != 1)}; one latency table of "
            "the run, measured first, predicts every row, and the latency target is the share "
            "of the convs' time it gives the uniform plan's widths (`--latency-table`: the "
            "latency compress plans by that table):\n\n" + "\n".join(plans)
            + f"\n\nUniform minus latency plan, paired on the {pair['count']:,} test images: "
            f"{100 * pair['difference']:+.1f} points (95% CI {100 * low:+.1f} to "
            f"{100 * high:+.1f}); {pair['changed']} changed answer. File latency: median of "
            f"{args.repeats} single-image runs, the three files alternating.")
    return common.Section(TITLE, command, body, extra=found)


def arguments(argv=None):
    parser = common.parser(__doc__)
    parser.add_argument("--run", help="a finished run folder (default: train the main job)")
    parser.add_argument("--flops", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, default=224, help="the per-conv table's size")
    parser.add_argument("--repeats", type=common.positive_int, default=200)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--quick", action="store_true", help="tiny settings, a smoke run")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    args.shares = None
    if args.quick:
        args.set += ["data.builtin_images_per_class=8", "phases.0.epochs=1", "tensorboard=false"]
        args.epochs, args.repeats, args.size, args.shares = 1, 3, 64, (1.0, 0.5, 0.25)
    return args, common.command_line("latency_plan.py", argv)


def main(argv=None) -> common.Section:
    return common.run(arguments, measure, section, argv)


if __name__ == "__main__":
    main()
