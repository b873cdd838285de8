"""What a run leaves behind besides the model: metrics.json, history.png, confusion_matrix.png,
and the summary ``keras-vgg finetune`` prints at the end (``format_run``).

Example:
    >>> import numpy as np
    >>> from keras_vgg.finetune.report import classification_metrics
    >>> m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
    >>> m["accuracy"], m["confusion_matrix"]
    (0.6667, [[1, 0], [1, 1]])
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from keras_vgg._extras import require
from keras_vgg._helpers import first_named
from keras_vgg.export.report import format_report
from keras_vgg.run_folder import RunFolder
from keras_vgg.stats import Accuracy, accuracy

NAMED_FILES = 5  # skipped files the console names; data_report.json lists them all


def classification_metrics(labels, predicted, class_names) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: truth)."""
    k = len(class_names)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predicted)), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        tp, support, claimed = matrix[i, i], matrix[i].sum(), matrix[:, i].sum()
        precision = tp / claimed if claimed else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                           "f1": round(float(f1), 4), "support": int(support)}
    return {
        "accuracy": round(float(np.trace(matrix) / max(matrix.sum(), 1)), 4),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def read_log(path) -> list[dict]:
    """The CSVLogger rows as dicts of numbers."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
                for row in csv.DictReader(f)]


def plot_history(rows, path, phase_starts=()):
    """Loss and accuracy per epoch, train and validation, a dashed line where a phase starts;
    returns each panel's x ticks (whole epochs)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] + 1 for row in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            ax.plot(epochs, [row.get(key, np.nan) for row in rows], marker="o", label=label)
        for start in phase_starts:
            ax.axvline(start + 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs 1, 2, not 1.2, 1.4
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    ticks = [[float(t) for t in ax.get_xticks()] for ax in axes]
    plt.close(fig)
    return ticks  # the x ticks drawn, per panel


def plot_confusion(matrix, class_names, path, title="validation"):
    plt = _pyplot()

    matrix = np.asarray(matrix)
    size = max(4, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90 if len(class_names) > 5 else 0)
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(class_names) <= 30:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black")
    ax.set_title(f"{title} accuracy {np.trace(matrix) / max(matrix.sum(), 1):.1%} "
                 f"({int(np.trace(matrix))}/{int(matrix.sum())})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pyplot():
    """matplotlib.pyplot drawing to files (the Agg backend), or an error naming the extra."""
    require("matplotlib", "finetune").use("Agg")
    return require("matplotlib.pyplot", "finetune", package="matplotlib")


def format_run(result) -> str:
    """The end of a run: what it scored and when, what the data lost, then where it all is."""
    final = result.metrics["final"]
    stopped = final.get("stopped_early") or []
    validation = accuracy(final["validation"]["correct"], final["validation"]["count"])
    chose = (f"best.keras, from epoch {final['best_epoch']} of {final['epochs_run']}"
             + (f"; early stopping ended {' and '.join(stopped)}" if stopped else "")
             + f"; validation {validation}")
    cached = ", head trained on cached features" if result.feature_cache else ""
    if final.get("test"):
        test = accuracy(final["test"]["correct"], final["test"]["count"])
        lines = [f"Test accuracy {test} ({chose}) in {result.metrics['seconds']:.0f} s{cached}"]
    else:
        lines = [f"Validation accuracy {validation} ({chose.rsplit('; validation', 1)[0]}) in "
                 f"{result.metrics['seconds']:.0f} s{cached}",
                 "No test split: the same images chose the epoch, so this figure is biased "
                 "upwards (set data.test_split or data.test_data)."]
    if final.get("chance", {}).get("within_chance"):
        lines.append(chance_line(final))
    report = json.loads(RunFolder(result.run_dir).data_report.read_text())
    counts = [skipped_files(report["skipped"]),
              f"converted {len(report['converted'])} to RGB" if report["converted"] else "",
              f"dropped {len(report['dropped_classes'])} class folder(s)"
              if report["dropped_classes"] else ""]
    if any(counts):
        lines.append("Data: " + "; ".join(c for c in counts if c) + " (see data_report.json)")
    lines.append(f"Outputs in {result.run_dir}:")
    lines += [f"  {p.name}{'/' if p.is_dir() else ''}" for p in sorted(result.run_dir.iterdir())]
    if result.export_report:
        lines += ["Exported to export/ (export_report.json):", format_report(result.export_report)]
    return "\n".join(lines)


def skipped_files(skipped, named=NAMED_FILES) -> str:
    """"skipped N file(s): path (reason), ..." naming the first ``named`` of data_report.json's
    ``skipped`` rows, then how many more; "" when none."""
    if not skipped:
        return ""
    shown = first_named((f"{row['file']} ({row['reason']})" for row in skipped), named)
    return f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''}: {shown}"


def chance(figure: Accuracy, classes: int) -> dict:
    """metrics.json's ``final.chance``: the rate of guessing (1/classes) and whether the
    figure's 95% interval holds it (the model cannot be told from a guess)."""
    rate = 1 / classes
    return {"rate": round(rate, 6), "within_chance": bool(figure.low <= rate <= figure.high)}


def chance_line(final) -> str:
    """The console line of a run whose reported accuracy is within the interval of chance."""
    split = "Test" if final.get("test") else "Validation"
    figure = final["test"] if final.get("test") else final["validation"]
    classes = len(final["class_names"])
    return (f"{split} accuracy {figure['accuracy']:.1%} is within the interval of chance "
            f"({final['chance']['rate']:.1%} for {classes} classes): the model has learnt "
            f"nothing; start from pretrained weights (--weights imagenet), or from scratch "
            f"give it more images per class and more epochs (phases.N.epochs), a batch-norm "
            f"model at a small size (model.name=vgg11_bn model.image_size=64), and check that the "
            f"class folders really differ.")
