"""Runs every benchmark and regenerates docs/benchmarks.md, docs/throughput.png and
docs/precision.png.

Sections: inference, fine-tuning, precision, bfloat16 inference, export, memory, backends,
each at its script's default settings
(--quick: the tiniest settings, for a smoke run). The section "Export: LRN as TFLite
builtins, int8 end to end" (benchmarks/export_lrn.py, with its written reading) is kept
verbatim from the existing file; only if it is missing does export_lrn run to make it. The
sections of benchmarks/fold_bn.py (with its written reading) and benchmarks/data_scale.py
(6 minutes, `--write` updates it) are kept verbatim too.
Prints the total wall time, which the docs record too.

Usage:
    python benchmarks/run_all.py                 # about 25 minutes on 2 CPU cores
    python benchmarks/run_all.py --quick --docs /tmp/bench_docs
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import backends
import common
import determinism
import export_lrn
import export_speed
import finetune_speed
import fold_bn
import inference
import latency_plan
import matplotlib
import memory
import precision
import precision_inference

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LRN_TITLE = "## Export: LRN as TFLite builtins, int8 end to end"
FOLD_TITLE = f"## {fold_bn.TITLE}"
COMPRESS_TITLE = "## Compress: structured pruning of the built-in run, end to end"  # compress.py --write
# compress_targets.py --write
TARGETS_TITLE = "## Compress targets over seeds: distilled students against their controls"
DATA_TITLE = "## Data at scale: scan, first-epoch input and peak RSS, 1k to 16k photos"
DETERMINISM_TITLE = f"## {determinism.TITLE}"  # determinism.py --write
LATENCY_TITLE = f"## {latency_plan.TITLE}"  # latency_plan.py --write
QUICK = {
    inference: ["--size", "32", "--batch", "1", "--repeats", "1", "--gemm", "256",
                "--sweep-size", "48", "--sweep-batch", "1", "--sweep-repeats", "1",
                "--variants", "vgg11", "vgg_f"],
    finetune_speed: ["--repeats", "1", "--set", "data.builtin_images_per_class=8", "data.batch_size=8"],
    export_speed: ["--model", "vgg11", "--size", "32", "--repeats", "2", "--calibration", "2",
                   "--quantize", "none", "int8"],
    memory: ["--variants", "vgg_f", "--size", "48"],
    precision: ["--image-size", "32", "--repeats", "1", "--forms", "mixed precision",
                "--set", "data.builtin_images_per_class=8"],
    backends: ["--size", "32", "--batch", "1", "--repeats", "1", "--epochs", "1",
               "--images-per-class", "4"],
    precision_inference: ["--size", "48", "--batch", "1", "--repeats", "1", "--gemm", "256",
                          "--variants", "vgg11", "vgg_f", "--cache-size", "32",
                          "--cache-images", "2"],
}


def kept_section(title: str, *files: Path) -> str:
    """The section ``title`` of the first file holding it, verbatim; "" if none does."""
    for path in files:
        text = path.read_text() if path.is_file() else ""
        match = re.search(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", text, re.S | re.M)
        if match:
            return match.group(0).rstrip() + "\n"
    return ""


def lrn_section(*files: Path) -> str:
    """The LRN section of the first file holding it, verbatim; else made by export_lrn."""
    kept = kept_section(LRN_TITLE, *files)
    if kept:
        return kept
    size, repeats = 224, 20
    return (f"{LRN_TITLE}\n\nCommand: `python benchmarks/export_lrn.py` ({size}x{size}).\n\n"
            f"{export_lrn.table(export_lrn.measure(size, repeats), size, repeats)}\n")


def plot(swept, peak, path: Path, settings: str = ""):
    """Images/s and fraction of the GEMM peak per variant, as two bar charts."""
    names = [row["model"] for row in swept][::-1]
    rates = [row["images_s"] for row in swept][::-1]
    fractions = [100 * row["fraction_of_peak"] for row in swept][::-1]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 0.35 * len(names) + 1.5),
                                         sharey=True)
    left.barh(names, rates, color="tab:blue")
    left.set_xscale("log")
    left.set_xlabel("images/s (log scale)")
    right.barh(names, fractions, color="tab:green")
    right.axvline(85, color="tab:red", linestyle="--", label="VGG16 target 85%")
    right.axvline(100, color="black", linewidth=0.8)
    right.set_xlabel(f"% of the float32 GEMM peak ({peak:.0f} GFLOP/s)")
    right.legend(loc="lower right")
    figure.suptitle(f"keras_vgg inference per variant, with top, {settings}; each variant "
                    "alternating with the GEMM")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def compose(sections, machine, seconds, load, lrn) -> str:
    """The whole docs/benchmarks.md: machine, targets, each section, the LRN section."""
    targets = [t for s in sections for t in s.targets]
    rows = [(t.name, t.goal, t.measured, common.met(t.met)) for t in targets]
    readings = [f"- **{t.name}**: {t.reading}" for t in targets if not t.met and t.reading]
    parts = [
        "# Benchmarks",
        f"Machine for every figure below: {machine}. TFLite runs with ai-edge-litert's default "
        "XNNPACK delegate.",
        f"Every section but the last is regenerated by `python benchmarks/run_all.py` "
        f"({seconds / 60:.1f} minutes in all on this machine; load average {load:.2f} when it "
        "started). Each section names the command that makes it alone, its settings spelt "
        "out. Timings are medians after a warm-up; every ratio is measured side by side in "
        "one process, in alternating rounds.",
        "## Targets",
        common.table(("target", "goal", "measured", "result"), rows, left=4)
        + ("\n\nWhere not met:\n\n" + "\n".join(readings) if readings else ""),
        *(s.markdown().rstrip() for s in sections),
        lrn.rstrip(),
    ]
    return "\n\n".join(parts) + "\n"


def main(argv=None):
    """Runs the benchmarks, writes the docs, prints the total wall time."""
    arg_parser = common.parser(__doc__)
    arg_parser.add_argument("--quick", action="store_true", help="tiniest settings")
    arg_parser.add_argument("--docs", type=Path, default=common.ROOT / "docs",
                            help="where benchmarks.md and throughput.png go")
    args = arg_parser.parse_args(argv)
    start, load = time.perf_counter(), os.getloadavg()[0]
    docs = (args.docs / "benchmarks.md", common.ROOT / "docs" / "benchmarks.md")
    # kept verbatim after it, in this order: compress (compress.py --write), its targets over
    # seeds (compress_targets.py --write), BN folding (fold_bn.py), data at scale
    # (data_scale.py --write), determinism (determinism.py --write), the latency-aware plan
    # (latency_plan.py --write)
    kept = [kept_section(title, *docs) for title in (COMPRESS_TITLE, TARGETS_TITLE, FOLD_TITLE,
                                                     DATA_TITLE, DETERMINISM_TITLE,
                                                     LATENCY_TITLE)]
    lrn = lrn_section(*docs) + "".join("\n" + section for section in kept if section).rstrip() \
        + "\n"
    sections = []
    for module in (inference, finetune_speed, precision, precision_inference, export_speed,
                   memory, backends):
        began = time.perf_counter()
        sections.append(module.main(QUICK[module] if args.quick else []))
        print(f"[{module.__name__}: {time.perf_counter() - began:.0f} s]\n", flush=True)
    args.docs.mkdir(parents=True, exist_ok=True)
    extra = sections[0].extra
    plot(extra["swept"], extra["sweep_peak_gflops_s"], args.docs / "throughput.png",
         extra["sweep_settings"])
    precision_inference.plot(sections[3].rows, args.docs / "precision.png")
    seconds = time.perf_counter() - start
    (args.docs / "benchmarks.md").write_text(
        compose(sections, common.machine(), seconds, load, lrn))
    print(f"run_all wall time: {seconds:.0f} s ({seconds / 60:.1f} min); wrote "
          f"{args.docs / 'benchmarks.md'} and {args.docs / 'throughput.png'}")
    return sections


if __name__ == "__main__":
    main()
