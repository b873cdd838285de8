"""The export report as text: a table with one row for Keras and one per exported file.

Example:
    >>> from keras_vgg.export.report import format_report
    >>> row = {"file": "model_float32.tflite", "quantize": "none", "size_bytes": 2_000_000, "size_vs_float32": 1.0,
    ...        "max_abs_diff": 2e-7, "top1_agreement": 1.0, "accuracy": 0.9, "latency_ms": 0.5}
    >>> print(format_report({"keras": {"latency_ms": 1.25, "accuracy": 0.9}, "exports": [row],
    ...                      "sample": {"images": 10, "source": "given"},
    ...                      "image_size": [32, 32], "machine": {"cores": 2}}))
    export                size MB  vs f32  max |diff|  top-1 agree  accuracy  ms/image
    --------------------  -------  ------  ----------  -----------  --------  --------
    keras                                                              90.0%      1.25
    model_float32.tflite     2.00   1.000       2e-07       100.0%     90.0%      0.50
    Sample: 10 given images at 32x32; latency is the median per image (batch 1) on 2 CPU cores.
"""

from keras_vgg._helpers import format_table


def format_report(report) -> str:
    """The report as a table: one row for Keras, one per exported file."""
    header = ("export", "size MB", "vs f32", "max |diff|", "top-1 agree", "accuracy",
              "ms/image")
    keras_row = report["keras"]
    rows = [("keras", "", "", "", "", _pct(keras_row.get("accuracy")),
             f"{keras_row['latency_ms']:.2f}")]
    for r in report["exports"]:
        precision = r.get("precision", "float32")
        name = r["file"] if r["quantize"] or precision == "float32" else \
            f"{r['file']} ({precision})"
        rows.append((name, f"{r['size_bytes'] / 1e6:.2f}",
                     f"{r['size_vs_float32']:.3f}" if "size_vs_float32" in r else "",
                     f"{r['max_abs_diff']:.2g}" if "max_abs_diff" in r else "",
                     _pct(r.get("top1_agreement")), _pct(r.get("accuracy")),
                     f"{r['latency_ms']:.2f}"))
    lines = [format_table(header, rows, right=range(1, len(header)))]
    if "params" in report:
        lines.append(f"Model: {report['params'] / 1e6:.2f}M parameters, "
                     f"{report['flops'] / 1e9:.3f} GFLOPs per image, conv widths "
                     f"{report['widths']}.")
    sample = report["sample"]
    lines.append(f"Sample: {sample['images']} {sample['source']} images at "
                 f"{report['image_size'][0]}x{report['image_size'][1]}; latency is the "
                 f"median per image (batch 1) on {report['machine']['cores']} CPU cores.")
    if sample["source"] == "random":
        lines.append("Not checked on real images: max |diff| on random images is a sanity "
                     "check only; give sample images (--sample-data DIR) for agreement.")
    return "\n".join(lines)


def _pct(value):
    return "" if value is None else f"{value:.1%}"


def row_summary(row):
    """One exported file's check, as export() prints it while it works."""
    if row["checked_on"] == "real images":
        return (f"max |diff| {row['max_abs_diff']:.2g}, "
                f"top-1 agreement {row['top1_agreement']:.1%}")
    gate = f"max |diff| {row['max_abs_diff']:.2g} on random images; " \
        if "max_abs_diff" in row else ""
    return gate + "not checked on real images"
