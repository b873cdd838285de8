"""Compress a fine-tuned run: prune its model (``keras_vgg.pruning``), fine-tune it again on
the run's own data, export both models and report what pruning gained.

One-shot (``steps=1``): prune to the target, fine-tune. Iterative (``steps=N``): N steps,
each pruning to the next of N targets spaced geometrically down to the final one and
fine-tuning (as Li et al. 2017 retrain after each round). Each step is a phase of its own
with the recipe's callbacks (best checkpoint by val_accuracy, CSV log, early stopping,
learning-rate schedule, BackupAndRestore), in its own folder; ``resume=True`` continues
an interrupted compress where it stopped.

Each step's fine-tuning distils by default (``distill``, ``compress.distill``): the pruned
model learns from the unpruned one (the run's best.keras, frozen) as well as from the
labels, through Keras's ``Distiller`` (``keras_vgg.finetune.distillation``: the softened class
scores at ``temperature``, and each block's output against the teacher's channels it was
pruned from). ``distill=False`` (``--no-distill``) fine-tunes on the labels alone; the
report says which, and ``compared`` pairs two compresses of one run image by image.

Runs are deterministic: each step starts from the recipe's ``seed`` with its
``deterministic`` kernels, and its data order and augmentation come from (seed, epoch), so
the same compress of the same run ends with the same weights, and a resumed one (it
continues from the last completed epoch) with the weights of one never interrupted.

The pruned and the unpruned model are compared on the same images: the run's test split,
else its validation split (the report says which). The comparison is a paired difference
(``keras_vgg.stats.paired_difference``: unpruned minus pruned, its 95% interval, how many
images changed answer), and "within 1 point of the unpruned model" (``DROP_MARGIN``, the
default) is judged on its interval: met, missed, or undecided when the split is too small to tell.
The margin is ``max_drop`` points (the recipe's ``compress.max_drop``, 1 point unless it
says); when the pruned model loses more than that on the held-out images, the report's
``accuracy_warning`` says so, and so does the console (or a ``UserWarning`` when
``verbose=0``): a compress never loses accuracy silently.

``OUT`` (default ``RUN/compressed``) holds ``best.keras`` (the pruned, fine-tuned model),
``step1/``..., ``export/`` (its TFLite files and export report), ``reference_export/``
(the unpruned model's, on the same images), ``compress_report.json``, ``predictions.npz``
(both models' classes on those images), ``widths.png`` and ``state.json``. Every argument
is checked, and the target planned, before anything is written. The TFLite files are
TensorFlow's: under ``KERAS_BACKEND=jax`` or ``torch`` compress prunes, fine-tunes and
compares, and the report says how to export (``exports_skipped``).

Example (a tiny run on the built-in shapes):
    >>> import tempfile
    >>> from keras_vgg.finetune import compress, finetune, load_recipe
    >>> recipe = load_recipe("builtin", ["phases.0.epochs=1", "data.builtin_images_per_class=8",
    ...                                  "tensorboard=false"])
    >>> run = finetune(recipe, run_dir=tempfile.mkdtemp() + "/run", verbose=0).run_dir
    >>> report = compress(run, flops=0.3, epochs=1, quantize=["none"], verbose=0)
    >>> report["flops"]["after"] / report["flops"]["before"] <= 0.3
    True
    >>> report["held_out"], report["held_out_images"]  # 3 of each class's 8 held out for test
    ('test', 15)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_vgg._helpers import OutputExists
from keras_vgg.batch_norm import inference_model
from keras_vgg.export import QUANTIZE, export
from keras_vgg.finetune import data as data_lib
from keras_vgg.finetune.compress_report import format_compress_report, plot_widths
from keras_vgg.finetune.recipe import Recipe
from keras_vgg.finetune.context import RunContext
from keras_vgg.finetune.determinism import deterministic_kernels
from keras_vgg.finetune.distillation import DistillSettings, Teacher
from keras_vgg.finetune.latency import (LatencyTable, measure_latency_table,
                                        plan_for_latency, read_latency_table)
from keras_vgg.finetune.sensitivity import (Sensitivity, measure_sensitivity,
                                            plan_by_sensitivity)
from keras_vgg.finetune.phase import inference_precision, run_phase
from keras_vgg.finetune.run_folder import read_recipe
from keras_vgg.preprocessing import model_preprocessing
from keras_vgg.choices import PLANS
from keras_vgg.pruning import CRITERIA, conv_names, conv_widths, model_cost, plan_widths, prune
from keras_vgg.run_folder import RunFolder, RunState
from keras_vgg.saving import load_model
from keras_vgg.stats import PairedDifference, paired_difference

REPORT = "compress_report.json"
SENSITIVITY = "sensitivity.json"  # --plan sensitivity: each conv's measured losses
LATENCY = "latency.json"  # a latency target: each conv's measured time (LatencyTable)
PREDICTIONS = "predictions.npz"  # labels and both models' classes on the held-out images
DROP_MARGIN = 0.01  # the target: the pruned model within 1 point of the unpruned one
EXPORTS_ELSEWHERE = ("No TFLite files under KERAS_BACKEND={backend} (TensorFlow writes them): "
                     "export the pruned model with `KERAS_BACKEND=tensorflow keras-vgg export "
                     "{model}`.")


@dataclass(frozen=True)
class Asked:
    """``compress``'s arguments, as given (None: the recipe's)."""

    flops: float | None = None
    params: float | None = None
    steps: int = 1
    epochs: int | None = None
    lr: float | None = None
    criterion: str = "auto"
    quantize: tuple = ("none", "int8")
    max_drop: float | None = None
    distill: bool | None = None
    temperature: float | None = None
    plan: str | None = None
    latency: float | None = None


@dataclass(frozen=True)
class Settings:
    """A compress's settings, checked, with each step's planned widths; ``state.json``
    records them (``to_json``) and a resumed compress must have the same."""

    target: dict
    steps: int
    epochs: int
    lr: float
    criterion: str
    quantize: list
    plan: list  # each step's conv widths
    max_drop: float  # a fraction
    distill: dict | None = None  # DistillSettings as a dict; None: labels only
    planner: str = "uniform"  # ``plan`` is set once the data is read when ``measured``

    def to_json(self) -> dict:
        # labels only and the uniform plan are written as before they were keys: a
        # compress started then resumes with --no-distill
        value = dataclasses.asdict(self)
        if value["distill"] is None:
            del value["distill"]
        if value["planner"] == "uniform":
            del value["planner"]
        return value

    @property
    def measured(self) -> bool:
        """Whether the plan is measured once the data is read (a sensitivity plan, or any
        plan for a ``latency`` target), not computed from the target alone."""
        return self.planner == "sensitivity" or "latency" in self.target

    def comparable(self) -> dict:
        """What a resumed compress must match: its widths too, unless they were measured
        (they are the state's then)."""
        value = self.to_json()
        if self.measured:
            del value["plan"]
        return value

    def matches(self, saved: dict) -> bool:
        """Whether a saved compress's settings are these (a measured plan is the state's)."""
        return {key: value for key, value in saved.items()
                if key != "plan" or not self.measured} == self.comparable()


@dataclass(frozen=True)
class _Job:
    """A compress about to run: the run it reads, its output folder, the run's recipe and
    model, the settings, the state to resume (None: a fresh start), and the fits' callbacks
    and verbosity."""

    source: RunFolder
    out: RunFolder
    recipe: Recipe
    model: keras.Model
    settings: Settings
    resumed: RunState | None
    callbacks: tuple
    verbose: int
    table: LatencyTable | None = None  # a latency table given: none is measured


def compress(run, out=None, *, flops=None, params=None, steps=1, epochs=None, lr=None,
             criterion="auto", quantize=("none", "int8"), overwrite=False, resume=False,
             callbacks=(), verbose=2, max_drop=None, distill=None, temperature=None,
             plan=None, latency=None, latency_table=None) -> dict:
    """Prune ``run``'s best.keras to a target, fine-tune, export, report; returns the report.

    Args:
        run: a finished fine-tune run folder (``recipe.json`` and ``best.keras``).
        out: the output folder; default ``run/compressed``.
        flops, params, latency: the fraction of the model's FLOPs, of its parameters, or of
            its convs' time in the TFLite file compress exports (int8 when it exports
            int8; measured conv by conv: ``keras_vgg.finetune.latency``) to keep (one of
            them). A latency target needs TensorFlow (the TFLite files are its).
        latency_table: for a ``latency`` target, the ``latency.json`` of an earlier
            compress of this model to plan by instead of timing the convs again (the same
            table gives the same plan).
        steps: pruning steps to reach it (1: one-shot).
        epochs: fine-tune epochs after each step (default the recipe's ``compress_epochs``).
        lr: their learning rate (default the recipe's ``compress_lr``).
        criterion: how filters are ranked: ``"auto"``, ``"l1"``, ``"bn_scale"``.
        quantize: the TFLite modes exported and compared (``keras_vgg.export.QUANTIZE``).
        overwrite, resume: replace an existing ``out``, or continue an interrupted one.
        callbacks: more Keras callbacks for each step's fit.
        max_drop: the accuracy the pruned model may lose, in points on the held-out split,
            before the report warns (default the recipe's ``compress.max_drop``, 1.0).
        distill: whether the pruned model learns from the unpruned one as well as from the
            labels (``keras_vgg.finetune.distillation``; default the recipe's
            ``compress.distill``, True).
        temperature: the logits' temperature when distilling (default the recipe's
            ``compress.temperature``, 3.0).
        plan: how the budget is spent over the convs: ``"uniform"`` (the same share of
            each) or ``"sensitivity"`` (each conv pruned alone on the validation split, the
            filters taken where the loss rises least per FLOP, parameter or millisecond
            saved: ``keras_vgg.finetune.sensitivity``; default the recipe's
            ``compress.plan``, uniform).
    """
    source = RunFolder(run)
    recipe, model = run_of(source)
    out = RunFolder(out) if out is not None else source.compressed
    settings = _settings(recipe, model, Asked(flops, params, steps, epochs, lr, criterion,
                                              quantize, max_drop, distill, temperature,
                                              plan, latency))
    table = _latency_table(latency_table, settings, model)
    started = time.time()
    resumed = check_out(out, "compress", settings, overwrite, resume)
    if resumed is not None and settings.measured:
        settings = dataclasses.replace(settings, plan=resumed.settings["plan"])
    job = _Job(source, out, recipe, model, settings, resumed, tuple(callbacks), verbose, table)
    with deterministic_kernels(recipe.deterministic):
        report, state = _compress(job)
    report["seconds"] = round(time.time() - started, 1)
    out.write(REPORT, report)
    out.complete(state)
    if verbose:
        print(format_compress_report(report))
        print(f"Compressed model: {out.best}; report: {out / REPORT}")
    elif report["accuracy_warning"]:
        warnings.warn(report["accuracy_warning"], stacklevel=2)
    return report


def _max_drop(points) -> float:
    """``max_drop`` checked: a number of points >= 0 (returned as a fraction)."""
    if isinstance(points, bool) or not isinstance(points, (int, float)) or not 0 <= points <= 100:
        raise ValueError("Expected `max_drop` to be the accuracy points the pruned model may "
                         f"lose, in [0, 100]. Received: max_drop={points!r}")
    return points / 100


def accuracy_warning(paired: PairedDifference, max_drop: float, split: str):
    """The warning when the pruned model lost more than ``max_drop`` (a fraction) on the
    held-out images, else None."""
    if paired.difference <= max_drop + 1e-12:
        return None
    significant = "significant" if paired.low > 0 else "not significant on so few images"
    return (f"Warning: the pruned model lost {100 * paired.difference:.1f} points on the "
            f"{paired.count:,} {split} images ({paired.first.value:.1%} -> "
            f"{paired.second.value:.1%}; 95% CI of the drop {100 * paired.low:+.1f} to "
            f"{100 * paired.high:+.1f}, {significant}), more than the {100 * max_drop:g} "
            "allowed (--max-drop, compress.max_drop): keep more FLOPs or parameters, or "
            "fine-tune for more epochs.")


def _compress(job: _Job):
    """The steps, then ``(report, state)``; ``out`` checked, deterministic kernels on."""
    out, recipe = job.out, job.recipe
    # the data before any folder: a run whose data is gone leaves nothing behind
    splits = data_lib.load_data(recipe, cache_dir=out.cache, verbose=job.verbose)
    state = job.resumed
    if state is None:
        out.start()
        if not job.settings.measured:
            state = RunState.of_compress(job.settings.to_json())
            out.save_state(state)
    out.cache.mkdir(exist_ok=True)
    data_lib.decode_once(splits, job.verbose)
    if state is None:  # a measured plan, on decoded images; nothing left on an error
        try:
            job, records = _measured_plan(job, splits)
        except BaseException:
            shutil.rmtree(out.path, ignore_errors=True)
            raise
        for name, record in records.items():
            out.write(name, record)
        state = RunState.of_compress(job.settings.to_json())
        out.save_state(state)
    # each step fine-tunes every block as one phase (none when epochs is 0)
    step_recipe = recipe if not job.settings.epochs else recipe.but({
        "phases": [{"epochs": job.settings.epochs, "lr": job.settings.lr, "freeze": "none"}],
        "feature_cache": False})
    run = RunContext(step_recipe, out, splits, model_preprocessing(job.model),
                     callbacks=job.callbacks, verbose=job.verbose)
    pruned, teacher = job.model, _teacher(job)
    for k in range(1, len(job.settings.plan) + 1):
        if teacher is not None:  # which of its filters step k's student holds
            teacher = teacher.after(pruned, job.settings.plan[k - 1], job.settings.criterion)
        pruned, state = _step(run.but(teacher=teacher), job.settings, k, pruned, state)
    shutil.copyfile(out.step(len(job.settings.plan)).best, out.best)
    return _report(run.but(recipe=recipe, teacher=teacher), job, pruned), state


def _measured_plan(job: _Job, splits):
    """``(job with its settings' plan measured, {file name: record})``: the sensitivity
    of each conv (``--plan sensitivity``) and the convs' latency table (a ``latency``
    target), then each step's widths."""
    settings, records, sensitivity = job.settings, {}, None
    if settings.planner == "sensitivity":
        sensitivity = _sensitivity(job, splits)
        records[SENSITIVITY] = {"images": len(splits.val_labels), "split": "validation",
                                **sensitivity.to_json()}
    arg, fraction = next(iter(settings.target.items()))
    targets = [fraction ** (k / settings.steps) for k in range(1, settings.steps + 1)]
    if arg == "latency":
        table = job.table or _measured_table(job, latency_mode(settings.quantize))
        records[LATENCY] = table.to_json()
        plan = [plan_for_latency(job.model, table, target, sensitivity) for target in targets]
    else:
        plan = [plan_by_sensitivity(job.model, sensitivity, **{arg: target})
                for target in targets]
    settings = dataclasses.replace(settings, plan=[list(widths) for widths in plan])
    return dataclasses.replace(job, settings=settings), records


def _measured_table(job: _Job, mode: str) -> LatencyTable:
    """The model's convs timed alone as ``mode`` TFLite files (``measure_latency_table``)."""
    if job.verbose:
        print(f"Latency: each of {len(conv_names(job.model))} convs timed alone, as a {mode} "
              "TFLite file at a few widths.", flush=True)
    return measure_latency_table(job.model, mode)


def _latency_table(path, settings: Settings, model) -> LatencyTable | None:
    """The table in ``path`` (None: none given), checked against the target and the model."""
    if path is None:
        return None
    if "latency" not in settings.target:
        raise ValueError("Expected `latency_table` only with a `latency` target (it times "
                         f"the convs). Received: latency_table={str(path)!r} with "
                         f"{next(iter(settings.target))}={next(iter(settings.target.values()))}")
    table, mode = read_latency_table(path, model), latency_mode(settings.quantize)
    if table.quantize != mode:
        raise ValueError(f"Expected `latency_table` timed as the {mode} TFLite file this "
                         f"compress ships (quantize={settings.quantize}). Received: "
                         f"latency_table={str(path)!r}, timed as {table.quantize}")
    return table


def latency_mode(quantize) -> str:
    """The TFLite mode a ``latency`` target times: int8 when compress exports it, else the
    last mode it exports."""
    return "int8" if "int8" in quantize else quantize[-1]


def _sensitivity(job: _Job, splits) -> Sensitivity:
    """Each conv pruned alone, scored by the cross-entropy on the validation split (never
    the test split, which judges the result)."""
    if not len(splits.val_labels):
        raise ValueError("Expected a run with validation images for plan='sensitivity' "
                         "(--plan sensitivity measures each conv's loss on them; the test "
                         "split only judges the result). Received: run="
                         f"{str(job.source)!r}, whose data has none (its recipe's "
                         "data.validation_split or data.val_split). Use plan='uniform'.")
    run = RunContext(job.recipe, job.out, splits, model_preprocessing(job.model))
    labels = splits.counted("val")

    def loss_of(model):
        probabilities = _probabilities(model, run, "val")
        picked = probabilities[np.arange(len(labels)), labels]
        return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))

    if job.verbose:
        print(f"Sensitivity: each of {len(conv_names(job.model))} convs pruned alone, scored "
              f"on {len(labels):,} validation images.", flush=True)
    # pruned as it predicts (folded and cast once; loss_of's inference_model then keeps it)
    served = inference_model(job.model, inference_precision(job.recipe))
    return measure_sensitivity(job.model, loss_of, job.settings.criterion, served=served)


def _teacher(job: _Job) -> Teacher | None:
    """The run's best.keras (a copy of its own, frozen) as the steps' teacher; None when
    compress does not distill or fine-tunes no epoch."""
    if job.settings.distill is None or not job.settings.epochs:
        return None
    return Teacher.of(load_model(job.source.path), DistillSettings(**job.settings.distill))


def compress_phase(run: RunContext, resume=False):
    """The recipe's compress phase (``compress.flops``, ``.params`` or ``.latency`` set)
    into the run folder's ``compressed/``; None when the recipe has none."""
    recipe = run.recipe
    if not (recipe.compress.flops or recipe.compress.params or recipe.compress.latency):
        return None
    out = run.folder.compressed
    resume = resume and out.state_file.is_file()
    quantize = recipe.export.quantize if "tflite" in recipe.export.formats else ("none", "int8")
    return compress(run.folder.path, out.path, flops=recipe.compress.flops or None,
                    params=recipe.compress.params or None,
                    latency=recipe.compress.latency or None, steps=recipe.compress.steps,
                    criterion=recipe.compress.criterion, quantize=quantize,
                    max_drop=recipe.compress.max_drop, overwrite=not resume, resume=resume,
                    callbacks=run.callbacks, verbose=run.verbose)


def run_of(run: RunFolder):
    """The run's recipe and its best.keras (with its record)."""
    if not run.is_run():
        raise ValueError("Expected `run` to be a finished fine-tune run folder (recipe.json and "
                         f"best.keras). Received: run={str(run)!r}")
    return read_recipe(run), load_model(run.path)


def _settings(recipe, model, asked: Asked) -> Settings:
    """Every argument checked and the widths of each step planned (nothing written yet)."""
    steps, criterion = asked.steps, asked.criterion
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"Expected `steps` to be a positive int. Received: steps={steps!r}")
    epochs = recipe.compress.epochs if asked.epochs is None else asked.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"Expected `epochs` to be an int >= 0. Received: epochs={epochs!r}")
    lr = checked_lr(recipe.compress.lr if asked.lr is None else asked.lr)
    if criterion not in CRITERIA:
        raise ValueError(f"Expected `criterion` to be one of {list(CRITERIA)}. "
                         f"Received: criterion={criterion!r}")
    quantize = checked_quantize(asked.quantize)
    arg, fraction = _target(asked)
    if arg == "latency":
        plan = []  # measured once the data is read
    else:
        final = plan_widths(model, **{arg: fraction})  # checks the target
        plan = [plan_widths(model, **{arg: fraction ** (k / steps)}) for k in range(1, steps)]
        plan.append(final)
    max_drop = recipe.compress.max_drop if asked.max_drop is None else asked.max_drop
    planner = recipe.compress.plan if asked.plan is None else asked.plan
    if planner not in PLANS:
        raise ValueError(f"Expected `plan` to be one of {list(PLANS)}. Received: "
                         f"plan={planner!r}")
    widths = [list(w) for w in plan] if planner == "uniform" else []
    return Settings({arg: fraction}, steps, epochs, float(lr), criterion, quantize,
                    widths, _max_drop(max_drop), _distill(recipe, asked), planner)


def _target(asked: Asked) -> tuple[str, float]:
    """``(name, fraction)`` of the one target given: ``flops``, ``params`` or ``latency``
    (the fraction checked by ``plan_widths`` for the first two)."""
    given = {name: getattr(asked, name) for name in ("flops", "params", "latency")
             if getattr(asked, name) is not None}
    if len(given) != 1:
        raise ValueError("Expected one of `flops`, `params` or `latency` (the fraction of the "
                         "model's FLOPs, parameters or convs' time to keep). Received: "
                         + (", ".join(f"{name}={value!r}" for name, value in given.items())
                            or "none of them"))
    ((arg, fraction),) = given.items()
    if arg != "latency":
        return arg, fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction <= 1:
        raise ValueError("Expected `latency` to be the fraction of the convs' time to keep, "
                         f"in (0, 1] (0.3 keeps 30%). Received: latency={fraction!r}")
    if keras.backend.backend() != "tensorflow":
        raise ValueError("Expected KERAS_BACKEND=tensorflow for a `latency` target (its "
                         "table times TFLite files, which TensorFlow writes). Received: "
                         f"latency={fraction!r} under KERAS_BACKEND={keras.backend.backend()}; "
                         "use `flops` or `params` here.")
    return arg, float(fraction)


def _distill(recipe, asked: Asked) -> dict | None:
    """The distillation settings (``DistillSettings`` as a dict), checked; None: off."""
    distill = recipe.compress.distill if asked.distill is None else asked.distill
    if not isinstance(distill, bool):
        raise ValueError(f"Expected `distill` to be True or False. Received: distill={distill!r}")
    temperature = checked_temperature(
        recipe.compress.temperature if asked.temperature is None else asked.temperature)
    if not distill:
        return None
    return dataclasses.asdict(DistillSettings(temperature, float(recipe.compress.feature_weight)))


def checked_lr(lr) -> float:
    """``lr`` checked: a positive number."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"Expected `lr` to be a positive number. Received: lr={lr!r}")
    return float(lr)


def checked_quantize(quantize) -> list:
    """``quantize`` checked: TFLite modes (``keras_vgg.export.QUANTIZE``), at least one."""
    quantize = list(quantize)
    if not quantize or any(q not in QUANTIZE for q in quantize):
        raise ValueError(f"Expected `quantize` to be TFLite modes from {list(QUANTIZE)}. "
                         f"Received: quantize={quantize!r}")
    return quantize


def checked_temperature(temperature) -> float:
    """``temperature`` checked: a positive finite number."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            0 < temperature < float("inf")):
        raise ValueError("Expected `temperature` to be a positive number (the logits' "
                         f"softening when distilling). Received: temperature={temperature!r}")
    return float(temperature)


def check_out(out: RunFolder, what: str, settings, overwrite, resume) -> RunState | None:
    """``out`` may be used: new (or ``overwrite``), or an unfinished one (``what``: "compress",
    "distill") to resume with the same settings (``settings.matches`` the saved ones; its
    state returned)."""
    if overwrite and resume:
        raise ValueError("Expected at most one of `overwrite` and `resume`. Received both.")
    if resume:
        state = out.read_state()
        if state is None or state.settings is None:
            raise ValueError(f"Nothing to resume: expected `out` (-o/--output) to be a {what} "
                             f"folder with state.json. Received: out={str(out)!r}")
        if not settings.matches(state.settings):
            raise ValueError(f"A resumed {what} keeps its settings ({state.settings}). "
                             "Resume with the same arguments, or start another `out`.")
        if state.complete:
            raise ValueError(f"The {what} in {out} is complete; there is nothing to resume.")
        return state
    if out.path.exists() and not overwrite:
        raise OutputExists(f"Expected `out` (-o/--output) not to exist (pass overwrite=True, "
                           "--overwrite, to replace it, or resume=True, --resume). "
                           f"Received: out={str(out)!r}")
    return None


def _step(run: RunContext, settings: Settings, k, model, state: RunState):
    """Pruning step ``k``: the model pruned to the plan's widths and fine-tuned in the step's
    folder (``run.folder`` is the compress's); a step done before (resume) is read back.
    Returns (the step's model, the state)."""
    folder = run.folder.step(k)
    if state.steps_done >= k:
        return load_model(folder.best), state
    # every step from the same seed, whatever ran before it in this process (a resumed
    # compress skips the steps done): its new layers' seeds and the fit's draws repeat
    keras.utils.set_random_seed(run.recipe.seed)
    widths = settings.plan[k - 1]
    pruned = prune(model, widths=widths, criterion=settings.criterion)
    pruned.preprocessing = run.mode
    folder.path.mkdir(exist_ok=True)
    if run.verbose:
        taught = ", from the unpruned model and the labels" if run.teacher else ""
        print(f"Step {k}/{settings.steps}: conv widths {list(widths)}, fine-tuning "
              f"{settings.epochs} epochs{taught}.", flush=True)
    if settings.epochs:
        run_phase(run.but(folder=folder), 0, pruned, RunState())
        pruned = load_model(folder.best)
    else:
        pruned.save(folder.best)
    state = state.step_done(k)
    run.folder.save_state(state)
    return pruned, state


def held_out(splits) -> tuple:
    """``(split, name)`` of the split that reports: ``("test", "test")``, else
    ``("val", "validation")``."""
    return ("test", "test") if splits.test_labels is not None else ("val", "validation")


def predicted_classes(model, run: RunContext, split) -> np.ndarray:
    """Predicted classes of ``split``'s own images (padding left out), computed as the run's
    evaluation computes them."""
    return _probabilities(model, run, split).argmax(-1)


def _probabilities(model, run: RunContext, split) -> np.ndarray:
    """``model``'s class probabilities on ``split``'s own images (padding left out), as the
    run's evaluation computes them."""
    fast = inference_model(model, inference_precision(run.recipe))  # as evaluate_run
    images = data_lib.eval_pipeline(getattr(run.splits, split), run.batched, run.mode)
    predicted = fast.predict(images, verbose=0)
    return np.asarray(predicted, "float32")[:len(run.splits.counted(split))]


def write_predictions(path: Path, **arrays):
    """``arrays`` as an .npz, written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def compared(first, second, which=("after", "after")) -> PairedDifference:
    """The paired difference of two compress outputs' models on their run's held-out
    images (from each ``predictions.npz``; ``which``: "before" or "after" of each): first
    minus second. Both must hold the same images, as two compresses of one run do."""
    arrays = [np.load(Path(out) / PREDICTIONS) for out in (first, second)]
    if not np.array_equal(arrays[0]["labels"], arrays[1]["labels"]):
        raise ValueError("Expected two compress outputs of the same run (the same held-out "
                         f"images). Received: first={str(first)!r}, second={str(second)!r}")
    return paired_difference(arrays[0]["labels"], arrays[0][which[0]], arrays[1][which[1]])


def _report(run: RunContext, job: _Job, pruned) -> dict:
    """Both models scored and exported on the same images (``run``: the run's recipe and
    data, the compress's folder); the figures side by side, the accuracies as a paired
    difference."""
    model, settings, out, splits = job.model, job.settings, run.folder, run.splits
    split, split_name = held_out(splits)
    labels = splits.counted(split)
    before, after = predicted_classes(model, run, split), predicted_classes(pruned, run, split)
    paired = paired_difference(labels, before, after)
    write_predictions(out / PREDICTIONS, labels=labels, before=before, after=after)
    tflite = keras.backend.backend() == "tensorflow"  # TFLite files are TensorFlow's
    exports = export_models(run, settings.quantize, {
        "reference_export": model, "export": pruned}, len(labels)) if tflite else None
    names = conv_names(model)
    cost_before, cost_after = model_cost(model), model_cost(pruned)
    widths = {"names": names, "before": list(conv_widths(model)),
              "after": list(conv_widths(pruned))}
    plot_widths(names, widths["before"], widths["after"], out / "widths.png")
    rows = [_export_row(old, new) for old, new in zip(
        exports["reference_export"]["exports"], exports["export"]["exports"])] if tflite else []
    return {"run": str(job.source), "model": str(out.best), **{
                k: getattr(settings, k) for k in ("target", "steps", "epochs", "lr", "criterion")},
            "widths": widths,
            "params": {"before": cost_before.params, "after": cost_after.params},
            "flops": {"before": cost_before.flops, "after": cost_after.flops},
            "accuracy": {"before": paired.first.value, "after": paired.second.value},
            "held_out": split_name, "held_out_images": paired.count,
            "before_minus_after": paired.to_json(),
            "accuracy_target": {"max_drop": settings.max_drop,
                                "result": paired.judge(settings.max_drop),
                                "verdict": paired.verdict(settings.max_drop)},
            "accuracy_warning": accuracy_warning(paired, settings.max_drop, split_name),
            "distillation": run.teacher.to_json() if run.teacher else {"on": False},
            "plan": {"planner": settings.planner, **{key: json.loads(
                (out / name).read_text()) if (out / name).is_file() else None
                for key, name in (("sensitivity", SENSITIVITY), ("latency", LATENCY))}},
            "exports": rows, "exports_skipped": None if tflite else EXPORTS_ELSEWHERE.format(
                backend=keras.backend.backend(), model=out.best)}


def export_models(run: RunContext, quantize, models: dict, images) -> dict:
    """``{folder name: model}`` each exported to TFLite (``quantize``'s modes) in its folder
    of ``run.folder`` (compress: ``reference_export/``, ``export/``), each file checked on
    the same ``images`` held-out images, all of them."""
    representative, sample, sample_labels = data_lib.export_arrays(
        run.splits, run.recipe.seed, sample=images)
    return {name: export(which, run.folder / name, ["tflite"], quantize,
                         preprocessing=run.mode, class_names=run.splits.class_names,
                         representative_data=representative, sample=sample,
                         sample_labels=sample_labels, overwrite=True,
                         verbose=bool(run.verbose))
            for name, which in models.items()}


def _export_row(old: dict, new: dict) -> dict:
    """One row of the report's export table: a file of the unpruned and the pruned model."""
    return {"file": new["file"], "quantize": new["quantize"],
            "size_before": old["size_bytes"], "size_after": new["size_bytes"],
            "latency_before_ms": old["latency_ms"], "latency_after_ms": new["latency_ms"],
            "agreement_before": old["top1_agreement"],
            "agreement_after": new["top1_agreement"],
            "max_abs_diff_after": new["max_abs_diff"],
            # each file against its own Keras model on the same images (paired)
            "vs_keras_before": old.get("paired_difference"),
            "vs_keras_after": new.get("paired_difference")}
