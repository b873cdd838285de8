"""Quiet by default: TensorFlow's native start-up lines are hidden, on the command line and in
Python alike; ``KERAS_VGG_VERBOSE=1`` (or ``keras-vgg --verbose``) shows them.

What is hidden: the lines TensorFlow, XLA and LiteRT write from C++ as they load and start
(absl's "All log messages before absl::InitializeLog()", cudart and ``cuInit`` errors on a
machine without a GPU, the oneDNN banner, cpu_feature_guard's "This TensorFlow binary is
optimized...", XNNPACK), and the INFO/WARNING records of the ``tensorflow`` and ``absl``
Python loggers. Nothing of keras_vgg's own, no Python warning, no traceback is hidden.

- **Command line** (``keras-vgg`` without ``--verbose``): descriptor 2 is pointed at
  /dev/null and Python's ``sys.stderr`` at a copy of the real one, so the lines that
  ``TF_CPP_MIN_LOG_LEVEL`` cannot reach go too; the command's own messages still show.
- **Library** (``import keras_vgg``): descriptor 2 is left alone (pytest's capture and
  notebooks own it); ``TF_CPP_MIN_LOG_LEVEL`` defaults to 3 (a value you set wins) and the
  two Python loggers go to ERROR. Both act only when set before TensorFlow loads, so they
  change nothing if TensorFlow was imported first.

To see every line: ``KERAS_VGG_VERBOSE=1 python ...`` (or ``TF_CPP_MIN_LOG_LEVEL=0``), or
``keras-vgg --verbose ...``. Imports nothing of ours.

Example:
    >>> from keras_vgg._quiet import launched_as_cli, verbose
    >>> launched_as_cli(["/usr/bin/python", "-c"]), verbose({"KERAS_VGG_VERBOSE": "1"})
    (False, True)
"""

from __future__ import annotations

import logging
import os
import sys

VERBOSE_FLAG = "--verbose"
VERBOSE_VARIABLE = "KERAS_VGG_VERBOSE"  # 1: TensorFlow's native log lines show
QUIET_LOGGERS = ("tensorflow", "absl")


def verbose(environ=None) -> bool:
    """True when ``KERAS_VGG_VERBOSE`` is set to anything but "", 0, false or no."""
    environ = os.environ if environ is None else environ
    return environ.get(VERBOSE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def quiet_before_tensorflow() -> None:
    """What ``import keras_vgg`` does first: nothing with ``KERAS_VGG_VERBOSE=1``; on the
    command line, :func:`silence_native_logs`; in Python, :func:`quiet_library`."""
    if verbose():
        return
    if launched_as_cli():
        silence_native_logs()
    else:
        quiet_library()


def quiet_library() -> None:
    """The library's quiet: ``TF_CPP_MIN_LOG_LEVEL=3`` unless set, TensorFlow's and absl's
    Python loggers at ERROR; descriptor 2 untouched."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def launched_as_cli(argv=None) -> bool:
    """True for ``keras-vgg ...`` (or ``python -m keras_vgg.cli``) without ``--verbose``."""
    if argv is None:
        argv = sys.argv
        if getattr(sys, "orig_argv", [])[1:3] == ["-m", "keras_vgg.cli"]:  # argv[0] is "-m"
            argv = ["cli.py"] + argv[1:]
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
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
