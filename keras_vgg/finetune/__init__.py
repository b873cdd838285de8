"""The fine-tuning engine: it runs a recipe (a file that describes a run, see ``recipes/``).

Modules: ``recipe`` (the :class:`Recipe` record in sections, checked), ``config``
(:func:`load_recipe`: files, ``key=value`` overrides, the shipped recipes),
``data`` (tfds, folders, the built-in shapes), ``builtin`` (drawing those shapes), ``model``
(head surgery, freezing by block), ``run_folder`` (naming and checking run
folders), ``run_export`` (``export_run``, a run's model exported on its own data), ``context``
(what a run's phases need), ``phase`` (one phase:
freeze, compile, fit with the recipe's callbacks), ``compress`` (a run's model pruned,
fine-tuned again, exported and compared; ``compress_report``), ``distill`` (a smaller
variant trained from a run's model, against the same trained on labels), ``train`` (the phases,
resuming), ``report`` (metrics, pictures, the run's summary), ``distribute``
(strategies), ``loop`` (fit, and its own loop under a multi-worker strategy). It needs
the finetune extra: ``pip install "keras-vgg[finetune]"``. The library (``keras_vgg``) never
imports this package; it imports the library.

Example:
    >>> from keras_vgg.finetune import finetune, load_recipe, shipped_recipes
    >>> "builtin" in shipped_recipes(), finetune.__module__
    (True, 'keras_vgg.finetune.train')
"""

from keras_vgg._helpers import lazy_exports

# {module: the names the package gives from it}, imported when first used: reading a recipe
# (keras-vgg finetune --dry-run, keras-vgg recipes) loads no TensorFlow.
LAZY = {
    "keras_vgg.finetune.recipe": ("Recipe",),
    "keras_vgg.finetune.config": ("load_recipe", "shipped_recipes"),
    "keras_vgg.finetune.run_folder": ("new_run_dir",),
    "keras_vgg.finetune.run_export": ("export_run",),
    "keras_vgg.finetune.compress": ("compress",),
    "keras_vgg.finetune.distill": ("distill",),
    "keras_vgg.finetune.train": ("RunResult", "finetune"),
}

__all__ = ["Recipe", "RunResult", "compress", "distill", "export_run", "finetune", "load_recipe",
           "new_run_dir", "shipped_recipes"]

__getattr__, __dir__ = lazy_exports(__name__, LAZY)
