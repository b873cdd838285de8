"""Quiet by default on the command line: TensorFlow's native log lines go nowhere.

TensorFlow, XLA and LiteRT write their start-up and INFO lines (absl's "All log messages
before absl::InitializeLog()", cudart, cpu_feature_guard, cuInit, XNNPACK) straight to file
descriptor 2 from C++, so neither ``TF_CPP_MIN_LOG_LEVEL`` nor Python's logging hides them
all. When ``keras-vgg`` runs without ``--verbose``, descriptor 2 is pointed at /dev/null and
Python's ``sys.stderr`` at a copy of the real one: the command's own messages, warnings and
tracebacks still show; native log lines do not. Importing keras_vgg as a library changes
nothing. Imports nothing of ours.

Example:
    >>> from keras_vgg._quiet import launched_as_cli
    >>> launched_as_cli(["/usr/bin/python", "-c"])
    False
"""

from __future__ import annotations

import logging
import os
import sys

VERBOSE_FLAG = "--verbose"


def launched_as_cli(argv=None) -> bool:
    """True for ``keras-vgg ...`` (or ``python -m keras_vgg.cli``) without ``--verbose``."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return False
    program = os.path.basename(argv[0])
    return program in ("keras-vgg", "cli.py") and VERBOSE_FLAG not in argv[1:]


def silence_native_logs() -> None:
    """Point descriptor 2 at /dev/null, keep ``sys.stderr`` on the real stderr, and turn
    TensorFlow's and absl's Python loggers down to errors. Call before TensorFlow loads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        real = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, AttributeError, ValueError):  # no real descriptor 2 (embedded, captured)
        return
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(real, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None))
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
