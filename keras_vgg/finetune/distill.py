"""A small-variant student: another, smaller VGG (``--student vgg_s``) trained on a fine-tuned
run's data from the run's model (the teacher), exported and compared with the teacher and with
the same student trained on the labels alone.

The student is the run's recipe with ``model.name`` the student's variant, from random
weights (nothing downloads) at the run's image size and with the run's head, trained in one
phase of every block: ``epochs`` (default the run's phases' epochs, added up) at ``lr``
(default its first phase's). It learns through the same Distiller as compress
(``keras_vgg.finetune.distillation``): the labels' cross-entropy x 0.5 + the teacher's class
scores softened at ``temperature`` x 0.5. Only the logits: the student's channels are not
the teacher's (another architecture, not a pruning of it), so no block output is compared
(feature weight 0).

The control, the same student trained on the labels alone from the same initial weights
with the same data order, is trained in the same command: the report pairs the two on the
run's test split (else its validation split), image by image, and says whether distillation
helped (``labels_only_minus_distilled``: its interval below 0). The teacher is paired with
the student too (``teacher_minus_distilled``). A student with more parameters or FLOPs than
the teacher is refused before anything is written.

``OUT`` (default ``RUN/distilled``) holds ``best.keras`` (the distilled student),
``student/`` and ``labels_only/`` (each fit's folder: best.keras, training_log.csv),
``export/``, ``labels_only_export/`` and ``reference_export/`` (the TFLite files of the
student, the control and the teacher, checked on the same images), ``distill_report.json``,
``predictions.npz`` (the three models' classes on those images) and ``state.json``;
``resume=True`` continues a killed distill (a fit done is read back, the other resumes from
its last epoch), deterministic as a run is. Under ``KERAS_BACKEND=jax`` or ``torch`` there
are no TFLite files and the report says how to export.

Example (a tiny run on the built-in shapes, VGG-S at 32x32: VGG-F needs at least 39x39):
    >>> import tempfile
    >>> from keras_vgg.finetune import distill, finetune, load_recipe
    >>> recipe = load_recipe("builtin", ["phases.0.epochs=1", "data.builtin_images_per_class=8",
    ...                                  "tensorboard=false"])
    >>> run = finetune(recipe, run_dir=tempfile.mkdtemp() + "/run", verbose=0).run_dir
    >>> report = distill(run, "vgg_s", quantize=["none"], verbose=0)
    >>> report["params"]["distilled"] < report["params"]["teacher"], report["held_out_images"]
    (True, 15)
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass

import keras

from keras_vgg.configs import get_config, min_input_size
from keras_vgg.finetune import data as data_lib
from keras_vgg.finetune.compress import (EXPORTS_ELSEWHERE, PREDICTIONS, check_out,
                                         checked_lr, checked_quantize, checked_temperature,
                                         export_models, held_out, predicted_classes, run_of,
                                         write_predictions)
from keras_vgg.finetune.compress_report import format_distill_report
from keras_vgg.finetune.context import RunContext
from keras_vgg.finetune.determinism import deterministic_kernels
from keras_vgg.finetune.distillation import DistillSettings, Teacher
from keras_vgg.finetune.model import build_finetune_model
from keras_vgg.finetune.phase import run_phase
from keras_vgg.finetune.recipe import Recipe
from keras_vgg.preprocessing import model_preprocessing
from keras_vgg.pruning import model_cost
from keras_vgg.run_folder import RunFolder, RunState
from keras_vgg.saving import load_model
from keras_vgg.stats import paired_difference

REPORT = "distill_report.json"
FITS = ("student", "labels_only")  # the distilled student's fit, then the control's
MODELS = ("teacher", "distilled", "labels_only")
EXPORTS = {"teacher": "reference_export", "distilled": "export",
           "labels_only": "labels_only_export"}


@dataclass(frozen=True)
class StudentSettings:
    """A distill's settings, checked; ``state.json`` records them and a resumed distill must
    have the same."""

    student: str  # the variant's name
    epochs: int
    lr: float
    quantize: list
    distill: dict  # DistillSettings as a dict (logits only)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def matches(self, saved: dict) -> bool:
        return saved == self.to_json()


@dataclass(frozen=True)
class _Job:
    """A distill about to run: the run it reads and its recipe and model (the teacher), the
    output folder, the settings, the state to resume (None: a fresh start), the fits'
    callbacks and verbosity."""

    source: RunFolder
    recipe: Recipe
    teacher: keras.Model
    out: RunFolder
    settings: StudentSettings
    resumed: RunState | None
    callbacks: tuple
    verbose: int


def distill(run, student, out=None, *, epochs=None, lr=None, temperature=None,
            quantize=("none", "int8"), overwrite=False, resume=False, callbacks=(),
            verbose=2) -> dict:
    """Train ``student`` (a smaller variant) from ``run``'s model and from the labels, and
    the same student on the labels alone; export the three models and report; returns the
    report.

    Args:
        run: a finished fine-tune run folder (``recipe.json`` and ``best.keras``).
        student: a variant name (``keras_vgg.list_models()``, or ``"VGG-F"``...) with no
            more parameters or FLOPs than the run's model at its image size.
        out: the output folder; default ``run/distilled``.
        epochs, lr: the students' training (default the run's phases' epochs added up, at
            its first phase's learning rate).
        temperature: the softening of the teacher's class scores (default the run's
            ``compress.temperature``, 3.0).
        quantize: the TFLite modes exported and compared (``keras_vgg.export.QUANTIZE``).
        overwrite, resume: replace an existing ``out``, or continue an interrupted one.
        callbacks: more Keras callbacks for each fit.
    """
    source = RunFolder(run)
    recipe, teacher = run_of(source)
    out = RunFolder(out) if out is not None else source.distilled
    settings = _settings(recipe, teacher, student, (epochs, lr, temperature, quantize))
    started = time.time()
    resumed = check_out(out, "distill", settings, overwrite, resume)
    job = _Job(source, recipe, teacher, out, settings, resumed, tuple(callbacks), verbose)
    with deterministic_kernels(recipe.deterministic):
        report, state = _distill(job)
    report["seconds"] = round(time.time() - started, 1)
    out.write(REPORT, report)
    out.complete(state)
    if verbose:
        print(format_distill_report(report))
        print(f"Distilled student: {out.best}; report: {out / REPORT}")
    return report


def student_recipe(recipe: Recipe, variant: str, epochs=1, lr=1e-3) -> Recipe:
    """The run's recipe for the student: its variant from random weights, one phase of
    every block (no feature cache: the base trains)."""
    return recipe.but({"model.name": variant, "model.weights": None,
                       "phases": [{"epochs": epochs, "lr": lr, "freeze": "none"}],
                       "feature_cache": False})


def _settings(recipe: Recipe, teacher, student, asked: tuple) -> StudentSettings:
    """Every argument checked, the student built once to weigh it against the teacher
    (nothing written yet). ``asked``: (epochs, lr, temperature, quantize), None the run's."""
    epochs, lr, temperature, quantize = asked
    if not isinstance(student, str):
        raise ValueError(f"Expected `student` to be a variant name. Received: student={student!r}")
    try:
        variant = get_config(student).name
    except ValueError as error:  # its did-you-mean, naming the argument as typed
        raise ValueError(str(error).replace("Received: variant=", "Received: student=")) from None
    size = recipe.model.image_size
    if min_input_size(variant) > size:
        raise ValueError(f"Expected `student` to be a variant that takes the run's {size}x"
                         f"{size} images ({variant} needs at least {min_input_size(variant)}x"
                         f"{min_input_size(variant)}). Received: student={student!r}")
    epochs = sum(p.epochs for p in recipe.phases) if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Expected `epochs` to be a positive int. Received: epochs={epochs!r}")
    lr = checked_lr(recipe.phases[0].lr if lr is None else lr)
    temperature = checked_temperature(
        recipe.compress.temperature if temperature is None else temperature)
    settings = StudentSettings(variant, epochs, lr, checked_quantize(quantize),
                               dataclasses.asdict(DistillSettings(temperature, 0.0)))
    model = build_finetune_model(student_recipe(recipe, variant), teacher.output_shape[-1])
    small, large = model_cost(model), model_cost(teacher)
    if small.params > large.params or small.flops > large.flops:
        raise ValueError(
            f"Expected `student` to be smaller than the teacher ({large.params:,} parameters, "
            f"{large.flops / 1e9:.3g} GFLOPs at {size}x{size}). Received: student={student!r} "
            f"({small.params:,} parameters, {small.flops / 1e9:.3g} GFLOPs)")
    return settings


def _distill(job: _Job):
    """The two fits, then ``(report, state)``; ``out`` checked, deterministic kernels on."""
    out, settings = job.out, job.settings
    # the data before any folder: a run whose data is gone leaves nothing behind
    splits = data_lib.load_data(job.recipe, cache_dir=out.cache, verbose=job.verbose)
    state = job.resumed
    if state is None:
        out.start()
        state = RunState.of_compress(settings.to_json())
        out.save_state(state)
    out.cache.mkdir(exist_ok=True)
    data_lib.decode_once(splits, job.verbose)
    recipe = student_recipe(job.recipe, settings.student, settings.epochs, settings.lr)
    run = RunContext(recipe, out, splits, model_preprocessing(job.teacher),
                     callbacks=job.callbacks, verbose=job.verbose)
    teacher = Teacher.of(load_model(job.source.path), DistillSettings(**settings.distill))
    for k, taught in enumerate((teacher, None), 1):
        state = _fit(run.but(teacher=taught), k, state)
    shutil.copyfile(RunFolder(out / FITS[0]).best, out.best)
    return _report(run.but(teacher=teacher), job), state


def _fit(run: RunContext, k, state: RunState) -> RunState:
    """Fit ``k`` (1: distilled, 2: labels only) in its folder of ``run.folder``, the
    student built from the recipe's seed (both fits start from the same weights); a fit
    done before (resume) is skipped."""
    if state.steps_done >= k:
        return state
    folder = RunFolder(run.folder / FITS[k - 1])
    keras.utils.set_random_seed(run.recipe.seed)
    names = run.splits.class_names
    model = build_finetune_model(run.recipe, len(names), names)
    model.preprocessing = run.mode  # the teacher's: both read the same images
    folder.path.mkdir(exist_ok=True)
    if run.verbose:
        how = "from the teacher and the labels" if run.teacher else "on the labels alone"
        print(f"Fit {k}/2: {run.recipe.model.name}, {run.recipe.phases[0].epochs} epochs "
              f"{how}.", flush=True)
    run_phase(run.but(folder=folder), 0, model, RunState())
    state = state.step_done(k)
    run.folder.save_state(state)
    folder.drop_scratch()  # its backup: the fit is done
    return state


def _report(run: RunContext, job: _Job) -> dict:
    """The three models scored on the same images and exported; the accuracies as paired
    differences (teacher minus student, labels only minus distilled)."""
    out, splits, settings = run.folder, run.splits, job.settings
    models = dict(zip(MODELS, (job.teacher, load_model(out.best),
                               load_model(RunFolder(out / FITS[1]).best))))
    split, split_name = held_out(splits)
    labels = splits.counted(split)
    classes = {name: predicted_classes(model, run, split) for name, model in models.items()}
    write_predictions(out / PREDICTIONS, labels=labels, **classes)
    teacher_minus = paired_difference(labels, classes["teacher"], classes["distilled"])
    control_minus = paired_difference(labels, classes["labels_only"], classes["distilled"])
    costs = {name: model_cost(model) for name, model in models.items()}
    tflite = keras.backend.backend() == "tensorflow"  # TFLite files are TensorFlow's
    exports = export_models(run, settings.quantize, {
        EXPORTS[name]: model for name, model in models.items()}, len(labels)) if tflite else {}
    return {"run": str(job.source), "model": str(out.best), **settings.to_json(),
            "variants": {name: model.variant for name, model in models.items()},
            "params": {name: cost.params for name, cost in costs.items()},
            "flops": {name: cost.flops for name, cost in costs.items()},
            "accuracy": {"teacher": teacher_minus.first.value,
                         "distilled": teacher_minus.second.value,
                         "labels_only": control_minus.first.value},
            "held_out": split_name, "held_out_images": teacher_minus.count,
            "teacher_minus_distilled": teacher_minus.to_json(),
            "labels_only_minus_distilled": control_minus.to_json(),
            "distillation_helped": helped(control_minus.low, control_minus.high),
            "distillation": run.teacher.to_json(),
            "exports": _export_rows(exports) if tflite else [],
            "exports_skipped": None if tflite else EXPORTS_ELSEWHERE.format(
                backend=keras.backend.backend(), model=out.best)}


def helped(low, high) -> str:
    """Whether distillation helped, from the 95% interval of labels-only minus distilled:
    "yes" (all of it below 0), "no" (all above), else "undecided".

    Example:
        >>> helped(-0.03, -0.01), helped(-0.01, 0.02), helped(0.01, 0.04)
        ('yes', 'undecided', 'no')
    """
    return "yes" if high < 0 else "no" if low > 0 else "undecided"


def _export_rows(exports: dict) -> list:
    """One row per TFLite file: each model's size, latency and top-1 agreement with its own
    Keras model."""
    per_model = {name: exports[EXPORTS[name]]["exports"] for name in MODELS}
    rows = []
    for files in zip(*per_model.values()):
        row = dict(zip(MODELS, files))
        rows.append({"file": files[1]["file"], "quantize": files[1]["quantize"],
                     **{figure: {name: row[name][key] for name in MODELS} for figure, key in (
                         ("size_bytes", "size_bytes"), ("latency_ms", "latency_ms"),
                         ("agreement", "top1_agreement"))}})
    return rows
