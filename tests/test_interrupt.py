"""Ctrl-C in `keras-vgg finetune` (issue 28): one line on stderr saying what was saved and the
exact command that continues the run, exit 130, and that command finishes the run. The log of
a run whose stdout is not a terminal has one line per epoch and no carriage returns."""

import json
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from keras_vgg.finetune.report import read_log
from keras_vgg.finetune.train import fit_verbosity

# Enough epochs that Ctrl-C, sent as soon as the first is logged, lands mid-run: the rest
# take seconds (a few steps and two saves each), the poll 0.05 s. (It was 20: the resumed
# run's extra 12 epochs cost about 12 s of CI.)
EPOCHS = 8
# The tiny recipe of tests/test_finetune_train.py, on the command line: 32x32, 5 classes of
# 6 shapes, epochs of a few steps (enough of them that Ctrl-C lands mid-run).
TINY = ["--model", "vgg11", "--image-size", "32", "--batch-size", "8",
        "data.builtin_images_per_class=6", "data.augment=flip", f"phases.0.epochs={EPOCHS}",
        "tensorboard=false", "early_stopping_patience=0", "reduce_lr_patience=0"]
CLI = [sys.executable, "-m", "keras_vgg.cli"]
TIMEOUT = 600  # seconds; the whole tiny run takes about 30


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """(the interrupted process's exit code, stdout, stderr and epochs logged, the run
    folder, the resumed process)."""
    run = tmp_path_factory.mktemp("interrupt") / "run"
    # SIGINT as a terminal delivers it: tools/test_matrix.sh runs pytest in the background,
    # where the shell ignores SIGINT and every child would inherit that (Python then keeps
    # SIG_IGN, and Ctrl-C would never arrive)
    process = subprocess.Popen(CLI + ["finetune", *TINY, "--run-dir", str(run)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + TIMEOUT
    while not read_log(run / "training_log.csv") and process.poll() is None:
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=TIMEOUT)
    done = len(read_log(run / "training_log.csv"))
    line = err.strip().splitlines()[-1]
    resume = shlex.split(line.split("continue the run with: ", 1)[1])
    assert resume[0] == "keras-vgg"
    resumed = subprocess.run(CLI + resume[1:], capture_output=True, text=True, timeout=TIMEOUT)
    return (process.returncode, out, err, done), run, resumed


def test_ctrl_c_says_what_was_saved_and_how_to_resume(interrupted):
    (code, _, err, done), run, _ = interrupted
    assert 1 <= done < EPOCHS
    epochs = f"epochs 1-{done}" if done > 1 else "epoch 1"
    assert code == 130
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        f"keras-vgg finetune: interrupted: {epochs} of {EPOCHS} saved in {run} (best.keras "
        f"and the last finished epoch's checkpoint); continue the run with: keras-vgg "
        f"finetune --resume --run-dir {run}"]


def test_the_printed_resume_command_finishes_the_run(interrupted):
    _, run, resumed = interrupted
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [row["epoch"] for row in read_log(run / "training_log.csv")] == list(range(EPOCHS))
    assert json.loads((run / "state.json").read_text())["complete"] is True
    assert json.loads((run / "metrics.json").read_text())["final"]["epochs_run"] == EPOCHS


def test_a_log_has_one_line_per_epoch_and_no_carriage_returns(interrupted):
    """stdout is a pipe here, not a terminal: Keras's one-line-per-epoch form (verbose=2)."""
    (_, out, _, _), _, resumed = interrupted
    for text in (out, resumed.stdout):
        assert "\r" not in text and "\b" not in text
    started = [int(n) for n in re.findall(rf"^Epoch (\d+)/{EPOCHS}$", resumed.stdout, re.M)]
    assert started == list(range(started[0], EPOCHS + 1))
    # one summary line per epoch: "N/N - 0s - 12ms/step - accuracy: ..."
    assert len(re.findall(r"^\d+/\d+ - .*val_accuracy", resumed.stdout, re.M)) == len(started)


class _Stdout:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty,expected", [(True, 1), (False, 2)])
def test_a_terminal_gets_the_progress_bar_within_each_epoch(monkeypatch, tty, expected):
    monkeypatch.setattr(sys, "stdout", _Stdout(tty))
    assert fit_verbosity("auto") == expected
    assert fit_verbosity(0) == 0 and fit_verbosity(2) == 2
