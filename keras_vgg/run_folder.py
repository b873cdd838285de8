"""A run folder's layout and lifecycle: every file name a run (or a compress) writes, in one
place; files written atomically; and the lifecycle a run goes through (start, a phase done,
complete, scratch dropped) with its :class:`RunState`.

A fine-tune run's folder holds ``recipe.json``, ``state.json``, ``best.keras``,
``metrics.json``, ``data_report.json``, ``training_log.csv``, one ``PHASE.weights.h5`` per
phase done, and while it runs ``cache/`` and ``backup/`` (scratch, dropped when it
completes); a compress adds ``compressed/`` with ``stepK/`` folders, a distill
``distilled/``. This module needs no Keras: ``keras_vgg.saving`` reads run folders with it,
and ``keras_vgg.finetune`` writes them.

Example:
    >>> import tempfile
    >>> folder = RunFolder(tempfile.mkdtemp() + "/run")
    >>> folder.start()
    >>> state = RunState().phase_done("phase1", epoch=3)
    >>> folder.save_state(state)
    >>> folder.read_state() == state, folder.best.name
    (True, 'best.keras')
    >>> folder.complete(state).complete, folder.read_state().to_json()
    (True, {'phases_done': ['phase1'], 'epoch': 3, 'complete': True})
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

RECIPE = "recipe.json"
STATE = "state.json"
BEST = "best.keras"
METRICS = "metrics.json"
DATA_REPORT = "data_report.json"
LOG = "training_log.csv"
CACHE = "cache"  # the decoded images of a disk cache (scratch)
BACKUP = "backup"  # BackupAndRestore's, one folder per phase (scratch)
FEATURE_CACHE = "feature_cache"
LOGS = "logs"  # TensorBoard's
EXPORT = "export"
COMPRESSED = "compressed"
DISTILLED = "distilled"  # keras-vgg distill's default output: a smaller variant taught by the run
LORA = "lora.json"  # each LoRA phase: rank, adapted layers, parameters, merge check
SCRATCH = (BACKUP, CACHE)  # nothing left to resume once a run is complete


def write_json(path, value):
    """Written beside and renamed into place: a reader never sees half a file."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


@dataclass(frozen=True)
class RunState:
    """What ``state.json`` records: the phases done and the epoch reached (a fine-tune run),
    or the settings and steps done (a compress, ``settings`` set), and whether it is
    complete. Each change is a new state (``phase_done``, ``step_done``, ``completed``)."""

    phases_done: tuple = ()
    epoch: int = 0
    complete: bool = False
    stopped_early: tuple = ()  # phases EarlyStopping ended
    settings: dict | None = None  # a compress's arguments, checked on resume
    steps_done: int = 0  # a compress's

    @classmethod
    def of_compress(cls, settings: dict) -> RunState:
        return cls(settings=settings)

    def phase_done(self, phase: str, epoch: int, stopped_early=False) -> RunState:
        stopped = self.stopped_early + ((phase,) if stopped_early else ())
        return dataclasses.replace(self, phases_done=self.phases_done + (phase,), epoch=epoch,
                                   stopped_early=stopped)

    def step_done(self, step: int) -> RunState:
        return dataclasses.replace(self, steps_done=step)

    def completed(self) -> RunState:
        return dataclasses.replace(self, complete=True)

    def to_json(self) -> dict:
        if self.settings is not None:
            return {"settings": self.settings, "steps_done": self.steps_done,
                    "complete": self.complete}
        value = {"phases_done": list(self.phases_done), "epoch": self.epoch,
                 "complete": self.complete}
        if self.stopped_early:
            value["stopped_early"] = list(self.stopped_early)
        return value

    @classmethod
    def from_json(cls, value: dict) -> RunState:
        if "settings" in value:
            return cls(settings=value["settings"], steps_done=value.get("steps_done", 0),
                       complete=bool(value.get("complete")))
        return cls(tuple(value.get("phases_done", ())), value.get("epoch", 0),
                   bool(value.get("complete")), tuple(value.get("stopped_early", ())))


@dataclass(frozen=True)
class RunFolder:
    """A run's folder: the path of each file it holds, and its lifecycle."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name) -> Path:
        return self.path / name

    def __str__(self):
        return str(self.path)

    def __fspath__(self):  # a RunFolder is a path too: Path(folder), open(folder / name)
        return str(self.path)

    best = property(lambda self: self.path / BEST)
    recipe_file = property(lambda self: self.path / RECIPE)
    state_file = property(lambda self: self.path / STATE)
    metrics = property(lambda self: self.path / METRICS)
    data_report = property(lambda self: self.path / DATA_REPORT)
    log = property(lambda self: self.path / LOG)
    cache = property(lambda self: self.path / CACHE)
    feature_cache = property(lambda self: self.path / FEATURE_CACHE)
    logs = property(lambda self: self.path / LOGS)
    export = property(lambda self: self.path / EXPORT)
    compressed = property(lambda self: RunFolder(self.path / COMPRESSED))
    distilled = property(lambda self: RunFolder(self.path / DISTILLED))
    lora = property(lambda self: self.path / LORA)

    def backup(self, phase: str) -> Path:
        return self.path / BACKUP / phase

    def phase_weights(self, phase: str) -> Path:
        return self.path / f"{phase}.weights.h5"

    def step(self, k: int) -> RunFolder:
        """A compress's step ``k``: a folder of its own (``stepK``)."""
        return RunFolder(self.path / f"step{k}")

    def holds_files(self) -> bool:
        return self.path.exists() and any(self.path.iterdir())

    def is_run(self) -> bool:
        """A finished fine-tune run: its recipe and its model."""
        return self.recipe_file.is_file() and self.best.is_file()

    def read_recipe(self) -> dict | None:
        """recipe.json's keys, or None when there is none."""
        return json.loads(self.recipe_file.read_text()) if self.recipe_file.exists() else None

    def read_state(self) -> RunState | None:
        if not self.state_file.is_file():
            return None
        return RunState.from_json(json.loads(self.state_file.read_text()))

    def write(self, name: str, value):
        """``name`` (a JSON file in the folder) written atomically."""
        write_json(self.path / name, value)

    def start(self):
        """An empty folder (an earlier one there is removed)."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)

    def save_state(self, state: RunState):
        self.write(STATE, state.to_json())

    def complete(self, state: RunState) -> RunState:
        """The state marked complete and saved, the scratch copies dropped."""
        state = state.completed()
        self.save_state(state)
        self.drop_scratch()
        return state

    def drop_scratch(self, names=SCRATCH):
        for name in names:
            shutil.rmtree(self.path / name, ignore_errors=True)
