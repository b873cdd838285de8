"""One run context: what the phases of a run (and the steps of a compress) need, in one typed
record: the recipe, the run folder, the loaded data and its preprocessing, the strategy, the
extra callbacks, the verbosity, and the teacher a phase distills from (compress's).

The recipe is the one ``recipe.json`` holds: its ``batch_size`` is per replica.
:attr:`RunContext.global_batch` is what one step of training reads (per-replica batch x
replicas), and :attr:`RunContext.batched` the recipe the data pipelines read (the same recipe
with the global batch): the one place the two meet.

Example:
    >>> from keras_vgg.finetune.recipe import Recipe
    >>> run = RunContext(Recipe().but({"data.batch_size": 16}), "runs/x", splits=None, mode=None)
    >>> run.global_batch, run.batched.data.batch_size, run.folder.best.name
    (16, 16, 'best.keras')
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from keras_vgg.finetune import distribute
from keras_vgg.finetune.recipe import Recipe
from keras_vgg.run_folder import RunFolder


@dataclass(frozen=True)
class RunContext:
    """What a phase needs (see the module docstring); ``strategy`` None is the default one."""

    recipe: Recipe
    folder: RunFolder
    splits: object  # keras_vgg.finetune.data.Splits
    mode: object  # keras_vgg.preprocessing.Preprocessing
    strategy: object = None
    callbacks: tuple = ()
    verbose: int = 2
    teacher: object = None  # keras_vgg.finetune.distillation.Teacher: fit a Distiller

    def __post_init__(self):
        if not isinstance(self.folder, RunFolder):
            object.__setattr__(self, "folder", RunFolder(self.folder))
        if self.strategy is None:
            object.__setattr__(self, "strategy", distribute.make_strategy("default"))
        object.__setattr__(self, "callbacks", tuple(self.callbacks))

    @property
    def global_batch(self) -> int:
        """The batch one training step reads: the recipe's (per replica) x replicas."""
        return self.recipe.data.batch_size * self.strategy.num_replicas_in_sync

    @functools.cached_property
    def batched(self) -> Recipe:
        """The recipe with the global batch: what the data pipelines batch by."""
        return self.recipe.but({"data.batch_size": self.global_batch})

    def but(self, **changes) -> RunContext:
        """The same context with ``changes`` (e.g. another folder or recipe)."""
        return dataclasses.replace(self, **changes)
