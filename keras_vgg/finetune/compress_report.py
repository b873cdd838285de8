"""The compress report: the figures of a pruned model against its original (params, FLOPs,
accuracy on the held-out split, and per TFLite mode size, latency and agreement), as a
table; the accuracies as a paired difference on the same images, judged against the 1-point
target; and the per-conv widths as a picture. The distill report too
(:func:`format_distill_report`: teacher, distilled student, labels-only student).

Example:
    >>> from keras_vgg.finetune.compress_report import format_compress_report
    >>> from keras_vgg.stats import paired_difference
    >>> labels = [0] * 190 + [1] * 10  # 200 test images; the pruned model gets 1 more wrong
    >>> paired = paired_difference(labels, [0] * 194 + [1] * 6, [0] * 195 + [1] * 5)
    >>> report = {"params": {"before": 9_000_000, "after": 2_000_000},
    ...           "flops": {"before": 600_000_000, "after": 180_000_000},
    ...           "held_out": "test", "before_minus_after": paired.to_json(),
    ...           "accuracy_target": {"max_drop": 0.01, "verdict": paired.verdict(0.01)},
    ...           "exports": [{"file": "model_int8.tflite", "size_before": 9_100_000,
    ...                        "size_after": 2_100_000, "latency_before_ms": 0.9,
    ...                        "latency_after_ms": 0.3, "agreement_before": 0.99,
    ...                        "agreement_after": 0.98}]}
    >>> print(format_compress_report(report))
    figure                         before  after  before/after
    -----------------------------  ------  -----  ------------
    params (M)                       9.00   2.00         4.50x
    GFLOPs                           0.60   0.18         3.33x
    test accuracy                   98.0%  97.5%      -0.5 pts
    model_int8.tflite MB             9.10   2.10         4.33x
    model_int8.tflite ms/image       0.90   0.30         3.00x
    model_int8.tflite top-1 agree   99.0%  98.0%
    Top-1 agreement: each export against its own Keras model, on the same 200 test images.
    Unpruned minus pruned, paired on the 200 test images: +0.5 points (95% CI -1.6 to +2.9) on
    200 images; 1 changed answer (1 right only before, 0 right only after).
    Within 1.0 point of the unpruned model: undecided: the interval of the drop spans 1.0 points
    (200 images are too few to tell).
"""

from __future__ import annotations

import textwrap

from keras_vgg._helpers import format_table
from keras_vgg.finetune.latency import LatencyTable
from keras_vgg.finetune.report import _pyplot
from keras_vgg.stats import PairedDifference


def wrap(text):
    """``text`` as console lines of at most 92 characters, never split inside a word: a flag
    such as ``--max-drop`` stays whole (textwrap's default breaks after its hyphens)."""
    return textwrap.wrap(text, 92, break_on_hyphens=False)


def format_compress_report(report) -> str:
    """Before, after and their ratio for each figure of the report; then the paired
    difference of the two models' accuracies and the verdict on the 1-point target."""
    def row(name, before, after, scale=1.0):
        return (name, f"{before / scale:.2f}", f"{after / scale:.2f}",
                f"{before / after:.2f}x" if after else "")

    paired = PairedDifference.from_json(report["before_minus_after"])
    split = report["held_out"]
    rows = [row("params (M)", report["params"]["before"], report["params"]["after"], 1e6),
            row("GFLOPs", report["flops"]["before"], report["flops"]["after"], 1e9),
            (f"{split} accuracy", f"{paired.first.value:.1%}", f"{paired.second.value:.1%}",
             f"{-100 * paired.difference:+.1f} pts")]
    for export in report["exports"]:
        name = export["file"]
        rows.append(row(f"{name} MB", export["size_before"], export["size_after"], 1e6))
        rows.append(row(f"{name} ms/image", export["latency_before_ms"],
                        export["latency_after_ms"]))
        rows.append((f"{name} top-1 agree", f"{export['agreement_before']:.1%}",
                     f"{export['agreement_after']:.1%}", ""))
    images = f"{paired.count:,} {split} images"
    lines = [format_table(("figure", "before", "after", "before/after"), rows, right=(1, 2, 3)),
             f"Top-1 agreement: each export against its own Keras model, on the same {images}."]
    lines += wrap(f"Unpruned minus pruned, paired on the {images}: {paired}.")
    for export in report["exports"]:
        pairs = [(word, export.get(f"vs_keras_{when}")) for word, when in (
            ("unpruned", "before"), ("pruned", "after"))]
        if all(figures for _, figures in pairs):
            lines += wrap(f"{export['file']}, its Keras model minus it: " + "; ".join(
                f"{word} {_short(PairedDifference.from_json(figures))}"
                for word, figures in pairs) + ".")
    if report.get("exports_skipped"):
        lines += wrap(report["exports_skipped"])
    if report.get("distillation"):
        lines += wrap(distillation_line(report["distillation"]))
    if (report.get("plan") or {}).get("latency"):
        lines += wrap(latency_line(report))
    target = report["accuracy_target"]
    lines += wrap(f"Within {100 * target['max_drop']:.1f} point of the unpruned "
                  f"model: {target['verdict']}.")
    if report.get("accuracy_warning"):
        lines += wrap(report["accuracy_warning"])
    return "\n".join(lines)


def latency_line(report) -> str:
    """What a latency target planned: the convs' predicted time before and after, by the
    table the compress measured (or was given), and the plan that spent it."""
    table = LatencyTable.from_json(report["plan"]["latency"])
    before, after = (table.time_of(report["widths"][when]) for when in ("before", "after"))
    return (f"Planned for {report['target']['latency']:g} of the convs' time "
            f"({report['plan']['planner']} plan; {table.quantize} TFLite, each conv timed "
            f"alone: latency.json): predicted {after:.3f} of {before:.3f} ms "
            f"({after / before:.1%}).")


def distillation_line(distillation: dict) -> str:
    """How the pruned model was fine-tuned: from the labels alone, or distilled (and how).

    Example:
        >>> distillation_line({"on": False})
        'Fine-tuned on the labels alone (no distillation).'
    """
    if not distillation["on"]:
        return "Fine-tuned on the labels alone (no distillation)."
    features = distillation["features"]
    blocks = (f"{distillation['feature_weight']:g} on the block outputs {', '.join(features)}"
              if features else "none on the block outputs")
    return (f"Distilled from the unpruned model: loss = {distillation['label_weight']:g} x labels "
            f"+ {1 - distillation['label_weight']:g} x (the class scores at temperature "
            f"{distillation['temperature']:g}, weight {distillation['logits_weight']:g}; "
            f"{blocks}).")


def _short(paired: PairedDifference) -> str:
    """"+0.1 points (95% CI -0.3 to +0.5), 2 changed answer": a paired difference in brief."""
    return (f"{paired.difference * 100:+.1f} points (95% CI {paired.low * 100:+.1f} to "
            f"{paired.high * 100:+.1f}), {paired.changed:,} changed answer")


def plot_widths(names, before, after, path):
    """Each conv's filters before and after pruning, side by side."""
    plt = _pyplot()
    import numpy as np

    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) + 2), 4))
    ax.bar(x - 0.2, before, 0.4, label="before")
    ax.bar(x + 0.2, after, 0.4, label="after")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("filters")
    ax.set_title("conv widths")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_distill_report(report) -> str:
    """The teacher, the distilled student and the labels-only student side by side (params,
    FLOPs, held-out accuracy, per TFLite file size, latency and agreement); then the two
    paired differences and whether distillation helped.

    Example:
        >>> from keras_vgg.stats import paired_difference
        >>> labels = [0] * 100
        >>> def record(first, second):
        ...     return paired_difference(labels, [0] * first + [1] * (100 - first),
        ...                              [0] * second + [1] * (100 - second)).to_json()
        >>> report = {"student": "vgg_s", "held_out": "test",
        ...           "params": {"teacher": 9e6, "distilled": 6e6, "labels_only": 6e6},
        ...           "flops": {"teacher": 3e8, "distilled": 2e7, "labels_only": 2e7},
        ...           "teacher_minus_distilled": record(99, 97),
        ...           "labels_only_minus_distilled": record(90, 97),
        ...           "distillation_helped": "yes", "exports": []}
        >>> print(format_distill_report(report))
        figure         teacher  vgg_s distilled  vgg_s labels only  teacher/distilled
        -------------  -------  ---------------  -----------------  -----------------
        params (M)        9.00             6.00               6.00              1.50x
        GFLOPs            0.30             0.02               0.02             15.00x
        test accuracy    99.0%            97.0%              90.0%           -2.0 pts
        Teacher minus distilled student, paired on the 100 test images: +2.0 points (95% CI -2.3 to
        +7.3) on 100 images; 2 changed answer (2 right only before, 0 right only after).
        Labels-only minus distilled student, paired on the 100 test images: -7.0 points (95% CI
        -13.8 to -1.6) on 100 images; 7 changed answer (0 right only before, 7 right only after).
        Distillation helped (the interval of labels-only minus distilled below 0): yes.
    """
    def row(name, figures, scale=1.0, digits=2):
        values = [figures[m] for m in ("teacher", "distilled", "labels_only")]
        ratio = f"{values[0] / values[1]:.2f}x" if values[1] else ""
        return (name, *(f"{v / scale:.{digits}f}" for v in values), ratio)

    teacher = PairedDifference.from_json(report["teacher_minus_distilled"])
    control = PairedDifference.from_json(report["labels_only_minus_distilled"])
    split, student = report["held_out"], report["student"]
    rows = [row("params (M)", report["params"], 1e6), row("GFLOPs", report["flops"], 1e9),
            (f"{split} accuracy", f"{teacher.first.value:.1%}", f"{teacher.second.value:.1%}",
             f"{control.first.value:.1%}", f"{-100 * teacher.difference:+.1f} pts")]
    for export in report["exports"]:
        name = export["file"]
        rows.append(row(f"{name} MB", export["size_bytes"], 1e6))
        rows.append(row(f"{name} ms/image", export["latency_ms"]))
        agree = [f"{export['agreement'][m]:.1%}" for m in ("teacher", "distilled", "labels_only")]
        rows.append((f"{name} top-1 agree", *agree, ""))
    header = ("figure", "teacher", f"{student} distilled", f"{student} labels only",
              "teacher/distilled")
    lines = [format_table(header, rows, right=(1, 2, 3, 4))]
    images = f"{teacher.count:,} {split} images"
    lines += wrap(f"Teacher minus distilled student, paired on the {images}: {teacher}.")
    lines += wrap(f"Labels-only minus distilled student, paired on the {images}: {control}.")
    if report.get("exports_skipped"):
        lines += wrap(report["exports_skipped"])
    lines.append("Distillation helped (the interval of labels-only minus distilled below 0): "
                 f"{report['distillation_helped']}.")
    return "\n".join(lines)
