"""The compress report: the figures of a pruned model against its original (params, FLOPs,
held-out accuracy, and per TFLite mode size, latency and agreement), as a table and the
per-conv widths as a picture.

Example:
    >>> from keras_vgg.finetune.compress_report import format_compress_report
    >>> report = {"params": {"before": 9_000_000, "after": 2_000_000},
    ...           "flops": {"before": 600_000_000, "after": 180_000_000},
    ...           "accuracy": {"before": 0.97, "after": 0.965},
    ...           "exports": [{"file": "model_int8.tflite", "size_before": 9_100_000,
    ...                        "size_after": 2_100_000, "latency_before_ms": 0.9,
    ...                        "latency_after_ms": 0.3, "agreement_before": 0.99,
    ...                        "agreement_after": 0.98}]}
    >>> print(format_compress_report(report))
    figure                         before  after  before/after
    -----------------------------  ------  -----  ------------
    params (M)                       9.00   2.00         4.50x
    GFLOPs                           0.60   0.18         3.33x
    held-out accuracy               97.0%  96.5%      -0.5 pts
    model_int8.tflite MB             9.10   2.10         4.33x
    model_int8.tflite ms/image       0.90   0.30         3.00x
    model_int8.tflite top-1 agree   99.0%  98.0%
    Top-1 agreement: each export against its own Keras model, on the held-out images.
"""

from __future__ import annotations

from keras_vgg._helpers import format_table
from keras_vgg.finetune.report import _pyplot


def format_compress_report(report) -> str:
    """Before, after and their ratio for each figure of the report."""
    def row(name, before, after, scale=1.0, digits=2, ratio=True):
        return (name, f"{before / scale:.{digits}f}", f"{after / scale:.{digits}f}",
                f"{before / after:.2f}x" if ratio and after else "")

    rows = [row("params (M)", report["params"]["before"], report["params"]["after"], 1e6),
            row("GFLOPs", report["flops"]["before"], report["flops"]["after"], 1e9)]
    accuracy = report["accuracy"]
    rows.append(("held-out accuracy", f"{accuracy['before']:.1%}", f"{accuracy['after']:.1%}",
                 f"{100 * (accuracy['after'] - accuracy['before']):+.1f} pts"))
    for export in report["exports"]:
        name = export["file"]
        rows.append(row(f"{name} MB", export["size_before"], export["size_after"], 1e6))
        rows.append(row(f"{name} ms/image", export["latency_before_ms"],
                        export["latency_after_ms"]))
        rows.append((f"{name} top-1 agree", f"{export['agreement_before']:.1%}",
                     f"{export['agreement_after']:.1%}", ""))
    return "\n".join([format_table(("figure", "before", "after", "before/after"), rows,
                                   right=(1, 2, 3)),
                      "Top-1 agreement: each export against its own Keras model, on the "
                      "held-out images."])


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
