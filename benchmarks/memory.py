"""Memory: peak RSS of building and running each variant, one fresh process per variant.

Each variant runs in a child process of its own (so peaks do not mix): it imports
keras_vgg, builds the variant with its top at --size, and runs predict_on_batch on a batch.
The child's peak RSS is its ru_maxrss from os.wait4, in a small launcher process (Linux
carries ru_maxrss across exec, so a child started straight from a large process would start
from that process's peak); the child also prints its ru_maxrss after import and after
building. A baseline child only imports Keras and keras_vgg (which loads Keras on first
use); its peak is subtracted. "x weights" divides what a variant adds over the baseline by
its float32 weight bytes.

Usage:
    python benchmarks/memory.py                          # every variant, 224x224, batch 1
    python benchmarks/memory.py --variants vgg16 vgg_f --size 64 --batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import common

MB = 1024 / 1e6  # ru_maxrss is in KiB on Linux


def child(variant, size, batch):
    """In the child: import, build, run; prints the peaks so far as JSON."""
    import keras  # noqa: F401  (keras_vgg loads Keras on first use: the baseline holds it)

    import keras_vgg

    peaks = {"import": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * MB}
    if variant != "none":
        import numpy as np

        model = keras_vgg.get_model(variant, input_shape=(size, size, 3))
        peaks["build"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * MB
        model.predict_on_batch(np.zeros((batch, size, size, 3), "float32"))
        peaks["params"] = model.count_params()
    print(json.dumps(peaks))


# A small process starts each child: a process started straight from this (large) one would
# inherit its peak, because Linux carries ru_maxrss across exec.
LAUNCHER = """import json, os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"status": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss}))"""


def launched(script, *args) -> tuple[list[str], float]:
    """``script`` (a path) run with ``args`` in a fresh process that a small launcher starts:
    ``(its stdout lines, its peak RSS in MB)``; a failed child raises with its stderr's
    tail."""
    argv = [sys.executable, "-S", "-c", LAUNCHER, sys.executable, os.path.abspath(script),
            *map(str, args)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          timeout=common.CHILD_TIMEOUT_S)
    lines = done.stdout.strip().splitlines()
    launched_json = json.loads(lines[-1]) if lines else {"status": done.returncode}
    if done.returncode or launched_json["status"]:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{os.path.basename(script)} {' '.join(map(str, args))} failed "
                           f"({launched_json['status']}): {tail}")
    return lines[:-1], launched_json["maxrss"] * MB


def peak_of(variant, size, batch) -> dict:
    """Runs one child; its printed peaks plus ``peak``: its ru_maxrss from os.wait4."""
    lines, peak = launched(__file__, "--child", variant, "--size", size, "--batch", batch)
    return {**json.loads(lines[-1]), "peak": peak}


def measure(variants, size, batch):
    """The baseline, then one row per variant (MB, minus the baseline where it says so)."""
    baseline = peak_of("none", size, batch)["peak"]
    rows = []
    for variant in variants:
        peaks = peak_of(variant, size, batch)
        rows.append(row_of(variant, peaks, baseline))
        print(f"{variant}: peak {peaks['peak']:.0f} MB", flush=True)
    return baseline, rows


def row_of(variant, peaks, baseline) -> dict:
    """A variant's row from its child's peaks (:func:`peak_of`, MB) and the baseline's."""
    weights = 4 * peaks["params"] / 1e6
    return {"model": variant, "weights_mb": weights, "peak_mb": peaks["peak"],
            "build_mb": peaks["build"] - baseline, "run_mb": peaks["peak"] - baseline,
            "x_weights": (peaks["peak"] - baseline) / weights}


def body(args, baseline, rows) -> str:
    lines = common.table(
        ("variant", "weights MB (float32)", "peak RSS MB", "build - baseline MB",
         "build + run - baseline MB", "x weights"),
        [(r["model"], f"{r['weights_mb']:.0f}", f"{r['peak_mb']:.0f}", f"{r['build_mb']:.0f}",
          f"{r['run_mb']:.0f}", f"{r['x_weights']:.2f}") for r in rows])
    return (f"One process per variant: import Keras and keras_vgg, build with its top at "
            f"{args.size}x{args.size}, `predict_on_batch` on a batch of {args.batch}. Peak RSS "
            f"from `os.wait4` (the child's ru_maxrss). Baseline, a process that only imports "
            f"Keras and keras_vgg: {baseline:.0f} MB. \"build - baseline\" is the peak once built, "
            "\"build + run - baseline\" the peak over the whole process; \"x weights\" the "
            f"latter over the float32 weight bytes.\n\n{lines}")


TITLE = "Memory: peak RSS of building and running each variant"


def section(args, command, baseline, rows) -> common.Section:
    """The docs section from the baseline's peak and the variants' rows (:func:`row_of`)."""
    return common.Section(TITLE, command, body(args, baseline, rows), rows=rows,
                          extra={"baseline_mb": baseline})


def arguments(argv=None):
    """``(args, command)``: the parsed arguments and the command line that reproduces them
    (a child's own, when ``--child`` is given, is not checked)."""
    arg_parser = common.parser(__doc__)
    common.add_variants(arg_parser)
    arg_parser.add_argument("--size", type=common.positive_int, default=224)
    arg_parser.add_argument("--batch", type=common.positive_int, default=1)
    arg_parser.add_argument("--child", help=argparse.SUPPRESS)
    args = arg_parser.parse_args(argv)
    if not args.child:
        common.check_size(arg_parser, "--size", args.size, args.variants)
    return args, common.command("memory.py", args, arg_parser)


def main(argv=None):
    """Runs the children and prints the table; returns the section for the docs."""
    args, command = arguments(argv)
    if args.child:
        return child(args.child, args.size, args.batch)
    baseline, rows = measure(args.variants, args.size, args.batch)
    return common.report(section(args, command, baseline, rows))


if __name__ == "__main__":
    main()
