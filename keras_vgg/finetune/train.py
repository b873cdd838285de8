"""The fine-tune schedule: phase 1 trains the head, phase 2 unfreezes the top blocks.

It follows keras-io's transfer-learning guide (freeze the base, train a new
head with the base in inference mode, unfreeze the top blocks, recompile with a
low rate), as tested code driven by a :class:`~keras_vgg.finetune.recipe.Recipe`.

When phase 1 freezes the whole base and nothing is augmented, the base's
features are computed once (``feature_cache/`` in the run directory) and the
head trains on them; the head is the same layer object the full model uses, so
the saved model is exactly base + trained head.

A run directory holds ``best.keras``, ``metrics.json``, ``history.png``,
``confusion_matrix.png``, ``recipe.json``,
``data_report.json`` and ``training_log.csv`` (+ ``logs/`` for TensorBoard).
An interrupted run resumes with ``resume=True`` (Keras's BackupAndRestore
within a phase, ``state.json`` across phases).

Example (a tiny run on the built-in shapes):
    >>> import tempfile
    >>> from keras_vgg.finetune import finetune, load_recipe
    >>> recipe = load_recipe("builtin", ["phases.0.epochs=1", "data.builtin_images_per_class=4",
    ...                                  "tensorboard=false"])
    >>> result = finetune(recipe, run_dir=tempfile.mkdtemp() + "/run", verbose=0)
    >>> result.best_model.name, result.epochs
    ('best.keras', 1)
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_vgg._extras import require
from keras_vgg.batch_norm import inference_model
from keras_vgg.finetune import data as data_lib
from keras_vgg.finetune import distribute, lora
from keras_vgg.finetune.compress import compress_phase
from keras_vgg.finetune.recipe import Recipe, phase_name
from keras_vgg.finetune.context import RunContext
from keras_vgg.finetune.determinism import deterministic_kernels
from keras_vgg.finetune.html_report import Scored, write_html_report
from keras_vgg.finetune.model import build_finetune_model
from keras_vgg.finetune.phase import inference_precision, run_phase, uses_feature_cache
from keras_vgg.finetune.report import (
    chance,
    classification_metrics,
    plot_confusion,
    plot_history,
    read_log,
)
from keras_vgg.finetune.run_folder import open_run_dir, resolve_run_dir
from keras_vgg.precision import (
    detect_precision,
    resolve_precision,
    training_precision,
    training_scope,
)
from keras_vgg.preprocessing import Preprocessing, model_preprocessing
from keras_vgg.run_folder import BEST, METRICS, RunFolder, RunState
from keras_vgg.stats import accuracy_of
from keras_vgg.weights import find_weights

@dataclass
class RunResult:
    run_dir: Path
    best_model: Path
    metrics: dict
    epochs: int
    feature_cache: bool
    export_report: dict | None = None
    compress_report: dict | None = None  # the compress phase's, when the recipe asks for one


def preprocessing_mode(recipe, model=None) -> Preprocessing:
    """The weights' preprocessing: what the built model's weights record (the weights table
    for a name), "torch" when training from scratch. An average image becomes its mean pixel:
    the recipe trains at its own image size."""
    if recipe.model.preprocessing != "auto":
        return Preprocessing(recipe.model.preprocessing)
    if recipe.model.weights is None:
        return Preprocessing("torch")
    if model is None:
        return Preprocessing(find_weights(recipe.model.name, recipe.model.head == "fc",
                                          recipe.model.weights).preprocessing)
    found = model_preprocessing(model)
    return found if found.mean is None else Preprocessing(found.mode, found.mean_pixel())


def require_extras(recipe):
    """Every optional package the run will need, imported before it starts (a missing one is
    an error naming its extra, not a lost run): pillow or tfds for the data, matplotlib for
    the pictures, tensorboard when logging to it, ai-edge-litert for a TFLite export."""
    if recipe.data.source.startswith("tfds:"):
        data_lib.require_tfds()
    else:
        require("PIL.Image", "finetune", package="pillow")
    require("matplotlib", "finetune")
    if recipe.tensorboard:
        require("tensorboard", "finetune")
    if "tflite" in recipe.export.formats:
        require("ai_edge_litert", "export", package="ai-edge-litert")
    if recipe.export.formats:
        from keras_vgg.export.bundle import check_backend

        check_backend(f"export.formats={list(recipe.export.formats)}")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or any KeyboardInterrupt) during :func:`finetune`: ``run_dir``, the epochs it
    finished and saved, and ``str()`` says so with the command that continues the run."""

    def __init__(self, run_dir):
        folder = RunFolder(run_dir)
        self.run_dir = folder.path
        self.epochs_done = len(read_log(folder.log))
        self.resumable = folder.recipe_file.exists()
        super().__init__(self.message())

    def message(self) -> str:
        command = f"keras-vgg finetune --resume --run-dir {shlex.quote(str(self.run_dir))}"
        if not self.resumable:
            return ("interrupted before the run started: nothing was saved; run the same "
                    "command again to start it.")
        planned = sum(phase["epochs"] for phase in RunFolder(self.run_dir).read_recipe()["phases"])
        done = self.epochs_done
        saved = (f"epoch{'s' if done > 1 else ''} {'1-' if done > 1 else ''}{done} of {planned} "
                 f"saved in {self.run_dir} (best.keras and the last finished epoch's checkpoint)"
                 if done else f"no epoch finished yet (the run folder is {self.run_dir})")
        return f"interrupted: {saved}; continue the run with: {command}"


def fit_verbosity(verbose):
    """Keras's ``verbose`` for the run: "auto" is 1 (a progress bar within each epoch) when
    stdout is a terminal, else 2 (one line per epoch, no carriage returns: logs)."""
    if verbose != "auto":
        return verbose
    return 1 if hasattr(sys.stdout, "isatty") and sys.stdout.isatty() else 2


@dataclass(frozen=True)
class _Start:
    """A run about to start or resume: its folder, recipe (as recipe.json holds it) and
    state, and when it started."""

    folder: RunFolder
    recipe: Recipe
    state: RunState
    resume: bool
    started: float


def finetune(recipe: Recipe | None = None, run_dir=None, overwrite=False, resume=False,
             callbacks=(), verbose="auto") -> RunResult:
    """Runs a recipe end to end and writes its run directory; see the module docstring.
    ``verbose``: "auto" (see :func:`fit_verbosity`), 0, 1 or 2. A KeyboardInterrupt leaves
    as :class:`RunInterrupted`, which says what was saved and how to resume."""
    if recipe is None and not resume:
        recipe = Recipe()
    if recipe is not None:
        recipe.validate()
    run_dir = resolve_run_dir(run_dir, recipe, overwrite, resume)
    verbose = fit_verbosity(verbose)
    recipe, state = open_run_dir(run_dir, recipe, overwrite=overwrite, resume=resume)
    require_extras(recipe)
    start = _Start(RunFolder(run_dir), recipe, state, resume, time.time())
    keras.utils.set_random_seed(recipe.seed)
    strategy = distribute.make_strategy(recipe.strategy)
    if verbose:
        print(f"Precision: trains in {training_precision(recipe.mixed_precision)} "
              f"(mixed_precision={recipe.mixed_precision}; this machine: "
              f"{detect_precision(training=True)}).", flush=True)
    try:
        with deterministic_kernels(recipe.deterministic), \
                training_scope(recipe.mixed_precision), distribute.running(strategy):
            run, model = _prepared(start, strategy, tuple(callbacks), verbose)
            return _finetune(run, model, start)
    except KeyboardInterrupt as stop:
        if isinstance(stop, RunInterrupted):
            raise
        raise RunInterrupted(run_dir) from None


def _prepared(start: _Start, strategy, callbacks, verbose):
    """``(RunContext, model)``: the data loaded and the model built, before anything is
    written (a bad folder or model leaves no run directory behind)."""
    folder, recipe = start.folder, start.recipe
    splits = data_lib.load_data(recipe, cache_dir=folder.cache,
                                shard=distribute.input_shard(strategy), verbose=verbose)
    with strategy.scope():
        model = build_finetune_model(recipe, len(splits.class_names), splits.class_names)
    lora.check_ranks(recipe, model)  # a rank above a layer's size: refused before any file
    mode = preprocessing_mode(recipe, model)
    model.preprocessing = mode  # the run's own: saved inside best.keras
    return RunContext(recipe, folder, splits, mode, strategy, callbacks, verbose), model


def _finetune(run: RunContext, model, start: _Start) -> RunResult:
    folder = run.folder
    if start.resume:  # a tf.data file cache cut off mid-write cannot be read back; rebuild it
        folder.drop_scratch([folder.cache.name])
    else:
        folder.start()
        folder.write(folder.recipe_file.name, run.recipe.to_dict())
    if run.splits.cache == "disk":
        folder.cache.mkdir(exist_ok=True)
    data_lib.decode_once(run.splits, run.verbose)  # fills the cache; skips what fails to decode
    folder.write(folder.data_report.name, run.splits.report)
    state, phase_starts, feature_cache = _train_phases(run, model, start.state)
    with distribute.one_device():
        metrics, scored = evaluate_run(run, _best_without_optimizer(folder), phase_starts)
    metrics["final"]["stopped_early"] = list(state.stopped_early)
    metrics["final"]["epochs_planned"] = run.recipe.epochs
    metrics["feature_cache"] = feature_cache
    if folder.lora.exists():  # each LoRA phase's figures (keras_vgg.finetune.lora.record)
        metrics["lora"] = json.loads(folder.lora.read_text())
    metrics["seconds"] = round(time.time() - start.started, 1)
    folder.write(METRICS, metrics)
    export_report = export_finished_run(run) if run.recipe.export.formats else None
    compress_report = compress_phase(run, start.resume)
    write_html_report(folder.path, splits=run.splits, recipe=run.batched,  # report.html
                      scored=scored)
    state = folder.complete(state)  # nothing left to resume: the scratch copies dropped
    return RunResult(folder.path, folder.best, metrics, state.epoch, feature_cache,
                     export_report, compress_report)


def _train_phases(run: RunContext, model, state: RunState):
    """Each phase with epochs not done yet (one done before a resume is read back); returns
    (the state, the epoch each phase run here started at, whether phase 0 used the feature
    cache)."""
    phase_starts, feature_cache = [], False
    for index, settings in enumerate(run.recipe.phases):
        phase = phase_name(index)
        if not settings.epochs:
            continue
        if phase in state.phases_done:
            model.load_weights(run.folder.phase_weights(phase))
            continue
        phase_starts.append(state.epoch)
        feature_cache |= index == 0 and uses_feature_cache(run.recipe)
        state = run_phase(run, index, model, state)
        with run.strategy.scope():  # a LoRA phase's adapters merged: the next phase's model
            model = lora.merged(model)
        model.save_weights(run.folder.phase_weights(phase))
        run.folder.save_state(state)
    return state, phase_starts, feature_cache


def _best_without_optimizer(folder: RunFolder):
    """best.keras written anew without optimizer state (a third of the size; resuming uses
    the run's own backups, and a later fine-tune compiles afresh); returns the model."""
    best = keras.saving.load_model(folder.best, compile=False)
    tmp = folder / f".best.tmp{Path(BEST).suffix}"
    best.save(tmp)
    tmp.replace(folder.best)
    return best


def export_finished_run(run: RunContext) -> dict:
    """best.keras exported into the run folder's ``export/``, calibrated on the training
    split and checked on the validation split."""
    from keras_vgg.export import export

    recipe = run.recipe
    representative, sample, labels = data_lib.export_arrays(run.splits, recipe.seed)
    return export(keras.saving.load_model(run.folder.best), run.folder.export,
                  recipe.export.formats, recipe.export.quantize, preprocessing=run.mode,
                  class_names=run.splits.class_names, representative_data=representative,
                  sample=sample, sample_labels=labels, overwrite=True,
                  verbose=bool(run.verbose))


def evaluate_run(run: RunContext, best, phase_starts=()) -> tuple[dict, Scored]:
    """metrics.json's figures of ``best`` (the run's best.keras): the validation split
    (which chose it) and the test split (which reports); writes the two pictures. Returns
    the figures and the reported split's probabilities (``Scored``, for report.html)."""
    splits, folder = run.splits, run.folder
    precision = inference_precision(run.recipe)
    fast = inference_model(best, precision)  # BatchNorm folded, then cast
    probabilities = {split: fast.predict(data_lib.eval_pipeline(
        getattr(splits, split), run.batched, run.mode), verbose=0)
        for split in splits.present() if split != "train"}
    scored = {split: _predicted(run, split, p) for split, p in probabilities.items()}
    reported = "test" if "test" in scored else "val"
    metrics = classification_metrics(*scored[reported], splits.class_names)
    rows = read_log(folder.log)
    plot_history(rows, folder / "history.png", phase_starts=phase_starts[1:])
    plot_confusion(metrics["confusion_matrix"], splits.class_names,
                   folder / "confusion_matrix.png",
                   title="test" if reported == "test" else "validation")
    logged = [row.get("val_accuracy", -1.0) for row in rows]
    best_epoch = logged.index(max(logged)) + 1 if logged else None  # the first best, as saved
    figures = {split: accuracy_of(*pair) for split, pair in scored.items()}
    test = figures.get("test")
    return {"final": {"accuracy": figures[reported].value,
                      "chance": chance(figures[reported], len(splits.class_names)),
                      "reported": "test" if test else "validation",
                      "test_accuracy": None if test is None else test.value,
                      "test": None if test is None else test.to_json(),
                      "val_accuracy": figures["val"].value,
                      "validation": figures["val"].to_json(),
                      "model": BEST,
                      "best_epoch": best_epoch, "epochs_run": len(rows),
                      "preprocessing": run.mode.to_json(), "class_names": splits.class_names,
                      "evaluated_in": resolve_precision(precision),
                      "trained_in": training_precision(run.recipe.mixed_precision)},
            "per_class": metrics["per_class"], "confusion_matrix": metrics["confusion_matrix"],
            "epochs": rows}, Scored(best, reported, probabilities[reported])


def _predicted(run: RunContext, split, probabilities):
    """(labels, predicted classes) of ``split`` ("val" or "test") from the model's
    ``probabilities`` on it, each image once: a worker's padding (the end of its share) left
    out, every worker's share combined when the data is sharded."""
    splits = run.splits
    labels = splits.counted(split)
    predicted = probabilities.argmax(-1)[:len(labels)]
    if splits.shard is None:
        return labels, predicted
    k = len(splits.class_names)
    matrix = np.zeros((k, k), dtype="int64")
    np.add.at(matrix, (labels, predicted), 1)
    matrix = distribute.sum_over_workers(run.strategy, matrix)
    rows, cols = np.nonzero(matrix)
    return np.repeat(rows, matrix[rows, cols]), np.repeat(cols, matrix[rows, cols])
