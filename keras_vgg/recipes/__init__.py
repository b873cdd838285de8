"""Fine-tune recipes: data, head surgery, freezing by block, two phases, reports.

The library (``keras_vgg``) never imports this package; it imports the library.

Example:
    >>> from keras_vgg.recipes import load_recipe, shipped_recipes
    >>> "builtin" in shipped_recipes()
    True
"""

from keras_vgg.recipes.config import Recipe, load_recipe, shipped_recipes
from keras_vgg.recipes.train import RunResult, finetune

__all__ = ["Recipe", "RunResult", "finetune", "load_recipe", "shipped_recipes"]
