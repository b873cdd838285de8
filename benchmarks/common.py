"""What every benchmark shares: timing, the GEMM peak, the machine line, markdown, sections."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
# The longest a benchmark's child process may run (the slowest, a data-scale child at 16k
# photos, takes a few minutes): a hung child fails the benchmark instead of hanging it.
CHILD_TIMEOUT_S = 3600


@dataclass
class Target:
    """One goal of the issue: what was asked, what was measured, and whether it was met."""

    name: str
    goal: str
    measured: str
    met: bool
    reading: str = ""


@dataclass
class Section:
    """A benchmark's result: its rows, the markdown that shows them, and its targets."""

    title: str
    command: str
    body: str
    rows: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def markdown(self) -> str:
        return f"## {self.title}\n\nCommand: `{self.command}`\n\n{self.body}\n"


def positive_int(text: str) -> int:
    """argparse type: an int > 0, with a message that says so."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose help is the script's docstring (usage included)."""
    first, _, rest = doc.partition("\n")
    return argparse.ArgumentParser(description=first, epilog=rest.strip(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_variants(arg_parser: argparse.ArgumentParser):
    """``--variants``: any of keras_vgg.list_models(), all by default."""
    import keras_vgg

    arg_parser.add_argument("--variants", nargs="+", default=keras_vgg.list_models(),
                            choices=keras_vgg.list_models(), metavar="VARIANT",
                            help="default: every variant")


def check_size(arg_parser: argparse.ArgumentParser, flag: str, size: int, variants):
    """An argparse error when ``size`` is below some variant's minimum input size."""
    import keras_vgg

    for name in variants:
        smallest = keras_vgg.min_input_size(name)
        if size < smallest:
            arg_parser.error(f"{flag} {size} is below {name}'s minimum input size {smallest}")


def command(script: str, args: argparse.Namespace, arg_parser: argparse.ArgumentParser) -> str:
    """The command line that reproduces ``args``: every flag spelt out, but lists at their
    default (such as every variant) and flags left unset."""
    parts = [f"python benchmarks/{script}"]
    for key, value in vars(args).items():
        default = arg_parser.get_default(key)
        if value is None or value is False or (isinstance(value, list) and value == default):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:  # a store_true flag given
            parts.append(flag)
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        parts.append(" ".join([flag, *map(str, values)]))
    return " ".join(parts)


def wall(fn):
    """``fn`` turned into a clock: calling it runs ``fn`` once and returns the seconds taken."""

    def clock():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return clock


def alternate(clocks: dict, repeats: int, warmup: int = 1) -> dict:
    """Seconds per round for each clock: ``{name: [seconds, ...]}``, after a warm-up.

    Every clock runs once per round (the order rotated each round), so drift in the
    machine's speed hits all alike; compare two clocks with :func:`paired`.
    """
    names = list(clocks)
    for name in names:
        for _ in range(warmup):
            clocks[name]()
    seconds = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(clocks[name]())
    return seconds


def median(values) -> float:
    return statistics.median(values)


def paired(numerators, denominators) -> float:
    """The median over rounds of numerator / denominator (e.g. seconds of A / seconds of B)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def gemm(m: int, k: int, n: int):
    """``(run, flops)``: a float32 ``tf.matmul`` of (m, k) @ (k, n) and its FLOPs."""
    import tensorflow as tf

    a = tf.random.normal((m, k), seed=1)
    b = tf.random.normal((k, n), seed=2)
    return (lambda: tf.matmul(a, b)), 2 * m * k * n


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() \
            else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: CPU, cores, memory, GPU, and the versions that matter."""
    import tensorflow as tf

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = "/".join(name for name, flag in (("AVX-512", "avx512f"), ("AMX", "amx_tile"))
                   if f" {flag}" in flags)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpus = len(tf.config.list_physical_devices("GPU"))
    versions = ", ".join(f"{name} {_version(name)}" for name in
                         ("tensorflow", "keras", "ai-edge-litert", "numpy"))
    return (f"{os.cpu_count()} CPU cores ({cpu_name()}, {platform.machine()}"
            f"{', ' + isa if isa else ''}), {memory:.0f} GiB, "
            f"{f'{gpus} GPU' if gpus else 'no GPU'}; Python {sys.version.split()[0]}, {versions}")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def table(header, rows, left: int = 1) -> str:
    """A markdown table: the first ``left`` columns left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def met(value: bool) -> str:
    return "met" if value else "not met"


def report(section: Section) -> Section:
    """Prints a section as it will read in the docs; returns it."""
    print(section.markdown(), flush=True)
    for target in section.targets:
        print(f"Target {target.name}: {target.goal}; measured {target.measured}: "
              f"{met(target.met)}", flush=True)
    return section


def command_line(script: str, argv=None) -> str:
    """``python benchmarks/SCRIPT ARGS`` as given (``argv`` or the process's), no --write."""
    given = argv if argv is not None else sys.argv[1:]
    return f"python benchmarks/{script} {' '.join(a for a in given if a != '--write')}".strip()


def run(arguments, measure, section, argv=None) -> Section:
    """A benchmark's main: ``arguments(argv) -> (args, command)``, ``measure(args)``,
    ``section(args, command, measured)`` printed, and written with ``--write``."""
    args, command = arguments(argv)
    result = report(section(args, command, measure(args)))
    if args.write:
        write_section(result)
    return result


def write_section(section: Section, path=ROOT / "docs" / "benchmarks.md"):
    """``section`` put into the docs: replaces its earlier text, else goes at the end."""
    text, new = path.read_text(), section.markdown()
    start = text.find(f"## {section.title}")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + new
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + new + ("" if end < 0 else text[end:])
    path.write_text(text)
