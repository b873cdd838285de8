"""The export report as text: a table with one row for Keras and one per exported file,
then each file's paired difference with Keras on the labelled sample and the agreement gate.

Example:
    >>> from keras_vgg.export.report import format_report
    >>> from keras_vgg.stats import accuracy, paired_difference
    >>> row = {"file": "model_int8.tflite", "quantize": "int8", "size_bytes": 500_000,
    ...        "size_vs_float32": 0.25, "max_abs_diff": 0.04, "top1_agreement": 0.9,
    ...        "accuracy": 0.8, "latency_ms": 0.5,
    ...        "paired_difference": paired_difference([0] * 10, [0] * 9 + [1],
    ...                                               [0] * 8 + [1, 1]).to_json(),
    ...        "agreement_gate": {"min_agreement": 0.8, "rule": "default", "result": "passed"}}
    >>> print(format_report({"keras": {"latency_ms": 1.25, "accuracy": 0.9,
    ...                                "accuracy_with_ci": accuracy(9, 10).to_json()},
    ...                      "exports": [row], "sample": {"images": 10, "source": "given"},
    ...                      "image_size": [32, 32], "machine": {"cores": 2}}))
    export             size MB  vs f32  max |diff|  top-1 agree  accuracy  ms/image
    -----------------  -------  ------  ----------  -----------  --------  --------
    keras                                                           90.0%      1.25
    model_int8.tflite     0.50   0.250        0.04        90.0%     80.0%      0.50
    Sample: 10 given images at 32x32; latency is the median per image (batch 1) on 2 CPU cores.
    Keras on the sample: 90.0% (9/10 images; 95% CI 59.6%-98.2%).
    model_int8.tflite drop vs Keras: +10.0 points (95% CI -20.2 to +40.0) on 10 images; 1
    changed answer (1 right only before, 0 right only after)
    Top-1 agreement gate (min_agreement): model_int8.tflite >= 80.0% (default), passed.
"""

from keras_vgg._helpers import format_table
from keras_vgg.export.formats import NEAR_TIE
from keras_vgg.stats import Accuracy, PairedDifference


def format_report(report) -> str:
    """The report as a table: one row for Keras, one per exported file; then the paired
    differences and the agreement gates."""
    header = ("export", "size MB", "vs f32", "max |diff|", "top-1 agree", "accuracy",
              "ms/image")
    keras_row = report["keras"]
    rows = [("keras", "", "", "", "", _pct(keras_row.get("accuracy")),
             f"{keras_row['latency_ms']:.2f}")]
    for r in report["exports"]:
        precision = r.get("precision", "float32")
        name = r["file"] if r["quantize"] or precision == "float32" else \
            f"{r['file']} ({precision})"
        if r.get("inference_precision", "f32") != "f32":  # an OpenVINO file's hint
            name = f"{name} ({r['inference_precision']} hint)"
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
    if "fastest" in report:
        best = report["fastest"]
        lines.append(f"Fastest file here: {best['file']} ({best['latency_ms']:.2f} ms/image, "
                     f"{best['vs_keras']:.1f}x the Keras model; timed one after another).")
    if "accuracy_with_ci" in keras_row:
        keras_figure = Accuracy.from_json(keras_row["accuracy_with_ci"])
        lines.append(f"Keras on the sample: {keras_figure}.")
    for r in report["exports"]:
        if "paired_difference" in r:
            drop = PairedDifference.from_json(r["paired_difference"])
            lines.append(f"{r['file']} drop vs Keras: {drop}")
    gates = [f"{r['file']} {_gate(r['agreement_gate'])}" for r in report["exports"]
             if _gated(r.get("agreement_gate"))]
    if gates:
        lines.append(f"Top-1 agreement gate (min_agreement): {'; '.join(gates)}.")
    return "\n".join(lines)


def _pct(value):
    return "" if value is None else f"{value:.1%}"


def _gated(gate) -> bool:
    """Whether a row's gate is worth a word: one that applied, was turned off, or could not
    judge (a float file's max |diff| gate is the table's own column)."""
    return gate is not None and gate["rule"] != "max |diff|"


def _gate(gate) -> str:
    if gate["rule"] == "random images":
        return "not judged (random images)"
    if gate["rule"] == "off":
        return "off (min_agreement=0)"
    passed = "passed" if gate.get("result") != "near ties" else \
        f"passed on near ties only (max |diff| <= {NEAR_TIE:g})"
    return f">= {gate['min_agreement']:.1%} ({gate['rule']}), {passed}"


def row_summary(row):
    """One exported file's check, as export() prints it while it works."""
    gate = row.get("agreement_gate")
    said = f"; agreement gate {_gate(gate)}" if _gated(gate) else ""
    if row["checked_on"] == "real images":
        return (f"max |diff| {row['max_abs_diff']:.2g}, "
                f"top-1 agreement {row['top1_agreement']:.1%}{said}")
    diff = f"max |diff| {row['max_abs_diff']:.2g} on random images; " \
        if "max_abs_diff" in row else ""
    return diff + "not checked on real images" + said
