"""Issue 31's compression targets, over seeds: the README's main job trained once per seed,
then, on its 1,050 test images (each comparison paired, judged on its 95% interval):

- pruned to 1/4 and to 1/8 of its FLOPs and distilled (compress's default), against the
  control, the unpruned model fine-tuned as long on the labels: within 0.5 and 1.5 points;
- a smaller variant distilled from the run (``keras-vgg distill --student``) against the
  same student trained on the labels alone: distilled better, the whole interval past 0.
  The issue names VGG-F; VGG-F needs 39x39 images and the main job's are 32x32, so the
  default student is VGG-S (``--student`` takes another);

and once, on the first seed's models, both int8 files rebuilt at 224x224 (the same weights),
timed one image at a time, alternating: the 1/4 model >= 3x faster than the unpruned one at
every thread count. A target is met when every seed meets it, missed when one misses it,
else undecided (the test split cannot tell).

Usage:
    python benchmarks/compress_targets.py                 # 3 seeds: about 40 min on 2 cores
    python benchmarks/compress_targets.py --seeds 0 --quick      # a smoke run
    python benchmarks/compress_targets.py --write         # also update docs/benchmarks.md
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import common
from compress import (THREADS, add_run_arguments, large_int8_ms, latency_target, points,
                      train_run)

TITLE = "Compress targets over seeds: distilled students against their controls"
# fraction of the FLOPs kept: the largest drop against the control (points) the target allows
WITHIN = {0.25: 0.5, 0.125: 1.5}


def measure_seed(seed: int, args, root: Path) -> dict:
    """One seed: the run, its two distilled compresses, the control and the distilled
    student; ``{"seed", "run", "<flops>": control minus pruned, "student": labels only
    minus distilled, ...}`` (paired records as JSON)."""
    from keras_vgg.finetune import compress, distill
    from keras_vgg.finetune.compress import compared

    started = time.time()
    run = train_run(root, [f"seed={seed}", *args.set])
    final = _final(run)
    found = {"seed": seed, "run": str(run), "test_correct": final["correct"],
             "test_count": final["count"]}
    control = compress(run, root / "control", flops=1.0, epochs=args.epochs,
                       quantize=["none"], verbose=0, distill=False)
    found["control_correct"] = control["before_minus_after"]["second"]["correct"]
    for flops in WITHIN:
        out = root / f"flops_{flops}"
        report = compress(run, out, flops=flops, epochs=args.epochs, quantize=["none"],
                          verbose=0)
        found[str(flops)] = compared(root / "control", out).to_json()
        found[f"{flops}_flops_kept"] = report["flops"]["after"] / report["flops"]["before"]
    report = distill(run, args.student, root / "student", epochs=args.student_epochs,
                     quantize=["none"], verbose=0)
    found["student"] = report["labels_only_minus_distilled"]
    found["seconds"] = round(time.time() - started)
    print(f"seed {seed}: {time.time() - started:.0f} s", flush=True)
    return found


def _final(run: Path) -> dict:
    import json

    final = json.loads((run / "metrics.json").read_text())["final"]
    return final[final["reported"]]


def measure(args) -> dict:
    """Every seed, then the first seed's int8 files at ``--large-size``."""
    import keras_vgg

    root = Path(tempfile.mkdtemp(prefix="compress_targets_"))
    seeds = [measure_seed(seed, args, root / f"seed{seed}") for seed in args.seeds]
    report = {"seeds": seeds, "student": args.student, "epochs": args.epochs}
    if args.large_size:
        first = root / f"seed{args.seeds[0]}"
        models = [keras_vgg.load_model(first / "run"), keras_vgg.load_model(first / "flops_0.25")]
        report["large"] = {"size": args.large_size, "ms": large_int8_ms(
            models, args.large_size, args.repeats, root)}
    return report


def across(results: list[str]) -> str:
    """Seeds' results as one: met when all are, missed when one is, else undecided."""
    return "missed" if "missed" in results else (
        "met" if set(results) == {"met"} else "undecided")


def targets(report) -> list[common.Target]:
    from keras_vgg.stats import PairedDifference

    def each_seed(key: str) -> str:
        return "; ".join(f"seed {seed['seed']}: {points(seed[key])}" for seed in report["seeds"])

    found = []
    for flops, margin in WITHIN.items():
        pairs = [PairedDifference.from_json(seed[str(flops)]) for seed in report["seeds"]]
        judged = across([pair.judge(margin / 100) for pair in pairs])
        found.append(common.Target(
            f"1/{round(1 / flops)} of the FLOPs, distilled, against the control",
            f"within {margin} point (95% interval of control minus pruned, every seed)",
            f"pruned minus control, {each_seed(str(flops))}", judged == "met",
            "" if judged == "met" else judged))
    helped = [PairedDifference.from_json(seed["student"]) for seed in report["seeds"]]
    judged = across(["met" if pair.high < 0 else "missed" if pair.low >= 0 else "undecided"
                     for pair in helped])
    student = report["student"]
    found.append(common.Target(
        f"{student} distilled against {student} on the labels alone",
        "distilled better (the whole 95% interval, every seed)",
        f"distilled minus labels only, {each_seed('student')}", judged == "met",
        "" if judged == "met" else judged))
    if report.get("large"):
        size = report["large"]["size"]
        found.append(latency_target(f"int8 at {size}x{size}, 1/4 of the FLOPs",
                                    report["large"]["ms"], at_least=3.0))
    return found


def table(report) -> str:
    """A row per seed: the run, the control and each model's test figure."""
    lines = ["| seed | run | control | 1/4 distilled: control minus pruned | "
             "1/8 distilled: control minus pruned | student: labels only minus distilled |",
             "|---:|---:|---:|---|---|---|"]
    for seed in report["seeds"]:
        lines.append(f"| {seed['seed']} | {seed['test_correct']:,}/{seed['test_count']:,} | "
                     f"{seed['control_correct']:,} | {_pair(seed['0.25'])} | "
                     f"{_pair(seed['0.125'])} | {_pair(seed['student'])} |")
    large = report.get("large")
    if large:
        lines += ["", f"| int8 at {large['size']}x{large['size']} | unpruned ms | "
                      "1/4 ms | unpruned / pruned |", "|---|---:|---:|---:|"]
        for n, (before, after) in large["ms"].items():
            lines.append(f"| {n} thread{'s' * (n > 1)} | {before:.2f} | {after:.2f} | "
                         f"{before / after:.2f}x |")
    return "\n".join(lines)


def _pair(figures) -> str:
    """A paired record as its difference in points, its interval and changed answers."""
    low, high = figures["ci95"]
    return (f"{100 * figures['difference']:+.1f} ({100 * low:+.1f} to {100 * high:+.1f}), "
            f"{figures['changed']} changed")


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' * (n != 1)}"


def section(args, command, report) -> common.Section:
    found = targets(report)
    student_epochs = (_epochs(args.student_epochs) if args.student_epochs
                      else "as many epochs as the run")
    body = (table(report) + "\n\nEach pair on the same test images, first model minus second "
            "(points, 95% interval). The control: the unpruned model fine-tuned "
            f"{_epochs(args.epochs)} on the labels; each pruned model: {_epochs(args.epochs)}, "
            f"distilled. The student: {args.student} from random weights, {student_epochs}. "
            f"Latency: median of {args.repeats} single-image runs, the two files "
            "alternating.\n\n" + "\n".join(
                f"- {t.name}: {t.goal}; measured {t.measured} "
                f"({'met' if t.met else 'not met' + (': ' + t.reading if t.reading else '')})"
                for t in found))
    return common.Section(TITLE, command, body, targets=found, extra=report)


def arguments(argv=None):
    parser = common.parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5,
                        help="fine-tune epochs of each compress and of the control")
    parser.add_argument("--student", default="vgg_s", help="the variant keras-vgg distill trains")
    parser.add_argument("--student-epochs", type=int, default=None,
                        help="its epochs (default: the run's phases' epochs added up)")
    add_run_arguments(parser, repeats=100)
    args = parser.parse_args(argv)
    if args.quick:
        args.set += ["data.builtin_images_per_class=8", "phases.0.epochs=1", "tensorboard=false"]
        args.epochs, args.student_epochs, args.repeats = 1, 1, 3
        args.large_size = args.large_size and 64
    return args, common.command_line("compress_targets.py", argv)


def main(argv=None) -> common.Section:
    return common.run(arguments, measure, section, argv)


if __name__ == "__main__":
    main()
