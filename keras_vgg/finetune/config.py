"""The recipe: every setting of a fine-tune run in one typed record.

Recipes are YAML or JSON files whose keys are the fields below. The shipped ones,
commented YAML in the repository's ``recipes/`` folder (installed as the data
package ``keras_vgg.recipe_files``), are named by their stem (``"builtin"``,
``"tf_flowers"``...). Overrides are ``key=value`` strings, as on the command line.

Example:
    >>> from keras_vgg.finetune.config import load_recipe
    >>> recipe = load_recipe("builtin", ["batch_size=16", "phase2_epochs=3"])
    >>> recipe.model, recipe.batch_size, recipe.phase2_epochs
    ('vgg11_bn', 16, 3)
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from keras_vgg._extras import MissingExtra, require
from keras_vgg._helpers import did_you_mean, expected, format_table
from keras_vgg.configs import get_config, list_models, min_input_size
# The names, from the one light module: reading a recipe loads no TensorFlow.
from keras_vgg.choices import (CRITERIA, FORMATS, NAMED_MODES, QUANTIZE, SOURCE_SUFFIXES,
                               STRATEGIES, WEIGHTS_NAMES)

RECIPES_PACKAGE = "keras_vgg.recipe_files"  # the repository's recipes/ folder, installed
RECIPE_SUFFIXES = (".yaml", ".yml", ".json")
HEADS = ("avg", "max", "flatten", "fc")
AUGMENTATIONS = ("flip", "rotation", "zoom", "contrast")
CACHES = ("auto", "memory", "disk", "none")
LIST_KEYS = ("augment", "export_formats", "export_quantize")
NO_WEIGHTS = ("", "none", "null")  # what `weights` accepts as "no weights" on a command line
# What a recipe made for pretrained weights switches to when run with weights=none (each key
# the user did not set): no head-only phase (a head on frozen random blocks learns nothing),
# every block trained at the head's rate, and a model a CPU can train from random weights:
# batch-norm VGG11 at 64x64 (measured: 100% of 24 test photos, 3 classes, 72-100 s on 2 cores).
FROM_SCRATCH = {"model": "vgg11_bn", "image_size": 64, "batch_size": 16, "phase1_epochs": 0,
                "phase2_epochs": 15, "phase2_freeze": "none", "phase2_lr": 1e-3}


@dataclass
class Recipe:
    """A fine-tune run. ``data`` is "builtin", a folder of class sub-folders, or "tfds:NAME"."""

    name: str = "builtin"
    data: str = "builtin"
    train_split: str = "train[:80%]"  # tfds only
    val_split: str = "train[80%:]"  # tfds only
    validation_split: float = 0.2  # folders and builtin: the stratified held-out share
    # The split that reports (validation only chooses the best epoch): for folders and
    # builtin the stratified share held out for test (0: none, the figure is then the
    # validation split's, which chose the epoch); for tfds the split's name ("test"), "" none.
    test_split: float | str = 0.0
    test_data: str | None = None  # folders: a separate folder of the same classes to test on
    image_key: str | None = None  # tfds: found from the builder's features when None
    label_key: str | None = None
    data_dir: str | None = None  # tfds: prepared datasets (None: $TFDS_DATA_DIR or ~/tensorflow_datasets)
    builtin_images_per_class: int = 120
    model: str = "vgg16"
    weights: str | None = None  # None (also "none", "null", ""), "imagenet" or a weights file
    preprocessing: str = "auto"  # "auto": the weights' mode; "torch" when training from None
    image_size: int = 224
    head: str = "avg"  # avg | max | flatten (headless base) | fc (keep fc1/fc2)
    head_units: int = 0  # an extra Dense(relu) layer in the head when > 0
    head_dropout: float = 0.2
    bn_training: str = "auto"  # update unfrozen BN statistics? auto: only when weights is None
    augment: list = field(default_factory=lambda: list(AUGMENTATIONS))
    augment_factor: float = 0.1
    batch_size: int = 32
    # decoded, resized images: auto (memory when they fit a share of the RAM, else disk) |
    # memory | disk (the run folder) | none (decoded every epoch)
    cache: str = "auto"
    tfrecords: str | None = None  # folders: write them once as TFRecords here, train from them
    phase1_epochs: int = 5
    phase1_lr: float = 1e-3
    phase1_freeze: str = "all"
    phase2_epochs: int = 5
    phase2_lr: float = 1e-5
    phase2_freeze: str = "block4"
    feature_cache: str = "auto"  # auto | true | false
    class_weight: str = "balanced"  # balanced | none
    early_stopping_patience: int = 5  # 0: off
    reduce_lr_patience: int = 2  # 0: off
    tensorboard: bool = True
    seed: int = 0  # every random source: weights, data order and augmentation per epoch
    # Deterministic kernels (TensorFlow's op determinism, torch's deterministic algorithms;
    # JAX on the CPU already is): the same recipe and seed give the same figures.
    deterministic: bool = True
    export_formats: list = field(default_factory=list)  # at the end: saved_model, tflite
    export_quantize: list = field(default_factory=lambda: ["none"])  # tflite: none|float16|dynamic|int8
    strategy: str = "default"  # default | mirrored | multi_worker (TF_CONFIG) | tpu
    # auto: mixed precision where the hardware computes it fast (keras_vgg.precision: bfloat16
    # on CPUs with AMX/AVX512-BF16 and bf16 GPUs, float16 on older tensor-core GPUs); true:
    # always (mixed_float16 on a GPU, mixed_bfloat16 elsewhere); false: float32 throughout,
    # the feature cache and evaluation included.
    mixed_precision: str = "auto"
    jit_compile: bool = False  # XLA-compile the train and predict steps
    # After the run, a compress phase (keras_vgg.finetune.compress) when one of these is set:
    # the fraction of FLOPs (or parameters) the pruned model keeps; 0: no compress phase.
    compress_flops: float = 0.0
    compress_params: float = 0.0
    compress_steps: int = 1  # prune + fine-tune rounds to reach it (1: one-shot)
    compress_epochs: int = 5  # fine-tune epochs after each round
    compress_lr: float = 1e-4
    compress_criterion: str = "auto"  # auto (BN scale where there is BN, else L1) | l1 | bn_scale
    compress_max_drop: float = 1.0  # points the pruned model may lose before the report warns

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "the recipe") -> "Recipe":
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        guesses = [did_you_mean(key, names) for key in unknown]
        if len(unknown) == 1 and guesses[0]:  # the closest key, not all of them
            raise ValueError(f"Unknown recipe key {unknown[0]!r} in {source}{guesses[0]}")
        if unknown:
            raise ValueError(
                f"Unknown recipe key(s) {unknown} in {source}. Expected keys from {names}"
                + ("".join(guesses) or ".")
            )
        return cls(**values).validate()

    def validate(self) -> "Recipe":
        """Checks every field; returns self. Each error names the key and what was expected.
        The one change it makes: ``model`` becomes the config table's name ("D" -> "vgg16")."""
        for key in (f.name for f in dataclasses.fields(self)):
            _check_type(self, key)
        try:  # names, paper names ("D") and builder names resolve to the table's name
            self.model = get_config(self.model).name
        except ValueError:
            _one_of(self, "model", list_models())
        _check_choices(self)
        _check_numbers(self)
        _check_weights(self)
        if self.feature_cache == "true" and self.augment:
            raise ValueError(
                "The feature cache computes each image's features once, so it cannot augment. "
                f"Expected augment=[] with feature_cache='true'. Received: augment={self.augment}"
            )
        return self


def _check_choices(recipe):
    for key, allowed in (("head", HEADS), ("cache", CACHES), ("class_weight", ("balanced", "none")),
                         ("feature_cache", ("auto", "true", "false")),
                         ("bn_training", ("auto", "true", "false")),
                         ("mixed_precision", ("auto", "true", "false")),
                         ("preprocessing", ("auto",) + NAMED_MODES), ("strategy", STRATEGIES),
                         ("compress_criterion", CRITERIA)):
        _one_of(recipe, key, allowed)
    for key, allowed in (("augment", AUGMENTATIONS), ("export_formats", FORMATS),
                         ("export_quantize", QUANTIZE)):
        for item in getattr(recipe, key):
            _one_of(recipe, key, allowed, value=item)
    for phase in ("phase1", "phase2"):
        freeze_blocks(getattr(recipe, f"{phase}_freeze"), key=f"{phase}_freeze")


def _check_numbers(recipe):
    for phase in ("phase1", "phase2"):
        _at_least(recipe, f"{phase}_epochs", 0)
        _positive(recipe, f"{phase}_lr")
    if recipe.phase1_epochs + recipe.phase2_epochs == 0:
        raise ValueError(
            "Expected phase1_epochs + phase2_epochs > 0. Received: phase1_epochs=0, "
            "phase2_epochs=0"
        )
    for key in ("batch_size", "builtin_images_per_class"):
        _at_least(recipe, key, 1)
    for key in ("head_units", "early_stopping_patience", "reduce_lr_patience"):
        _at_least(recipe, key, 0)
    for key in ("head_dropout", "augment_factor"):
        if not 0 <= getattr(recipe, key) < 1:
            raise ValueError(f"Expected `{key}` in [0, 1). Received: {key}={getattr(recipe, key)}")
    if not 0 < recipe.validation_split < 1:
        raise ValueError(
            f"Expected `validation_split` in (0, 1). Received: "
            f"validation_split={recipe.validation_split}"
        )
    _check_test_split(recipe)
    _check_compress(recipe)
    smallest = min_input_size(recipe.model)
    if recipe.image_size < smallest:
        raise ValueError(
            f"Expected `image_size` >= {smallest} for {recipe.model}. Received: "
            f"image_size={recipe.image_size}"
        )


def _check_test_split(recipe):
    """``test_split``: a split name for tfds, a share for folders (with room left to train),
    and ``test_data`` only for folders, instead of a share."""
    share, tfds = recipe.test_split, recipe.data.startswith("tfds:")
    if tfds:
        if recipe.test_data:
            raise expected("`test_data` unset with tfds data (name its test split with "
                           "test_split)", test_data=recipe.test_data, data=recipe.data)
        if not isinstance(share, str) and share != 0:
            raise expected("`test_split` to name a split of the tfds dataset (e.g. 'test', "
                           "'train[90%:]') or '' for none", test_split=share)
        return
    if isinstance(share, str) or isinstance(share, bool) or not 0 <= share < 1:
        raise expected("`test_split` to be the share of each class held out for test, in "
                       "[0, 1) (a split name is for tfds data)", test_split=share)
    if recipe.validation_split + share >= 1:
        raise expected("`validation_split` + `test_split` < 1 (images left to train on)",
                       validation_split=recipe.validation_split, test_split=share)
    if recipe.test_data and share:
        raise expected("one of `test_split` and `test_data`", test_split=share,
                       test_data=recipe.test_data)


def _check_compress(recipe):
    for key in ("compress_flops", "compress_params"):
        if not 0 <= getattr(recipe, key) <= 1:
            raise ValueError(f"Expected `{key}` to be the fraction to keep, in (0, 1], or 0 for "
                             f"no compress phase. Received: {key}={getattr(recipe, key)}")
    if recipe.compress_flops and recipe.compress_params:
        raise ValueError("Expected one of `compress_flops` and `compress_params`. Received: "
                         f"compress_flops={recipe.compress_flops}, "
                         f"compress_params={recipe.compress_params}")
    _at_least(recipe, "compress_steps", 1)
    _at_least(recipe, "compress_epochs", 0)
    _positive(recipe, "compress_lr")
    if isinstance(recipe.compress_max_drop, bool) or not 0 <= recipe.compress_max_drop <= 100:
        raise ValueError("Expected `compress_max_drop` to be the accuracy points the pruned "
                         "model may lose, in [0, 100]. Received: "
                         f"compress_max_drop={recipe.compress_max_drop!r}")


def _check_weights(recipe):
    if (recipe.weights is not None and recipe.weights not in WEIGHTS_NAMES
            and not Path(recipe.weights).is_file()):
        raise ValueError(
            f"Expected `weights` to be none, one of {list(WEIGHTS_NAMES)} or a weights file. "
            f"Received: weights={recipe.weights!r} (no such file)"
        )
    if recipe.preprocessing == "auto" and not _weights_say_preprocessing(recipe.weights):
        raise ValueError(
            "A plain Keras weights file does not say how its inputs were preprocessed. "
            f"Expected `preprocessing` set to one of {NAMED_MODES}. Received: "
            "preprocessing='auto', "
            f"weights={recipe.weights!r}"
        )


def freeze_blocks(spec: str, key: str = "freeze") -> int | None:
    """Number of conv blocks a freeze spec holds fixed: "none" 0, "blockN" N, "all" None."""
    if spec == "none":
        return 0
    if spec == "all":
        return None
    match = re.fullmatch(r"block([1-5])", str(spec))
    if not match:
        raise ValueError(
            f"Expected `{key}` to be 'all', 'none' or 'block1'..'block5' (blocks 1..N frozen). "
            f"Received: {key}={spec!r}"
        )
    return int(match.group(1))


def load_recipe(source: str | Path | None = None, overrides=()) -> Recipe:
    """A recipe from a shipped name or a JSON/YAML file, then ``key=value`` overrides. A file
    without a ``name`` key is named after itself (the default run folder is runs/NAME)."""
    values, given = _recipe_values(source), _overrides(overrides)
    switched = _from_scratch(values, given)
    values.update(given)
    values.update(switched)
    origin = str(source) if source is not None else "the overrides"
    return Recipe.from_dict(values, source=origin)


def from_scratch_note(source: str | Path | None = None, overrides=()) -> str:
    """The line saying what ``weights=none`` changed in a recipe made for pretrained weights
    (``FROM_SCRATCH``, the keys not given), or "" when it changed nothing."""
    values, given = _recipe_values(source), _overrides(overrides)
    switched = _from_scratch(values, given)
    if not switched:
        return ""
    pairs = " ".join(f"{k}={v}" for k, v in switched.items())
    return (f"From scratch (weights=none): the {values.get('name', 'given')} recipe is made for "
            f"pretrained weights, so this run trains every block from random weights, with no "
            f"head-only phase: {pairs} (set any of these keys to choose otherwise).")


def _recipe_values(source) -> dict:
    values = {}
    if source is not None:
        path = _resolve(source)
        values = _read(path)
        values.setdefault("name", Path(path.name).stem)  # my_recipe.json runs as runs/my_recipe
    return values


def _overrides(overrides) -> dict:
    given = {}
    for item in overrides:
        key, sep, text = str(item).partition("=")
        if not sep or not key:
            raise ValueError(f"Expected an override of the form key=value. Received: {item!r}")
        given[key.strip()] = parse_value(text.strip())
    return given


def _from_scratch(values, given) -> dict:
    """The ``FROM_SCRATCH`` keys not ``given``, when a recipe with pretrained weights is told
    to start from none; {} otherwise."""
    pretrained = _no_weights(values.get("weights")) is not None
    if not pretrained or "weights" not in given or _no_weights(given["weights"]) is not None:
        return {}
    return {k: v for k, v in FROM_SCRATCH.items() if k not in given}


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
    rows = [(name, recipe.data, recipe.model, recipe_expectation(name))
            for name, recipe in ((n, load_recipe(n)) for n in shipped_recipes())]
    return "\n".join([format_table(("recipe", "data", "model", "expect"), rows),
                      f"Files (commented YAML): {recipes_folder()}",
                      "Run one: keras-vgg finetune NAME [key=value ...]; every key it sets: "
                      "keras-vgg finetune --dry-run NAME"])


def recipes_help() -> str:
    """What ``keras-vgg finetune --help`` says after the flags: which recipe runs, what the
    default ones set, and every key with its default."""
    import textwrap

    def pairs(values, skip=("name",)):
        return " ".join(f"{k}={json.dumps(v)}" for k, v in values.items() if k not in skip)

    def fill(text):
        return textwrap.fill(text, 92, initial_indent="  ", subsequent_indent="    ")

    scratch = " ".join(f"{k}={v}" for k, v in FROM_SCRATCH.items())
    try:
        builtin, folder = _read(_resolve("builtin")), _read(_resolve("folder"))
    except MissingExtra as error:  # the base install: no PyYAML to read the shipped recipes
        return f"recipes: {error}"
    return "\n".join([
        "which recipe runs: RECIPE or --config RECIPE (a shipped name from `keras-vgg recipes` "
        "or a YAML/JSON file); without it 'builtin' (no --data, or --data builtin) or 'folder' "
        "(--data DIR). They set:",
        fill("builtin: " + pairs(builtin)),
        fill("folder: " + pairs(folder)),
        fill(f"A recipe made for pretrained weights run with --weights none skips the "
             f"head-only phase and trains every block ({scratch}) unless you set those keys."),
        "every recipe key (key=value), with the default a recipe file leaves it at:",
        fill(pairs(Recipe().to_dict(), skip=())),
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


_TYPES = {bool: (bool,), int: (int,), float: (int, float), str: (str,), list: (list, tuple)}


def _check_type(recipe: Recipe, key: str):
    value = getattr(recipe, key)
    default = getattr(Recipe(), key)
    if key in ("feature_cache", "bn_training", "mixed_precision") and isinstance(value, bool):
        setattr(recipe, key, str(value).lower())
        return
    if key in LIST_KEYS and isinstance(value, str):
        value = [] if value in ("", "none") and key != "export_quantize" else [value]
        setattr(recipe, key, value)
    if key in LIST_KEYS and isinstance(value, tuple):
        setattr(recipe, key, list(value))
    if key == "weights" and value is not None and _no_weights(value) is None:
        setattr(recipe, key, None)  # --weights none, weights=null, weights=
        return
    if key == "tfrecords" and isinstance(value, str) and _no_weights(value) is None:
        setattr(recipe, key, None)  # tfrecords=none, tfrecords=
        return
    if key == "test_data" and isinstance(value, str) and _no_weights(value) is None:
        setattr(recipe, key, None)  # test_data=none, test_data=
        return
    if value is None and key in ("weights", "image_key", "label_key", "data_dir", "tfrecords",
                                 "test_data"):
        return
    if key == "test_split":  # a share (folders) or a split name (tfds): _check_test_split
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise expected("`test_split` to be a number (folders) or a split name (tfds)",
                           test_split=value)
        return
    wanted = type(default) if default is not None else str
    ok = isinstance(value, _TYPES[wanted]) and not (
        wanted in (int, float) and isinstance(value, bool)
    )
    if not ok:
        raise ValueError(
            f"Expected `{key}` to be {wanted.__name__}. Received: {key}={value!r}"
        )


def _weights_say_preprocessing(weights) -> bool:
    """True unless ``weights`` is a plain Keras weights file: names come from the weights
    table, source files, converted files and VGGModel ``.keras`` files record their mode."""
    if weights is None or weights in WEIGHTS_NAMES or str(weights).lower().endswith(SOURCE_SUFFIXES):
        return True
    from keras_vgg.weights import file_record  # a file: read its record (loads Keras)

    info = file_record(weights) if Path(weights).is_file() else None
    return info is not None and info["preprocessing"] is not None


def _no_weights(value):
    """``value`` with the command line's spellings of "no weights" read as None."""
    return None if isinstance(value, str) and value.strip().lower() in NO_WEIGHTS else value


def _one_of(recipe, key, allowed, value=None):
    value = getattr(recipe, key) if value is None else value
    if value not in allowed:
        error = expected(f"`{key}` to be one of {list(allowed)}", **{key: value})
        raise ValueError(f"{error}{did_you_mean(value, allowed)}")


def _at_least(recipe, key, low):
    if getattr(recipe, key) < low:
        raise ValueError(f"Expected `{key}` >= {low}. Received: {key}={getattr(recipe, key)}")


def _positive(recipe, key):
    if not getattr(recipe, key) > 0:
        raise ValueError(f"Expected `{key}` > 0. Received: {key}={getattr(recipe, key)}")
