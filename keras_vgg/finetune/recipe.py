"""The recipe: every setting of a fine-tune run as one typed record in sections.

``data`` (where the images come from, how they are split, cached, augmented and batched),
``model`` (the variant, its weights, input size and head), ``phases`` (a list: each phase
freezes, trains for some epochs at a rate), ``export`` and ``compress`` (what happens after
training); the run-wide keys (``seed``, ``deterministic``, ``mixed_precision``...) stay at the
top. A key is spelled with dots: ``data.batch_size``, ``phases.1.epochs`` (phases count from
0). A recipe of keras-vgg 0.1's flat keys (``phase2_epochs``, ``batch_size``) is refused
with the new spelling of each.

Example:
    >>> from keras_vgg.finetune.recipe import Recipe
    >>> recipe = Recipe().but({"data.batch_size": 16, "phases.1.epochs": 3})
    >>> recipe.model.name, recipe.data.batch_size, [p.epochs for p in recipe.phases]
    ('vgg16', 16, [5, 3])
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from keras_vgg._helpers import closest, did_you_mean, expected
from keras_vgg.configs import get_config, list_models, min_input_size
# The names, from the one light module: reading a recipe loads no TensorFlow.
from keras_vgg.choices import (CRITERIA, FORMATS, NAMED_MODES, PLANS, QUANTIZE,
                               SOURCE_SUFFIXES, STRATEGIES, WEIGHTS_NAMES)

HEADS = ("avg", "max", "flatten", "fc")
AUGMENTATIONS = ("flip", "rotation", "zoom", "contrast")
CACHES = ("auto", "memory", "disk", "none")
AUTO = "auto"  # the one string a yes/no key also takes: decided by the run (see each key)
NO_WEIGHTS = ("", "none", "null")  # what `model.weights` accepts as "no weights" when typed


@dataclass
class DataSection:
    """``source`` is "builtin", a folder of class sub-folders, or "tfds:NAME"."""

    source: str = "builtin"
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
    augment: list = field(default_factory=lambda: list(AUGMENTATIONS))
    augment_factor: float = 0.1
    batch_size: int = 32  # per replica
    # decoded, resized images: auto (memory when they fit a share of the RAM, else disk) |
    # memory | disk (the run folder) | none (decoded every epoch)
    cache: str = "auto"
    tfrecords: str | None = None  # folders: write them once as TFRecords here, train from them


@dataclass
class ModelSection:
    """The variant (a name from ``keras-vgg list``, a paper name such as "D"), its weights and
    the head on top."""

    name: str = "vgg16"
    weights: str | None = None  # None (also "none", "null", ""), "imagenet" or a weights file
    preprocessing: str = AUTO  # "auto": the weights' mode; "torch" when training from None
    image_size: int = 224
    head: str = "avg"  # avg | max | flatten (headless base) | fc (keep fc1/fc2)
    head_units: int = 0  # an extra Dense(relu) layer in the head when > 0
    head_dropout: float = 0.2
    bn_training: bool | str = AUTO  # update unfrozen BN statistics? auto: when weights is None


@dataclass
class Phase:
    """One phase: blocks 1..N held fixed (``freeze``: all | none | blockN), then ``epochs``
    at the Adam rate ``lr``. A phase of 0 epochs is skipped. ``lora_rank`` R > 0: the conv
    and dense kernels the phase trains in the base stay fixed and learn through rank-R
    adapters (keras_vgg.finetune.lora); the head trains fully. 0: off."""

    epochs: int = 5
    lr: float = 1e-3
    freeze: str = "none"
    lora_rank: int = 0


@dataclass
class ExportSection:
    formats: list = field(default_factory=list)  # at the end: saved_model, tflite, onnx, openvino
    quantize: list = field(default_factory=lambda: ["none"])  # none | float16 | dynamic | int8


@dataclass
class CompressSection:
    """After the run, a compress phase (keras_vgg.finetune.compress) when ``flops``,
    ``params`` or ``latency`` is set: the fraction of FLOPs (or parameters, or the convs'
    time in the TFLite file) the pruned model keeps."""

    flops: float = 0.0  # 0: no compress phase
    params: float = 0.0
    latency: float = 0.0
    steps: int = 1  # prune + fine-tune rounds to reach it (1: one-shot)
    epochs: int = 5  # fine-tune epochs after each round
    lr: float = 1e-4
    criterion: str = AUTO  # auto (BN scale where there is BN, else L1) | l1 | bn_scale
    # uniform: every conv keeps the same share; sensitivity: each conv pruned alone on the
    # validation split, the budget spent where the loss rises least
    plan: str = "uniform"
    max_drop: float = 1.0  # points the pruned model may lose before the report warns
    # The pruned model learns from the unpruned one too (keras_vgg.finetune.distillation):
    # its softened class scores at `temperature` and, weighted `feature_weight` (0: off),
    # its block outputs. false: from the labels alone.
    distill: bool = True
    temperature: float = 3.0
    feature_weight: float = 1.0


def _default_phases():
    return [Phase(epochs=5, lr=1e-3, freeze="all"), Phase(epochs=5, lr=1e-5, freeze="block4")]


@dataclass
class Recipe:
    """A fine-tune run: the sections, then the run-wide keys."""

    name: str = "builtin"
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    # Default: the head alone on the frozen base, then blocks 5 and up at a low rate.
    phases: list = field(default_factory=_default_phases)
    export: ExportSection = field(default_factory=ExportSection)
    compress: CompressSection = field(default_factory=CompressSection)
    feature_cache: bool | str = AUTO  # phase 0's base outputs computed once (auto: when it can)
    class_weight: str = "balanced"  # balanced | none
    early_stopping_patience: int = 5  # 0: off
    reduce_lr_patience: int = 2  # 0: off
    tensorboard: bool = True
    seed: int = 0  # every random source: weights, data order and augmentation per epoch
    # Deterministic kernels (TensorFlow's op determinism, torch's deterministic algorithms;
    # JAX on the CPU already is): the same recipe and seed give the same figures.
    deterministic: bool = True
    strategy: str = "default"  # default | mirrored | multi_worker (TF_CONFIG) | tpu
    # auto: mixed precision where the hardware computes it fast (keras_vgg.precision: bfloat16
    # on CPUs with AMX/AVX512-BF16 and bf16 GPUs, float16 on older tensor-core GPUs); true:
    # always (mixed_float16 on a GPU, mixed_bfloat16 elsewhere); false: float32 throughout,
    # the feature cache and evaluation included.
    mixed_precision: bool | str = AUTO
    jit_compile: bool = False  # XLA-compile the train and predict steps

    def to_dict(self) -> dict:
        """The recipe as nested plain values (what recipe.json and ``--dry-run`` hold)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "the recipe") -> "Recipe":
        """A checked recipe from nested values (a recipe file's mapping). Unknown keys are
        refused with the closest one; keras-vgg 0.1's flat keys with their new spelling."""
        values = dict(values)
        _refuse_old_keys(values, source)
        _refuse_unknown(values, _names(cls), "", source)
        for key, kind in SECTIONS.items():
            values[key] = _section(kind, values.get(key, {}), key, source)
        values["phases"] = _phases(values.get("phases"), source)
        return cls(**values).validate()

    def but(self, changes: dict) -> "Recipe":
        """A new recipe with ``changes``, dotted keys to values, checked like a file.

        >>> Recipe().but({"model.name": "A", "phases": [{"epochs": 2}]}).model.name
        'vgg11'
        """
        values = self.to_dict()
        for key, value in changes.items():
            set_dotted(values, key, value)
        return Recipe.from_dict(values, source="the changes")

    @property
    def epochs(self) -> int:
        """The epochs every phase plans, together."""
        return sum(phase.epochs for phase in self.phases)

    def validate(self) -> "Recipe":
        """Checks every key; returns self. Each error names the dotted key and what was
        expected. The change it makes: ``model.name`` becomes the config table's name
        ("D" -> "vgg16"), and the spellings of "none" become None or []."""
        for prefix, record in (("", self), *((f"{k}.", getattr(self, k)) for k in SECTIONS),
                               *((f"phases.{i}.", p) for i, p in enumerate(self.phases))):
            for key in _names(type(record)):
                if key not in SECTIONS and key != "phases":
                    _check_type(record, key, prefix)
        try:  # names, paper names ("D") and builder names resolve to the table's name
            self.model.name = get_config(self.model.name).name
        except ValueError:
            _one_of("model.name", self.model.name, list_models())
        _check_choices(self)
        _check_numbers(self)
        _check_weights(self.model)
        if self.feature_cache is True and self.data.augment:
            raise ValueError(
                "The feature cache computes each image's features once, so it cannot augment. "
                "Expected data.augment=[] with feature_cache=true. Received: "
                f"data.augment={self.data.augment}")
        return self


SECTIONS = {"data": DataSection, "model": ModelSection, "export": ExportSection,
            "compress": CompressSection}


def dotted_items(values: dict) -> dict:
    """{dotted key: value} of nested recipe values, as an override spells each key:
    ``{"data.source": "builtin", "phases.0.epochs": 6, ...}``."""
    items = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        elif prefix == "phases." and isinstance(value, list):
            for index, item in enumerate(value):
                walk(f"{prefix}{index}.", item)
        else:
            items[prefix[:-1]] = value

    walk("", values)
    return items


def phase_name(index: int) -> str:
    """The run folder's name of phase ``index`` (counted from 0): "phase1", "phase2"..."""
    return f"phase{index + 1}"


def _names(kind) -> list[str]:
    return [f.name for f in dataclasses.fields(kind)]


# keras-vgg 0.1's flat keys and their spelling in sections.
_MOVED = {"data": ("train_split", "val_split", "validation_split", "test_split", "test_data",
                   "image_key", "label_key", "data_dir", "builtin_images_per_class", "augment",
                   "augment_factor", "batch_size", "cache", "tfrecords"),
          "model": ("weights", "preprocessing", "image_size", "head", "head_units",
                    "head_dropout", "bn_training")}
OLD_KEYS = {
    **{key: f"{section}.{key}" for section, keys in _MOVED.items() for key in keys},
    **{f"phase{n + 1}_{key}": f"phases.{n}.{key}" for n in (0, 1)
       for key in ("epochs", "lr", "freeze")},
    # 0.1's compress keys (the section's later keys never had a flat spelling)
    **{f"compress_{key}": f"compress.{key}" for key in (
        "flops", "params", "steps", "epochs", "lr", "criterion", "max_drop")},
    "export_formats": "export.formats", "export_quantize": "export.quantize",
}


def _refuse_old_keys(values, source):
    old = [key for key in values if key in OLD_KEYS]
    if old:
        spelled = ", ".join(f"{key} -> {OLD_KEYS[key]}" for key in old)
        raise ValueError(f"Recipe keys in keras-vgg 0.1's flat form in {source}: recipes are in "
                         f"sections now. Expected: {spelled}")
    for key, what in (("data", "data.source"), ("model", "model.name")):
        if isinstance(values.get(key), str):
            raise ValueError(f"Expected `{key}` to be a section in {source}; the "
                             f"{'dataset' if key == 'data' else 'variant'} is now {what}. "
                             f"Received: {key}={values[key]!r} (write {what}={values[key]})")


def _refuse_unknown(values: dict, names, prefix, source):
    unknown = sorted(set(values) - set(names))
    if not unknown:
        return
    dotted = [prefix + name for name in names]
    guesses = [_old_key_guess(prefix + key) or did_you_mean(prefix + key, dotted)
               for key in unknown]
    if len(unknown) == 1 and guesses[0]:  # the closest key, not all of them
        raise ValueError(f"Unknown recipe key {prefix + unknown[0]!r} in {source}{guesses[0]}")
    raise ValueError(f"Unknown recipe key(s) {[prefix + k for k in unknown]} in {source}. "
                     f"Expected keys from {dotted}" + ("".join(guesses) or "."))


def _old_key_guess(key) -> str:
    """A misspelt 0.1 key (``phase1_epoch``): ". Did you mean 'phases.0.epochs'?", else ""."""
    match = closest(key, OLD_KEYS) if "." not in key else None
    return f". Did you mean {OLD_KEYS[match]!r}?" if match else ""


def _section(kind, given, key, source):
    """A section record from a mapping (or the record itself)."""
    if isinstance(given, kind):
        return copy.deepcopy(given)
    if not isinstance(given, dict):
        raise expected(f"`{key}` to be a section: a mapping of {_names(kind)}",
                       **{key: given})
    _refuse_unknown(given, _names(kind), f"{key}.", source)
    return kind(**given)


def _phases(given, source) -> list:
    if given is None:
        return _default_phases()
    if not isinstance(given, (list, tuple)) or not given:
        raise expected("`phases` to be a list of phases, each a mapping of "
                       f"{_names(Phase)}", phases=given)
    return [_section(Phase, phase, f"phases.{i}", source) for i, phase in enumerate(given)]


def set_dotted(values: dict, key: str, value):
    """Sets ``key`` (dotted: ``data.batch_size``, ``phases.1.epochs``) in nested ``values``.
    A missing section is created; a mapping set at ``phases.N`` adds a phase after the last.
    ``value`` is copied: a later key set inside it never changes the caller's object."""
    parts, value = key.split("."), copy.deepcopy(value)
    node = values
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[:depth + 1]), key)
    last = parts[-1]
    if not isinstance(node, list):
        node[last] = value
    elif _index(node, last, key, append=isinstance(value, dict)) == len(node):
        node.append(value)  # phases.N={...}: a whole phase after the last
    else:
        node[int(last)] = value


def _child(node, part, path, key):
    if isinstance(node, list):
        return node[_index(node, part, key, append=False)]
    if part not in node:
        node[part] = ([dataclasses.asdict(p) for p in _default_phases()] if path == "phases"
                      else {})
    elif isinstance(node[part], (list, tuple)):
        node[part] = list(node[part])
    if not isinstance(node[part], (dict, list)):
        raise expected(f"`{path}` to be a section to set {key} in", **{path: node[part]})
    return node[part]


def _index(items, part, key, append):
    count = len(items)
    if not part.isdigit() or int(part) > count or (int(part) == count and not append):
        raise ValueError(f"Expected an index from 0 to {count - 1} in {key} (the recipe has "
                         f"{count} phase{'s' if count != 1 else ''}; add one with "
                         f"phases.{count}={{...}} or set phases=[...]). Received: {part!r}")
    return int(part)


def _check_choices(recipe: Recipe):
    data, model = recipe.data, recipe.model
    for key, value, allowed in (
            ("model.head", model.head, HEADS), ("data.cache", data.cache, CACHES),
            ("class_weight", recipe.class_weight, ("balanced", "none")),
            ("model.preprocessing", model.preprocessing, (AUTO,) + NAMED_MODES),
            ("strategy", recipe.strategy, STRATEGIES),
            ("compress.criterion", recipe.compress.criterion, CRITERIA),
            ("compress.plan", recipe.compress.plan, PLANS)):
        _one_of(key, value, allowed)
    for key, values, allowed in (("data.augment", data.augment, AUGMENTATIONS),
                                 ("export.formats", recipe.export.formats, FORMATS),
                                 ("export.quantize", recipe.export.quantize, QUANTIZE)):
        for item in values:
            _one_of(key, item, allowed)
    for index, phase in enumerate(recipe.phases):
        freeze_blocks(phase.freeze, key=f"phases.{index}.freeze")


def _check_numbers(recipe: Recipe):
    for index, phase in enumerate(recipe.phases):
        _at_least(f"phases.{index}.epochs", phase.epochs, 0)
        _positive(f"phases.{index}.lr", phase.lr)
        _check_lora(recipe, index)
    if recipe.epochs == 0:
        raise ValueError("Expected a phase with epochs > 0. Received: "
                         + ", ".join(f"phases.{i}.epochs=0" for i in range(len(recipe.phases))))
    data, model = recipe.data, recipe.model
    for key, value, low in (("data.batch_size", data.batch_size, 1),
                            ("data.builtin_images_per_class", data.builtin_images_per_class, 1),
                            ("model.head_units", model.head_units, 0),
                            ("early_stopping_patience", recipe.early_stopping_patience, 0),
                            ("reduce_lr_patience", recipe.reduce_lr_patience, 0)):
        _at_least(key, value, low)
    for key, value in (("model.head_dropout", model.head_dropout),
                       ("data.augment_factor", data.augment_factor)):
        if not 0 <= value < 1:
            raise expected(f"`{key}` in [0, 1)", **{key: value})
    if not 0 < data.validation_split < 1:
        raise expected("`data.validation_split` in (0, 1)",
                       **{"data.validation_split": data.validation_split})
    _check_test_split(data)
    _check_compress(recipe.compress)
    smallest = min_input_size(model.name)
    if model.image_size < smallest:
        raise expected(f"`model.image_size` >= {smallest} for {model.name}",
                       **{"model.image_size": model.image_size})


def _check_lora(recipe: Recipe, index: int):
    """``phases.N.lora_rank``: 0 (off) or a rank, on a phase that trains part of the base and
    that trains on images (the feature cache trains the head alone). A rank above a layer's
    size is refused once the model is built (keras_vgg.finetune.lora.check_ranks)."""
    phase, key = recipe.phases[index], f"phases.{index}.lora_rank"
    if phase.lora_rank < 0:
        raise expected(f"`{key}` >= 0 (0: no LoRA; R > 0: rank-R adapters)",
                       **{key: phase.lora_rank})
    if not phase.lora_rank:
        return
    if phase.freeze == "all":
        raise expected(f"`{key}` = 0 on a phase that trains nothing of the base (LoRA adapts "
                       "the kernels a phase trains; the head trains fully)",
                       **{key: phase.lora_rank, f"phases.{index}.freeze": phase.freeze})
    if index == 0 and recipe.feature_cache is True:
        raise expected(f"`{key}` = 0 with feature_cache=true (phase 0 then trains the head "
                       "alone on the base's outputs)", **{key: phase.lora_rank,
                                                         "feature_cache": True})


def _check_test_split(data: DataSection):
    """``test_split``: a split name for tfds, a share for folders (with room left to train),
    and ``test_data`` only for folders, instead of a share."""
    share = data.test_split
    if data.source.startswith("tfds:"):
        if data.test_data:
            raise expected("`data.test_data` unset with tfds data (name its test split with "
                           "data.test_split)", **{"data.test_data": data.test_data,
                                                  "data.source": data.source})
        if not isinstance(share, str) and share != 0:
            raise expected("`data.test_split` to name a split of the tfds dataset (e.g. 'test', "
                           "'train[90%:]') or '' for none", **{"data.test_split": share})
        return
    if isinstance(share, (str, bool)) or not 0 <= share < 1:
        raise expected("`data.test_split` to be the share of each class held out for test, "
                       "in [0, 1) (a split name is for tfds data)", **{"data.test_split": share})
    if data.validation_split + share >= 1:
        raise expected("`data.validation_split` + `data.test_split` < 1 (images left to train "
                       "on)", **{"data.validation_split": data.validation_split,
                                 "data.test_split": share})
    if data.test_data and share:
        raise expected("one of `data.test_split` and `data.test_data`",
                       **{"data.test_split": share, "data.test_data": data.test_data})


def _check_compress(section: CompressSection):
    targets = ("flops", "params", "latency")
    for key in targets:
        if not 0 <= getattr(section, key) <= 1:
            raise expected(f"`compress.{key}` to be the fraction to keep, in (0, 1], or 0 for "
                           "no compress phase", **{f"compress.{key}": getattr(section, key)})
    if sum(bool(getattr(section, key)) for key in targets) > 1:
        raise expected("one of `compress.flops`, `compress.params` and `compress.latency`",
                       **{f"compress.{key}": getattr(section, key) for key in targets
                          if getattr(section, key)})
    _at_least("compress.steps", section.steps, 1)
    _at_least("compress.epochs", section.epochs, 0)
    _positive("compress.lr", section.lr)
    _positive("compress.temperature", section.temperature)
    _at_least("compress.feature_weight", section.feature_weight, 0)
    if not 0 <= section.max_drop <= 100:
        raise expected("`compress.max_drop` to be the accuracy points the pruned model may "
                       "lose, in [0, 100]", **{"compress.max_drop": section.max_drop})


def _check_weights(model: ModelSection):
    if (model.weights is not None and model.weights not in WEIGHTS_NAMES
            and not Path(model.weights).is_file()):
        raise ValueError(
            f"Expected `model.weights` to be none, one of {list(WEIGHTS_NAMES)} or a weights "
            f"file. Received: model.weights={model.weights!r} (no such file)")
    if model.preprocessing == AUTO and not _weights_say_preprocessing(model.weights):
        raise ValueError(
            "A plain Keras weights file does not say how its inputs were preprocessed. "
            f"Expected `model.preprocessing` set to one of {NAMED_MODES}. Received: "
            f"model.preprocessing='auto', model.weights={model.weights!r}")


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
            f"Received: {key}={spec!r}")
    return int(match.group(1))


_TYPES = {bool: (bool,), int: (int,), float: (int, float), str: (str,), list: (list, tuple)}
_OPTIONAL = ("weights", "image_key", "label_key", "data_dir", "tfrecords", "test_data")
_NONE_SPELLED = ("weights", "tfrecords", "test_data")  # "none", "null", "" read as None
_YES_NO_AUTO = ("bn_training", "feature_cache", "mixed_precision")
_LISTS = ("augment", "formats", "quantize")


def _check_type(record, key: str, prefix: str):
    """Checks (and, for "none" spellings and single list items, normalises) one key."""
    value, name = getattr(record, key), prefix + key
    if key in _YES_NO_AUTO:
        if not (isinstance(value, bool) or value == AUTO):
            raise expected(f"`{name}` to be true, false or 'auto'", **{name: value})
        return
    if key in _LISTS and isinstance(value, (str, tuple)):
        value = ([] if value in ("", "none") and key != "quantize" else [value]
                 ) if isinstance(value, str) else list(value)
        setattr(record, key, value)
    if key in _NONE_SPELLED and isinstance(value, str) and no_weights(value) is None:
        setattr(record, key, None)  # --weights none, tfrecords=null, test_data=
        return
    if value is None and key in _OPTIONAL:
        return
    if key == "test_split":  # a share (folders) or a split name (tfds): _check_test_split
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise expected(f"`{name}` to be a number (folders) or a split name (tfds)",
                           **{name: value})
        return
    default = getattr(type(record)(), key)
    wanted = type(default) if default is not None else str
    if not isinstance(value, _TYPES[wanted]) or (wanted in (int, float)
                                                 and isinstance(value, bool)):
        raise ValueError(f"Expected `{name}` to be {wanted.__name__}. Received: {name}={value!r}")


def _weights_say_preprocessing(weights) -> bool:
    """True unless ``weights`` is a plain Keras weights file: names come from the weights
    table, source files, converted files and VGGModel ``.keras`` files record their mode."""
    if weights is None or weights in WEIGHTS_NAMES or str(weights).lower().endswith(SOURCE_SUFFIXES):
        return True
    from keras_vgg.weights import file_record  # a file: read its record (loads Keras)

    info = file_record(weights) if Path(weights).is_file() else None
    return info is not None and info["preprocessing"] is not None


def no_weights(value):
    """``value`` with the command line's spellings of "no weights" read as None."""
    return None if isinstance(value, str) and value.strip().lower() in NO_WEIGHTS else value


def _one_of(key, value, allowed):
    if value not in allowed:
        error = expected(f"`{key}` to be one of {list(allowed)}", **{key: value})
        raise ValueError(f"{error}{did_you_mean(value, allowed)}")


def _at_least(key, value, low):
    if value < low:
        raise expected(f"`{key}` >= {low}", **{key: value})


def _positive(key, value):
    if not value > 0:
        raise expected(f"`{key}` > 0", **{key: value})
