"""Recipes from files: the shipped ones by name, YAML or JSON files, and ``key=value``
overrides with dotted keys (``data.batch_size=16``, ``phases.1.epochs=3``). The record itself,
its sections and its checks are :mod:`keras_vgg.finetune.recipe`.

The shipped recipes, commented YAML in the repository's ``recipes/`` folder (installed as the
data package ``keras_vgg.recipe_files``), are named by their stem (``"builtin"``,
``"tf_flowers"``...).

Example:
    >>> from keras_vgg.finetune.config import load_recipe
    >>> recipe = load_recipe("builtin", ["data.batch_size=16", "phases.0.epochs=3"])
    >>> recipe.model.name, recipe.data.batch_size, recipe.phases[0].epochs
    ('vgg11_bn', 16, 3)
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from keras_vgg._extras import MissingExtra, require
from keras_vgg._helpers import did_you_mean, format_table
from keras_vgg.finetune.recipe import OLD_KEYS, Recipe, dotted_items, no_weights, set_dotted

RECIPES_PACKAGE = "keras_vgg.recipe_files"  # the repository's recipes/ folder, installed
RECIPE_SUFFIXES = (".yaml", ".yml", ".json")
# What a recipe made for pretrained weights switches to when run with model.weights=none (each
# key the user did not set): no head-only phase (a head on frozen random blocks learns
# nothing), every block trained at the head's rate, and a model a CPU can train from random
# weights: batch-norm VGG11 at 64x64 (measured: 100% of 24 test photos, 3 classes, 72-100 s
# on 2 cores).
FROM_SCRATCH = {"model.name": "vgg11_bn", "model.image_size": 64, "data.batch_size": 16,
                "phases": [{"epochs": 15, "lr": 1e-3, "freeze": "none"}]}


def load_recipe(source: str | Path | None = None, overrides=()) -> Recipe:
    """A recipe from a shipped name or a JSON/YAML file, then ``key=value`` overrides (dotted
    keys). A file without a ``name`` key is named after itself (the run folder is runs/NAME)."""
    values, given = _recipe_values(source), _overrides(overrides)
    # the from-scratch plan first, then every key given on top (phases.0.epochs=2 changes it)
    for key, value in [*_from_scratch(values, given).items(), *given.items()]:
        set_dotted(values, key, value)
    origin = str(source) if source is not None else "the overrides"
    return Recipe.from_dict(values, source=origin)


def from_scratch_note(source: str | Path | None = None, overrides=()) -> str:
    """The line saying what ``model.weights=none`` changed in a recipe made for pretrained
    weights (``FROM_SCRATCH``, the keys not given), or "" when it changed nothing."""
    values, given = _recipe_values(source), _overrides(overrides)
    switched = _from_scratch(values, given)
    if not switched:
        return ""
    return (f"From scratch (model.weights=none): the {values.get('name', 'given')} recipe is "
            "made for pretrained weights, so this run trains every block from random weights, "
            f"with no head-only phase: {dotted_pairs(switched, skip=given)} (set any of these "
            "keys to choose otherwise).")


def _recipe_values(source) -> dict:
    values = {}
    if source is not None:
        path = _resolve(source)
        values = _read(path)
        values.setdefault("name", Path(path.name).stem)  # my_recipe.json runs as runs/my_recipe
    return values


def _overrides(overrides) -> dict:
    """{dotted key: value} of ``key=value`` strings, in order; a flat key of keras-vgg 0.1
    is refused with its new spelling."""
    given = {}
    for item in overrides:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"Expected an override of the form key=value. Received: {item!r}")
        if key in OLD_KEYS:
            raise ValueError(f"Expected the recipe key in sections: {key} is now "
                             f"{OLD_KEYS[key]}. Received: {item} (write "
                             f"{OLD_KEYS[key]}={text.strip()})")
        given[key] = parse_value(text.strip())
    return given


def _from_scratch(values, given) -> dict:
    """The ``FROM_SCRATCH`` keys not ``given`` (nor a section holding one), when a recipe
    with pretrained weights is told to start from none; {} otherwise."""
    model = values.get("model")
    pretrained = isinstance(model, dict) and no_weights(model.get("weights")) is not None
    asked = given.get("model.weights", "imagenet")
    if not pretrained or no_weights(asked) is not None:
        return {}

    def touched(key):
        return any(g == key or key.startswith(g + ".") for g in given)

    return {k: v for k, v in FROM_SCRATCH.items() if not touched(k)}


def dotted_pairs(values: dict, skip=()) -> str:
    """``key=value`` pairs of nested ``values`` with dotted keys, as an override spells them:
    ``data.source="builtin" phases.0.epochs=6``."""
    return " ".join(f"{k}={json.dumps(v)}" for k, v in dotted_items(values).items()
                    if k not in skip)


def shipped_recipes() -> list[str]:
    """The names of the shipped recipes, sorted."""
    return sorted(_shipped())


def recipe_expectation(source) -> str:
    """The ``# expect:`` comment of a recipe file (what the run should reach, how long it
    takes, measured or expected), or "" when the file has none (JSON files cannot)."""
    for line in _resolve(source).read_text(encoding="utf-8").splitlines():
        if line.startswith("# expect:"):
            return line[len("# expect:"):].strip()
    return ""


def recipes_table() -> str:
    """The shipped recipes (``keras-vgg recipes``): name, data, model and the expectation
    their files state."""
    rows = [(name, recipe.data.source, recipe.model.name, recipe_expectation(name))
            for name, recipe in ((n, load_recipe(n)) for n in shipped_recipes())]
    return "\n".join([format_table(("recipe", "data", "model", "expect"), rows),
                      f"Files (commented YAML): {recipes_folder()}",
                      "Run one: keras-vgg finetune NAME [key=value ...]; every key it sets: "
                      "keras-vgg finetune --dry-run NAME"])


def recipes_help() -> str:
    """What ``keras-vgg finetune --help`` says after the flags: which recipe runs, what the
    default ones set, and every key with its default."""
    import textwrap

    def fill(text):
        return textwrap.fill(text, 92, initial_indent="  ", subsequent_indent="    ",
                             break_on_hyphens=False)

    scratch = dotted_pairs(FROM_SCRATCH)
    try:
        builtin, folder = _read(_resolve("builtin")), _read(_resolve("folder"))
    except MissingExtra as error:  # the base install: no PyYAML to read the shipped recipes
        return f"recipes: {error}"
    return "\n".join([
        "which recipe runs: RECIPE or --config RECIPE (a shipped name from `keras-vgg recipes` "
        "or a YAML/JSON file); without it 'builtin' (no --data, or --data builtin) or 'folder' "
        "(--data DIR). They set:",
        fill("builtin: " + dotted_pairs(builtin, skip=("name",))),
        fill("folder: " + dotted_pairs(folder, skip=("name",))),
        fill(f"A recipe made for pretrained weights run with --weights none skips the "
             f"head-only phase and trains every block ({scratch}) unless you set those keys."),
        "every recipe key (key=value; phases count from 0: phases.1.epochs), with the default "
        "a recipe file leaves it at:",
        fill(dotted_pairs(Recipe().to_dict())),
    ])


def recipes_folder():
    """The folder of the shipped recipe files: the installed ``keras_vgg.recipe_files``, else
    (a checkout run without installing) the repository's ``recipes/`` beside the library."""
    try:
        return importlib.resources.files(RECIPES_PACKAGE)
    except ModuleNotFoundError as error:
        checkout = Path(__file__).resolve().parents[2]
        if (checkout / "pyproject.toml").is_file() and (checkout / "recipes").is_dir():
            return checkout / "recipes"
        raise ModuleNotFoundError(
            f"Expected the shipped recipes ({RECIPES_PACKAGE}) installed with keras_vgg. "
            f"Received: no {RECIPES_PACKAGE} beside {checkout / 'keras_vgg'}; reinstall "
            "keras-vgg (pip install \"keras-vgg[finetune]\").", name=RECIPES_PACKAGE
        ) from error


def _shipped() -> dict:
    """{name: file} of the shipped recipes."""
    return {Path(f.name).stem: f for f in recipes_folder().iterdir()
            if Path(f.name).suffix in RECIPE_SUFFIXES}


def parse_value(text: str):
    """JSON where it parses (numbers, true/false/null, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if "," in text and not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        return text


def _resolve(source):
    """A recipe file: the path given, else the shipped recipe of that name."""
    path = Path(source)
    if path.is_file():
        return path
    shipped = _shipped()
    if str(source) in shipped:
        return shipped[str(source)]
    raise ValueError(
        f"Expected `config` to be a recipe file or one of {sorted(shipped)}. "
        f"Received: config={str(source)!r}{did_you_mean(source, shipped)}"
    )


def _read(path) -> dict:
    """The mapping a YAML or JSON recipe file holds (``path``: a Path or a resource file)."""
    if Path(path.name).suffix in (".yaml", ".yml"):
        yaml = require("yaml", "finetune", package="PyYAML")
        parse, errors = yaml.safe_load, (yaml.YAMLError,)
    else:
        parse, errors = json.loads, (json.JSONDecodeError,)
    try:
        values = parse(path.read_text(encoding="utf-8"))
    except errors as error:
        raise ValueError(f"Could not parse the recipe file {path}: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"Expected the recipe file {path} to hold a mapping of keys to values.")
    return values
