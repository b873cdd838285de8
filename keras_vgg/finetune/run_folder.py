"""Run folders on the fine-tuning side: naming a new one, checking one may be used (a new
run, or one to resume with its recipe and state), reading its recipe. Their layout and
lifecycle are ``keras_vgg.run_folder``'s; exporting one, ``keras_vgg.finetune.run_export``'s.

The one owner of run-folder names: ``finetune()`` and ``keras-vgg finetune`` both put a run
without a ``run_dir`` in ``runs/NAME``, or ``runs/NAME-2``, ``-3``... so that no run lands on
an earlier one.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from keras_vgg.finetune.run_folder import new_run_dir
    >>> root = Path(tempfile.mkdtemp())
    >>> new_run_dir("builtin", root).name
    'builtin'
    >>> (root / "builtin").mkdir()
    >>> new_run_dir("builtin", root).name
    'builtin-2'
"""

from __future__ import annotations

from pathlib import Path

from keras_vgg._helpers import OutputExists
from keras_vgg.finetune.recipe import OLD_KEYS, Recipe, dotted_items
from keras_vgg.run_folder import RECIPE, RunFolder, RunState

RUNS = "runs"  # where runs go without a run_dir, relative to the working folder


def new_run_dir(name: str, root=RUNS) -> Path:
    """``root/NAME``, or ``root/NAME-2``, ``-3``...: the first that does not exist yet."""
    candidate, n = Path(root) / name, 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{name}-{n}"
    return candidate


def resolve_run_dir(run_dir, recipe, overwrite=False, resume=False) -> Path:
    """The folder a run uses: ``run_dir`` when given; else ``runs/NAME`` to overwrite, or a
    new one (``new_run_dir``). A resumed run must be named."""
    if run_dir is not None:
        return Path(run_dir)
    if resume:
        raise ValueError("Expected `run_dir` (the run to continue) with resume=True. "
                         "Received: run_dir=None")
    return Path(RUNS) / recipe.name if overwrite else new_run_dir(recipe.name)


def read_recipe(folder) -> Recipe:
    """The recipe a run folder's recipe.json holds."""
    folder = RunFolder(folder)
    values = folder.read_recipe()
    if values is None:
        raise ValueError(f"Expected a fine-tune run folder (with {RECIPE}). Received: "
                         f"{str(folder)!r} has no {RECIPE}")
    if any(key in OLD_KEYS for key in values):
        raise ValueError(f"The run in {folder} was started by keras-vgg 0.1 (its "
                         f"{folder.recipe_file.name} has flat keys, not sections): this "
                         "version cannot continue or compress it. Start a new run; its "
                         "best.keras and exports still load.")
    return Recipe.from_dict(values, source=str(folder.recipe_file))


def open_run_dir(run_dir, recipe, overwrite=False, resume=False):
    """Checks ``run_dir`` may be used; returns (recipe, :class:`RunState`). Creates nothing
    yet."""
    folder = RunFolder(run_dir)
    if overwrite and resume:
        raise ValueError("Expected at most one of `overwrite` and `resume`. Received both.")
    if resume:
        if not folder.recipe_file.exists():
            raise ValueError(
                f"Nothing to resume: expected a run directory with {RECIPE}. "
                f"Received: run_dir={str(folder)!r}"
            )
        saved_recipe = read_recipe(folder)
        if recipe is not None and recipe.to_dict() != saved_recipe.to_dict():
            saved, given = dotted_items(saved_recipe.to_dict()), dotted_items(recipe.to_dict())
            differs = sorted(k for k in {*saved, *given} if saved.get(k) != given.get(k))
            raise ValueError(
                f"A resumed run keeps its own recipe; these keys differ from "
                f"{folder.recipe_file}: {differs}. "
                "Resume without changes, or start a new run directory."
            )
        state = folder.read_state() or RunState()
        if state.complete:
            raise ValueError(f"The run in {folder} is complete; there is nothing to resume.")
        return saved_recipe, state
    if folder.holds_files() and not overwrite:
        raise OutputExists(
            f"The run directory {str(folder)!r} already holds a run. Pass overwrite=True "
            "to replace it, resume=True to continue it, or choose another run_dir."
        )
    return recipe, RunState()
