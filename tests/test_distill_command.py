"""A small-variant student (issue 31 item 3, keras_vgg.finetune.distill, `keras-vgg distill`):
another, smaller VGG trained on a run's data from the run's model (logits only, the same
Distiller as compress) and, from the same initial weights, on the labels alone; the three
models exported and compared on the same test images; a distill killed with SIGKILL resumes to
the weights of one never killed; bad input is named in one line and writes nothing; and
distill runs on every backend (the ``backend`` test).

VGG-S is the student here: VGG-F and VGG-M need at least 39 and 41 pixels, the tiny run has
32."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg.cli import main
from keras_vgg.finetune import distill, finetune
from keras_vgg.finetune.compress import EXPORTS_ELSEWHERE
from keras_vgg.finetune.compress_report import format_distill_report
from keras_vgg.stats import paired_difference
from keras_vgg.vgg_model import VGGModel
from tests.test_compress import LastWeights, assert_paired_counts_add_up
from tests.test_compress_distill import assert_exports_on_this_backend

ARGS = dict(epochs=2, quantize=["none"], verbose=0)
LOGITS_ONLY = {"on": True, "temperature": 3.0, "label_weight": 0.5, "logits_weight": 1.0,
               "feature_weight": 0.0, "features": []}
# the tiny run's VGG11-BN (5 classes, average-pooled head) and VGG-S with the same head
TEACHER = {"params": 9_234_053, "flops": 305_533_952}
VGG_S = {"params": 6_531_205, "flops": 17_800_256}
PROCESS_TIMEOUT = 600  # seconds; a tiny distill takes about 30


class FirstWeights(keras.callbacks.Callback):
    """Each fit's student weights as it begins (a Distiller's student, or the model)."""

    def __init__(self):
        super().__init__()
        self.fits = []

    def on_train_begin(self, logs=None):
        model = getattr(self.model, "student", self.model)
        self.fits.append([np.array(w) for w in model.weights])


@pytest.fixture(scope="module")
def distilled(tiny_run, tmp_path_factory):
    """``(out, report, first, last)``: VGG-S distilled from the tiny run, never interrupted;
    ``first`` and ``last``: each fit's weights at its start and at the end of its last
    epoch."""
    out = tmp_path_factory.mktemp("distill") / "student"
    first, last = FirstWeights(), LastWeights()
    report = distill(tiny_run, "vgg_s", out, callbacks=[first, last], **ARGS)
    keras.backend.clear_session()
    return out, report, first.fits, last.fits


def test_distill_trains_a_smaller_variant_exports_and_reports(tiny_run, distilled):
    out, report, first, last = distilled
    assert report["variants"] == {"teacher": "vgg11_bn", "distilled": "vgg_s",
                                  "labels_only": "vgg_s"}
    assert report["params"] == {"teacher": TEACHER["params"], "distilled": VGG_S["params"],
                                "labels_only": VGG_S["params"]}
    assert report["flops"] == {"teacher": TEACHER["flops"], "distilled": VGG_S["flops"],
                               "labels_only": VGG_S["flops"]}
    assert (report["student"], report["epochs"], report["lr"]) == ("vgg_s", 2, 0.001)
    assert report["distillation"] == LOGITS_ONLY
    assert (report["held_out"], report["held_out_images"]) == ("test", 15)
    # both students start from the same weights; training parts them
    assert len(first) == len(last) == 2
    for a, b in zip(*first, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(*last))
    logs = [(out / fit / "training_log.csv").read_text().splitlines()[0].split(",")
            for fit in ("student", "labels_only")]
    assert "distillation_loss" in logs[0] and "distillation_loss" not in logs[1]
    # the figures are the predictions' own
    saved = np.load(out / "predictions.npz")
    labels = saved["labels"]
    for name in ("teacher", "distilled", "labels_only"):
        assert report["accuracy"][name] == float(np.mean(saved[name] == labels))
    assert report["teacher_minus_distilled"] == paired_difference(
        labels, saved["teacher"], saved["distilled"]).to_json()
    assert report["labels_only_minus_distilled"] == paired_difference(
        labels, saved["labels_only"], saved["distilled"]).to_json()
    for key in ("teacher_minus_distilled", "labels_only_minus_distilled"):
        assert_paired_counts_add_up(report[key])
    assert report["distillation_helped"] in ("yes", "no", "undecided")
    assert json.loads((out / "distill_report.json").read_text()) == report
    # the student saved is a plain VGG-S; each TFLite file beside its Keras model
    student = keras.saving.load_model(out / "best.keras", safe_mode=True)
    assert type(student) is VGGModel and student.variant == "vgg_s"
    assert student.class_names == keras_vgg.load_model(tiny_run).class_names
    assert [row["file"] for row in report["exports"]] == ["model_float32.tflite"]
    for folder in ("export", "reference_export", "labels_only_export"):
        assert (out / folder / "model_float32.tflite").stat().st_size > 0
    row = report["exports"][0]
    assert row["size_bytes"]["teacher"] > row["size_bytes"]["distilled"]
    assert row["agreement"] == {"teacher": 1.0, "distilled": 1.0, "labels_only": 1.0}
    assert json.loads((out / "state.json").read_text()) == {
        "settings": {"student": "vgg_s", "epochs": 2, "lr": 0.001, "quantize": ["none"],
                     "distill": {"temperature": 3.0, "feature_weight": 0.0,
                                 "label_weight": 0.5}},
        "steps_done": 2, "complete": True}
    assert not (out / "cache").exists()
    assert not (out / "labels_only" / "backup").exists()


KILLED_DISTILL = textwrap.dedent("""
    import json, os, signal, sys
    import keras
    from keras_vgg.finetune import distill

    class KillNine(keras.callbacks.Callback):  # SIGKILL: no cleanup, no exception handler
        fits = 0
        def on_train_begin(self, logs=None):
            self.fits += 1
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_begin(self, batch, logs=None):
            if [self.fits, self.epoch, batch] == [2, 1, 1]:
                os.kill(os.getpid(), signal.SIGKILL)

    distill(sys.argv[1], "vgg_s", sys.argv[2], epochs=2, quantize=["none"],
            callbacks=[KillNine()], verbose=0)
""")


def test_a_distill_killed_with_sigkill_resumes_to_the_weights_of_one_never_killed(
        tiny_run, distilled, tmp_path):
    """SIGKILL in the labels-only fit, batch 1 of its second epoch; `keras-vgg distill
    --resume` reads the distilled fit back, restores the control's epoch-0 backup and ends,
    to the bit, as the distill never killed (both students, the report's figures)."""
    out = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", KILLED_DISTILL, str(tiny_run), str(out)],
                            capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state = json.loads((out / "state.json").read_text())
    assert state["steps_done"] == 1 and not state["complete"]
    assert (out / "labels_only" / "backup").is_dir()
    assert main(["distill", str(tiny_run), "--student", "vgg_s", "-o", str(out)]) == 2
    assert main(["distill", str(tiny_run), "--student", "vgg_s", "-o", str(out), "--resume",
                 "--epochs", "3", "--quantize", "none"]) == 2  # other settings
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    resumed = subprocess.run([sys.executable, "-m", "keras_vgg.cli", "distill", str(tiny_run),
                              "--student", "vgg_s", "-o", str(out), "--epochs", "2",
                              "--quantize", "none", "--resume"], capture_output=True,
                             text=True, timeout=PROCESS_TIMEOUT, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference, expected, _, _ = distilled
    for fit in ("student", "labels_only"):
        log = (out / fit / "training_log.csv").read_text().splitlines()
        assert log == (reference / fit / "training_log.csv").read_text().splitlines()
    for name in ("best.keras", "labels_only/best.keras"):
        for a, b in zip(keras_vgg.load_model(out / name).weights,
                        keras_vgg.load_model(reference / name).weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    report = json.loads((out / "distill_report.json").read_text())
    for key in ("accuracy", "teacher_minus_distilled", "labels_only_minus_distilled",
                "distillation_helped", "params", "flops"):
        assert report[key] == expected[key], key
    assert main(["distill", str(tiny_run), "--student", "vgg_s", "-o", str(out), "--resume",
                 "--epochs", "2", "--quantize", "none"]) == 2  # complete


@pytest.mark.parametrize("student,message", [
    ("vgg16", r"^Expected `student` to be smaller than the teacher \(9,234,053 parameters, "
              r"0\.306 GFLOPs at 32x32\)\. Received: student='vgg16' \(14,717,253 "
              r"parameters, 0\.626 GFLOPs\)$"),
    ("vgg13_bn", r"Received: student='vgg13_bn' \(9,419,333 parameters, 0\.457 GFLOPs\)$"),
    ("vgg_q", r"^Unknown VGG variant\. Expected one of \[.*\)\. Received: student='vgg_q'\. "
              r"Did you mean 'vgg_s'\?$"),
    ("vgg_f", r"^Expected `student` to be a variant that takes the run's 32x32 images \(vgg_f "
              r"needs at least 39x39\)\. Received: student='vgg_f'$"),
])
def test_a_student_the_run_cannot_teach_is_named_and_nothing_written(
        tiny_run, tmp_path, capsys, student, message):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=message):
        distill(tiny_run, student, out)
    assert main(["distill", str(tiny_run), "--student", student, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"student='{student}'" in err
    assert not out.exists() and not (tiny_run / "distilled").exists()


def test_bad_arguments_and_a_folder_that_is_not_a_run_write_nothing(tiny_run, tmp_path,
                                                                   capsys):
    out = tmp_path / "never"
    for kwargs, message in (
            ({"epochs": 0}, r"^Expected `epochs` to be a positive int. Received: epochs=0$"),
            ({"lr": -1.0}, r"^Expected `lr` to be a positive number. Received: lr=-1.0$"),
            ({"temperature": 0}, r"Received: temperature=0$"),
            ({"quantize": ["int2"]}, r"Received: quantize=\['int2'\]$"),
            ({"resume": True}, r"^Nothing to resume: expected `out` \(-o/--output\) to be a "
                               r"distill folder with state.json")):
        with pytest.raises(ValueError, match=message):
            distill(tiny_run, "vgg_s", out, **kwargs)
    with pytest.raises(ValueError, match=r"^Expected `student` to be a variant name. "
                                         r"Received: student=3$"):
        distill(tiny_run, 3, out)
    not_a_run = tmp_path / "photos"
    not_a_run.mkdir()
    assert main(["distill", str(not_a_run), "--student", "vgg_s"]) == 2
    err = capsys.readouterr().err
    assert err == ("keras-vgg distill: Expected `run` to be a finished fine-tune run folder "
                   f"(recipe.json and best.keras). Received: run='{not_a_run}'\n")
    assert not out.exists() and list(not_a_run.iterdir()) == []


def test_the_command_line_maps_its_flags(tiny_run, capsys, monkeypatch):
    module = sys.modules["keras_vgg.finetune.distill"]  # the package's name is the function
    calls = []
    monkeypatch.setattr(module, "distill", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main(["distill", str(tiny_run), "--student", "vgg_s"]) == 0
    assert calls[-1] == ((str(tiny_run), "vgg_s", None), {
        "epochs": None, "lr": None, "temperature": None, "quantize": ["none", "int8"],
        "overwrite": False, "resume": False})
    assert main(["distill", str(tiny_run), "--student", "VGG-S", "-o", "x", "--epochs", "4",
                 "--lr", "0.01", "--temperature", "5", "--quantize", "int8", "--resume"]) == 0
    assert calls[-1] == ((str(tiny_run), "VGG-S", "x"), {
        "epochs": 4, "lr": 0.01, "temperature": 5.0, "quantize": ["int8"],
        "overwrite": False, "resume": True})
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    words = " ".join(capsys.readouterr().out.split())
    assert "--student VARIANT a variant from `keras-vgg list` with no more parameters" in words
    assert "(default RUN/distilled)" in words


def test_the_report_prints_as_its_table(distilled, tiny_run, capsys):
    _, report, _, _ = distilled
    text = " ".join(format_distill_report(report).split())
    assert text.startswith("figure teacher vgg_s distilled vgg_s labels only teacher/distilled")
    assert "params (M) 9.23 6.53 6.53 1.41x" in text and "GFLOPs 0.31 0.02 0.02 17.16x" in text
    assert "Teacher minus distilled student, paired on the 15 test images:" in text
    assert "Labels-only minus distilled student, paired on the 15 test images:" in text
    assert (f"Distillation helped (the interval of labels-only minus distilled below 0): "
            f"{report['distillation_helped']}.") in text


@pytest.mark.backend
def test_distill_runs_on_this_backend(tmp_path):
    """A smaller student distilled for one epoch, and its control, on every backend; the
    TFLite files only on TensorFlow (elsewhere the report says how to export)."""
    from tests.test_backends import tiny

    run = finetune(tiny({"phases.1.epochs": 0}), run_dir=tmp_path / "run", verbose=0).run_dir
    report = distill(run, "vgg_s", tmp_path / "small", epochs=1, quantize=["none"], verbose=0)
    assert report["distillation"] == LOGITS_ONLY
    assert report["params"]["distilled"] < report["params"]["teacher"]
    assert report["variants"] == {"teacher": "vgg11", "distilled": "vgg_s",
                                  "labels_only": "vgg_s"}
    student = keras.saving.load_model(tmp_path / "small" / "best.keras", safe_mode=True)
    assert type(student) is VGGModel and student.variant == "vgg_s"
    assert_exports_on_this_backend(report, tmp_path / "small")


def test_checking_the_student_leaves_the_users_keras_session_alone(tiny_run):
    """The student is built once to weigh it against the teacher; the user's global dtype
    policy survives (keras.backend.clear_session(), called there before, reset it to
    float32)."""
    from keras_vgg.finetune.distill import _settings
    from keras_vgg.finetune.run_folder import read_recipe
    from keras_vgg.run_folder import RunFolder

    recipe, teacher = read_recipe(RunFolder(tiny_run)), keras_vgg.load_model(tiny_run)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        settings = _settings(recipe, teacher, "vgg_s", (None, None, None, ["none"]))
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")
    assert settings.student == "vgg_s"
