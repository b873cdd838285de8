"""The recipe in sections (issue 29 item 2): data, model, phases (a list), export and compress,
then the run-wide keys. Every shipped file loads into its sections; dotted overrides set nested
keys and phases; keras-vgg 0.1's flat keys are refused with their new spelling, in overrides,
files, dicts, run folders and on the command line; yes/no/auto keys are real booleans; the
dry run's JSON is a recipe file. Fast: nothing trains."""

import dataclasses
import json

import pytest

from keras_vgg import cli
from keras_vgg.finetune import Recipe, load_recipe, shipped_recipes
from keras_vgg.finetune.config import recipes_folder
from keras_vgg.finetune.recipe import (OLD_KEYS, SECTIONS, CompressSection, DataSection,
                                       ExportSection, ModelSection, Phase, dotted_items,
                                       phase_name)
from keras_vgg.finetune.run_folder import open_run_dir, read_recipe

# Every key of keras-vgg 0.1's flat recipe, in its order.
KERAS_VGG_01_KEYS = [
    "name", "data", "train_split", "val_split", "validation_split", "test_split", "test_data",
    "image_key", "label_key", "data_dir", "builtin_images_per_class", "model", "weights",
    "preprocessing", "image_size", "head", "head_units", "head_dropout", "bn_training",
    "augment", "augment_factor", "batch_size", "cache", "tfrecords", "phase1_epochs",
    "phase1_lr", "phase1_freeze", "phase2_epochs", "phase2_lr", "phase2_freeze",
    "feature_cache", "class_weight", "early_stopping_patience", "reduce_lr_patience",
    "tensorboard", "seed", "deterministic", "export_formats", "export_quantize", "strategy",
    "mixed_precision", "jit_compile", "compress_flops", "compress_params", "compress_steps",
    "compress_epochs", "compress_lr", "compress_criterion", "compress_max_drop"]
TOP = [f.name for f in dataclasses.fields(Recipe)]
YES_NO_AUTO = ["model.bn_training", "feature_cache", "mixed_precision"]


def yaml_values(name):
    import yaml

    return yaml.safe_load((recipes_folder() / f"{name}.yaml").read_text())


def refusal(call) -> str:
    with pytest.raises(ValueError) as error:
        call()
    return str(error.value)


# -- the shipped recipes ----------------------------------------------------------------------


@pytest.mark.parametrize("name", shipped_recipes())
def test_every_shipped_recipe_holds_what_its_file_says(name):
    recipe = load_recipe(name)
    assert [type(getattr(recipe, key)) for key in SECTIONS] == [
        DataSection, ModelSection, ExportSection, CompressSection]
    assert all(type(phase) is Phase for phase in recipe.phases) and recipe.phases
    loaded = dotted_items(recipe.to_dict())
    written = dotted_items(yaml_values(name))
    assert written and {key: loaded[key] for key in written} == written
    # what the file leaves out is the record's default
    default = dotted_items(Recipe().to_dict())
    for key, value in loaded.items():
        if key not in written and not key.startswith("phases."):
            assert value == default[key], (name, key)
    assert recipe.epochs == sum(phase.epochs for phase in recipe.phases)


def test_the_builtin_recipe_has_one_phase_that_trains_every_block():
    recipe = load_recipe("builtin")
    assert recipe.phases == [Phase(epochs=6, lr=0.001, freeze="none")]
    assert (recipe.model.name, recipe.model.weights, recipe.model.image_size) == (
        "vgg11_bn", None, 32)
    assert (recipe.data.source, recipe.data.builtin_images_per_class, recipe.data.batch_size,
            recipe.data.augment) == ("builtin", 600, 32, ["flip"])
    assert (recipe.data.validation_split, recipe.data.test_split) == (0.1, 0.35)
    assert recipe.epochs == 6 and recipe.early_stopping_patience == 5


def test_the_folder_recipe_has_a_head_phase_then_blocks_5_and_up():
    recipe = load_recipe("folder")
    assert recipe.phases == [Phase(epochs=5, lr=0.001, freeze="all"),
                             Phase(epochs=5, lr=1e-5, freeze="block4")]
    assert type(recipe.phases[1].lr) is float  # 1.0e-5 in the file: YAML 1.1 reads 1e-5 as text
    assert (recipe.model.name, recipe.model.weights, recipe.model.image_size) == (
        "vgg16", "imagenet", 224)
    assert recipe.data.source == "path/to/folder_of_class_subfolders" and recipe.epochs == 10
    assert [phase_name(i) for i in range(len(recipe.phases))] == ["phase1", "phase2"]


def test_the_default_record():
    recipe = Recipe()
    assert recipe.phases == [Phase(epochs=5, lr=1e-3, freeze="all"),
                             Phase(epochs=5, lr=1e-5, freeze="block4")]
    assert Phase() == Phase(epochs=5, lr=1e-3, freeze="none")
    assert list(recipe.to_dict()) == TOP
    assert TOP[:6] == ["name", "data", "model", "phases", "export", "compress"]
    assert (recipe.feature_cache, recipe.mixed_precision, recipe.model.bn_training) == (
        "auto", "auto", "auto")


# -- dotted overrides -------------------------------------------------------------------------


def test_dotted_overrides_set_nested_keys():
    recipe = load_recipe("builtin", ["data.batch_size=8", "model.image_size=48",
                                     "model.name=vgg11", "data.augment=flip,zoom",
                                     "export.formats=tflite", "export.quantize=none,int8",
                                     "compress.flops=0.3", "phases.0.epochs=2",
                                     "phases.0.lr=0.01", "seed=4"])
    assert (recipe.data.batch_size, recipe.model.image_size, recipe.model.name) == (
        8, 48, "vgg11")
    assert recipe.data.augment == ["flip", "zoom"]
    assert (recipe.export.formats, recipe.export.quantize) == (["tflite"], ["none", "int8"])
    assert recipe.compress.flops == 0.3 and recipe.seed == 4
    assert recipe.phases == [Phase(epochs=2, lr=0.01, freeze="none")]
    # everything else is the file's
    before, after = dotted_items(load_recipe("builtin").to_dict()), dotted_items(recipe.to_dict())
    assert sorted(k for k in after if after[k] != before[k]) == sorted([
        "data.batch_size", "model.image_size", "model.name", "data.augment", "export.formats",
        "export.quantize", "compress.flops", "phases.0.epochs", "phases.0.lr", "seed"])


def test_one_key_of_one_phase_of_two():
    recipe = load_recipe("folder", ["phases.1.epochs=3", "phases.1.freeze=block2"])
    assert recipe.phases == [Phase(epochs=5, lr=1e-3, freeze="all"),
                             Phase(epochs=3, lr=1e-5, freeze="block2")]
    assert recipe.epochs == 8


def test_a_whole_phase_list_as_json():
    text = 'phases=[{"freeze": "all", "epochs": 1}, {"freeze": "block3", "epochs": 2, "lr": 1e-4}]'
    recipe = load_recipe("folder", [text])
    assert recipe.phases == [Phase(epochs=1, lr=1e-3, freeze="all"),
                             Phase(epochs=2, lr=1e-4, freeze="block3")]
    assert load_recipe("builtin", ['phases=[{"freeze": "all", "epochs": 1}]']).phases == [
        Phase(epochs=1, lr=1e-3, freeze="all")]
    # the same in Python, checked as a file is
    assert Recipe().but({"phases": [{"freeze": "all", "epochs": 1},
                                    {"freeze": "block3", "epochs": 2, "lr": 1e-4}]}
                        ).phases == recipe.phases


def test_a_phase_is_added_after_the_last_with_a_mapping():
    recipe = load_recipe("builtin", ['phases.1={"epochs": 2, "freeze": "block2"}'])
    assert recipe.phases == [Phase(epochs=6, lr=1e-3, freeze="none"),
                             Phase(epochs=2, lr=1e-3, freeze="block2")]
    third = Recipe().but({"phases.2": {"epochs": 1, "lr": 1e-6, "freeze": "block5"}})
    assert [p.freeze for p in third.phases] == ["all", "block4", "block5"]
    assert [phase_name(i) for i in range(3)] == ["phase1", "phase2", "phase3"]


def test_a_key_of_a_phase_past_the_end_is_refused_naming_the_count():
    assert refusal(lambda: load_recipe("builtin", ["phases.1.epochs=2"])) == (
        "Expected an index from 0 to 0 in phases.1.epochs (the recipe has 1 phase; add one "
        "with phases.1={...} or set phases=[...]). Received: '1'")
    assert refusal(lambda: load_recipe("folder", ["phases.2.lr=0.1"])) == (
        "Expected an index from 0 to 1 in phases.2.lr (the recipe has 2 phases; add one "
        "with phases.2={...} or set phases=[...]). Received: '2'")
    assert "the recipe has 1 phase;" in refusal(
        lambda: load_recipe("builtin", ['phases.3={"epochs": 2}']))  # no gap
    assert "the recipe has 1 phase;" in refusal(
        lambda: load_recipe("builtin", ["phases.first.epochs=2"]))


def test_the_setters_leave_what_they_were_given_unchanged():
    phases = [{"epochs": 1, "freeze": "all"}]
    recipe = Recipe().but({"phases": phases, "phases.0.epochs": 3})
    assert recipe.phases == [Phase(epochs=3, lr=1e-3, freeze="all")]
    assert phases == [{"epochs": 1, "freeze": "all"}]
    # the from-scratch plan too: a key set inside it one call is not there the next
    load_recipe("folder", ["model.weights=none", "phases.0.epochs=2", "phases.0.lr=0.5"])
    assert load_recipe("folder", ["model.weights=none"]).phases == [
        Phase(epochs=15, lr=1e-3, freeze="none")]


@pytest.mark.parametrize("override, unknown, closest", [
    ("data.batch_sise=3", "data.batch_sise", "data.batch_size"),
    ("model.nme=vgg11", "model.nme", "model.name"),
    ("phases.0.frezee=all", "phases.0.frezee", "phases.0.freeze"),
    ("compress.flop=0.3", "compress.flop", "compress.flops"),
    ("export.format=tflite", "export.format", "export.formats"),
    ("seeed=1", "seeed", "seed"),
    ("dat.source=x", "dat", "data"),  # the section is what is unknown
])
def test_unknown_dotted_keys_get_the_closest(override, unknown, closest):
    assert refusal(lambda: load_recipe("builtin", [override])) == (
        f"Unknown recipe key {unknown!r} in builtin. Did you mean {closest!r}?")


def test_a_key_inside_a_value_is_refused():
    assert refusal(lambda: load_recipe("builtin", ["data.batch_size.x=3"])) == (
        "Expected `data.batch_size` to be a section to set data.batch_size.x in. Received: "
        "data.batch_size=32")
    assert refusal(lambda: load_recipe("builtin", ["phases=[]"])).startswith(
        "Expected `phases` to be a list of phases, each a mapping of ['epochs', 'lr', "
        "'freeze']. Received: phases=[]")
    assert refusal(lambda: load_recipe("builtin", ["phases.0=3"])) == (
        "Expected `phases.0` to be a section: a mapping of ['epochs', 'lr', 'freeze']. "
        "Received: phases.0=3")


# -- keras-vgg 0.1's flat keys ----------------------------------------------------------------


def test_every_flat_key_of_keras_vgg_01_has_a_place():
    moved = [key for key in KERAS_VGG_01_KEYS if key not in TOP]
    assert sorted(OLD_KEYS) == sorted(k for k in moved if k not in ("data", "model"))
    new = dotted_items(Recipe().to_dict())
    for old, spelled in OLD_KEYS.items():
        assert spelled in new, (old, spelled)  # a key of the record
    assert not set(OLD_KEYS) & set(TOP)


@pytest.mark.parametrize("old", sorted(OLD_KEYS))
def test_a_flat_key_as_an_override_names_its_new_spelling(old, tmp_path, monkeypatch, capsys):
    new = OLD_KEYS[old]
    message = refusal(lambda: load_recipe("builtin", [f"{old}=1"]))
    assert message == (f"Expected the recipe key in sections: {old} is now {new}. "
                       f"Received: {old}=1 (write {new}=1)")
    # on the command line: one line, exit 2, and nothing written
    monkeypatch.chdir(tmp_path)
    assert cli.main(["finetune", f"{old}=1"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"keras-vgg finetune: {message}\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("old", sorted(OLD_KEYS))
def test_a_flat_key_in_a_file_or_dict_names_its_new_spelling(old, tmp_path):
    new = OLD_KEYS[old]
    assert refusal(lambda: Recipe.from_dict({old: 1})) == (
        "Recipe keys in keras-vgg 0.1's flat form in the recipe: recipes are in sections "
        f"now. Expected: {old} -> {new}")
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"name": "old", old: 1}))
    message = refusal(lambda: load_recipe(path))
    assert message == (f"Recipe keys in keras-vgg 0.1's flat form in {path}: recipes are in "
                       f"sections now. Expected: {old} -> {new}")
    assert "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_a_flat_yaml_file_names_each_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("data: builtin\nphase2_epochs: 3\nbatch_size: 8\nseed: 1\n")
    assert refusal(lambda: load_recipe(path)) == (
        f"Recipe keys in keras-vgg 0.1's flat form in {path}: recipes are in sections now. "
        "Expected: phase2_epochs -> phases.1.epochs, batch_size -> data.batch_size")
    assert refusal(lambda: Recipe().but({"weights": "imagenet"})) == (
        "Recipe keys in keras-vgg 0.1's flat form in the changes: recipes are in sections "
        "now. Expected: weights -> model.weights")


def test_data_or_model_as_a_string_names_the_section_key(tmp_path):
    path = tmp_path / "photos.json"
    path.write_text(json.dumps({"data": "somefolder"}))
    assert refusal(lambda: load_recipe(path)) == (
        f"Expected `data` to be a section in {path}; the dataset is now data.source. "
        "Received: data='somefolder' (write data.source=somefolder)")
    assert refusal(lambda: load_recipe("builtin", ["data=somefolder"])) == (
        "Expected `data` to be a section in builtin; the dataset is now data.source. "
        "Received: data='somefolder' (write data.source=somefolder)")
    assert refusal(lambda: load_recipe("builtin", ["model=vgg16"])) == (
        "Expected `model` to be a section in builtin; the variant is now model.name. "
        "Received: model='vgg16' (write model.name=vgg16)")


def test_the_cli_names_the_new_spelling_of_an_old_key(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["finetune", "phase2_epochs=3", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("keras-vgg finetune: Expected the recipe key in sections: phase2_epochs is "
                   "now phases.1.epochs. Received: phase2_epochs=3 (write phases.1.epochs=3)\n")
    assert cli.main(["finetune", "--data", str(tmp_path), "data=photos"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "keras-vgg finetune: Expected `data` to be a section in folder; the dataset is now "
        "data.source. Received: data='photos' (write data.source=photos)"]
    assert list(tmp_path.iterdir()) == []


# -- yes, no or auto --------------------------------------------------------------------------


@pytest.mark.parametrize("key", YES_NO_AUTO)
def test_yes_no_auto_keys_take_booleans_or_auto(key):
    base = {"data.augment": []}  # the feature cache cannot augment
    for value in (True, False, "auto"):
        held = dotted_items(Recipe().but({**base, key: value}).to_dict())[key]
        assert held == value and type(held) is type(value)
    for text, value in (("true", True), ("false", False), ("auto", "auto")):
        recipe = load_recipe("builtin", ["data.augment=none", f"{key}={text}"])
        assert dotted_items(recipe.to_dict())[key] == value
    for text in ("true", "false", "yes", "1"):
        assert refusal(lambda: Recipe().but({**base, key: text})) == (
            f"Expected `{key}` to be true, false or 'auto'. Received: {key}={text!r}")
    assert refusal(lambda: load_recipe("builtin", [f'{key}="true"'])) == (
        f"Expected `{key}` to be true, false or 'auto'. Received: {key}='true'")
    assert refusal(lambda: Recipe().but({key: 1})) == (
        f"Expected `{key}` to be true, false or 'auto'. Received: {key}=1")


# -- run folders ------------------------------------------------------------------------------


def write_recipe_json(folder, values):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.json").write_text(json.dumps(values, indent=2))
    return folder


@pytest.mark.parametrize("name", shipped_recipes())
def test_recipe_json_round_trips(name, tmp_path):
    recipe = load_recipe(name, ["phases.0.epochs=2", "data.batch_size=4", "seed=9"])
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    again = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe and again.to_dict() == recipe.to_dict()
    folder = write_recipe_json(tmp_path / "run", recipe.to_dict())
    assert read_recipe(folder) == recipe


def test_a_run_folder_of_keras_vgg_01_is_refused(tmp_path):
    flat = {"name": "builtin", "data": "builtin", "model": "vgg11_bn", "weights": None,
            "image_size": 32, "batch_size": 32, "phase1_epochs": 0, "phase1_lr": 0.001,
            "phase1_freeze": "all", "phase2_epochs": 6, "phase2_lr": 0.001,
            "phase2_freeze": "none", "mixed_precision": "auto", "seed": 0}
    folder = write_recipe_json(tmp_path / "old_run", flat)
    (folder / "state.json").write_text(json.dumps({"phases_done": ["phase1"], "epoch": 0,
                                                   "complete": False}))
    message = refusal(lambda: read_recipe(folder))
    assert "keras-vgg 0.1" in message and "Start a new run" in message
    assert message == (f"The run in {folder} was started by keras-vgg 0.1 (its recipe.json has "
                       "flat keys, not sections): this version cannot continue or compress it. "
                       "Start a new run; its best.keras and exports still load.")
    assert refusal(lambda: open_run_dir(folder, None, resume=True)) == message
    before = {p.name: p.read_text() for p in folder.iterdir()}
    for argv in (["finetune", "--resume", "--run-dir", str(folder)],
                 ["finetune", "--resume", "--dry-run", "--run-dir", str(folder)]):
        assert cli.main(argv) == 2
    assert {p.name: p.read_text() for p in folder.iterdir()} == before  # nothing written


def test_a_resume_names_the_dotted_keys_that_differ(tmp_path):
    saved = load_recipe("builtin")
    folder = write_recipe_json(tmp_path / "run", saved.to_dict())
    assert open_run_dir(folder, saved, resume=True)[0] == saved
    other = saved.but({"data.batch_size": 8, "phases.0.epochs": 2})
    assert refusal(lambda: open_run_dir(folder, other, resume=True)) == (
        "A resumed run keeps its own recipe; these keys differ from "
        f"{folder / 'recipe.json'}: ['data.batch_size', 'phases.0.epochs']. Resume without "
        "changes, or start a new run directory.")
    more = saved.but({"phases.1": {"epochs": 1}})
    assert "['phases.1.epochs', 'phases.1.freeze', 'phases.1.lr']" in refusal(
        lambda: open_run_dir(folder, more, resume=True))


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    [],
    ["tf_flowers", "phases.1.epochs=3", "data.batch_size=8"],
    ["folder", "--weights", "none"],
    ["--model", "vgg13", "--image-size", "48", "--batch-size", "4", "--head", "max",
     "--mixed-precision", "--seed", "5", "--no-deterministic", "model.bn_training=false"],
])
def test_the_dry_run_prints_nested_json_that_config_reads_back(argv, capsys, tmp_path):
    assert cli.main(["finetune", "--dry-run", *argv]) == 0
    printed = capsys.readouterr().out
    values = json.loads(printed)
    assert list(values) == TOP
    assert all(isinstance(values[key], dict) for key in SECTIONS)
    assert isinstance(values["phases"], list) and all(
        list(phase) == ["epochs", "lr", "freeze"] for phase in values["phases"])
    path = tmp_path / "saved.json"
    path.write_text(printed)
    assert load_recipe(path) == Recipe.from_dict(values)
    assert cli.main(["finetune", "--dry-run", "--config", str(path)]) == 0
    assert capsys.readouterr().out == printed  # the same recipe, key for key


def test_the_finetune_flags_set_their_section_keys(capsys, tmp_path):
    assert cli.FINETUNE_FLAGS["batch_size"] == "data.batch_size"
    assert cli.main(["finetune", "--dry-run", "--data", str(tmp_path), "--model", "vgg13",
                     "--weights", "none", "--image-size", "48", "--batch-size", "4",
                     "--head", "max", "--mixed-precision", "--jit-compile",
                     "--strategy", "mirrored", "--seed", "5", "--no-deterministic"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert (values["data"]["source"], values["data"]["batch_size"]) == (str(tmp_path), 4)
    assert (values["model"]["name"], values["model"]["weights"], values["model"]["image_size"],
            values["model"]["head"]) == ("vgg13", None, 48, "max")
    assert (values["mixed_precision"], values["jit_compile"], values["strategy"],
            values["seed"], values["deterministic"]) == (True, True, "mirrored", 5, False)
    # given, the from-scratch plan keeps them; the phases it does set
    assert values["phases"] == [{"epochs": 15, "lr": 0.001, "freeze": "none"}]


@pytest.mark.parametrize("override, closest", [("phase1_epoch=1", "phases.0.epochs"),
                                               ("batch_sizes=3", "data.batch_size"),
                                               ("export_format=tflite", "export.formats")])
def test_a_misspelt_flat_key_is_pointed_to_its_new_spelling(override, closest):
    with pytest.raises(ValueError) as info:
        load_recipe("builtin", [override])
    assert str(info.value) == (f"Unknown recipe key {override.split('=')[0]!r} in builtin. "
                               f"Did you mean {closest!r}?")


def test_a_folder_without_a_recipe_is_not_a_run(tmp_path):
    with pytest.raises(ValueError) as info:
        read_recipe(tmp_path)
    assert str(info.value) == (f"Expected a fine-tune run folder (with recipe.json). Received: "
                               f"{str(tmp_path)!r} has no recipe.json")
    assert list(tmp_path.iterdir()) == []
