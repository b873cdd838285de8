"""Recipe files, overrides and the `keras-vgg finetune` command's argument handling."""

import json
import re

import pytest

from keras_vgg import cli
from keras_vgg.finetune import Recipe, load_recipe, shipped_recipes
from keras_vgg.finetune.builtin import make_shapes
from keras_vgg.finetune.config import parse_value
from keras_vgg.finetune.recipe import Phase, freeze_blocks
from keras_vgg.finetune.recipe import dotted_items

# A fresh Python process importing keras_vgg: about 10 s (TensorFlow's import); a hung one
# fails its test at this bound instead of holding CI.
CHILD_TIMEOUT_S = 180
SHIPPED = ["builtin", "caltech101", "cats_vs_dogs", "folder", "oxford_flowers102", "tf_flowers"]


def test_shipped_recipes_all_validate():
    assert shipped_recipes() == SHIPPED
    data = {name: load_recipe(name).data.source for name in SHIPPED}
    assert data["builtin"] == "builtin"
    assert data["tf_flowers"] == "tfds:tf_flowers"
    assert data["oxford_flowers102"] == "tfds:oxford_flowers102"
    assert (load_recipe("oxford_flowers102").data.val_split,
            load_recipe("oxford_flowers102").data.test_split) == ("validation", "test")
    assert (load_recipe("folder").data.test_split == 0.2
            and load_recipe("builtin").data.test_split == 0.35)
    assert all(load_recipe(name).deterministic and load_recipe(name).seed == 0
               for name in SHIPPED)
    assert load_recipe("tf_flowers").model.weights == "imagenet"


def test_builtin_recipe_is_offline_and_small():
    recipe = load_recipe("builtin")
    assert (recipe.model.name, recipe.model.weights, recipe.model.image_size) == (
        "vgg11_bn", None, 32)
    # From random weights: one phase that trains every block (no head-only phase).
    assert [phase.freeze for phase in recipe.phases] == ["none"]


@pytest.mark.parametrize("overrides, message", [
    (["data.test_split=1.2"],
     r"Expected `data.test_split` to be the share of each class held out for "
     r"test, in \[0, 1\).*Received: data.test_split=1.2"),
    (["data.test_split=test"],
     r"a split name is for tfds data\). Received: data.test_split='test'"),
    (["data.validation_split=0.5", "data.test_split=0.5"],
     r"Expected `data.validation_split` \+ `data.test_split` < 1 \(images left to train on\). "
     r"Received: data.validation_split=0.5, data.test_split=0.5"),
    (["data.test_split=0.2", "data.test_data=elsewhere"],
     r"Expected one of `data.test_split` and `data.test_data`"),
    (["data.source=tfds:tf_flowers", "data.test_split=0.2"],
     r"Expected `data.test_split` to name a split of the tfds dataset"),
    (["data.source=tfds:tf_flowers", "data.test_data=elsewhere"],
     r"Expected `data.test_data` unset with tfds"),
    (["deterministic=maybe"], r"Expected `deterministic` to be bool. Received: "
                              r"deterministic='maybe'"),
])
def test_test_split_and_determinism_keys_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_recipe("builtin", overrides)


def test_test_split_keys_accept_their_forms():
    assert load_recipe("builtin", ["data.test_split=0"]).data.test_split == 0
    assert load_recipe("builtin", ["data.test_split=0",
                                   "data.test_data=none"]).data.test_data is None
    tfds = load_recipe("tf_flowers", ["data.test_split=train[90%:]"])
    assert tfds.data.test_split == "train[90%:]"
    assert load_recipe("builtin", ["deterministic=false"]).deterministic is False


def test_overrides_parse_by_type():
    recipe = load_recipe("builtin", ["data.batch_size=8", "phases.0.lr=1e-4",
                                     "data.augment=flip,zoom", "tensorboard=false",
                                     "model.weights=null", "model.name=D"])
    assert recipe.data.batch_size == 8 and recipe.phases[0].lr == 1e-4
    assert recipe.data.augment == ["flip", "zoom"] and recipe.tensorboard is False
    assert recipe.model.weights is None and recipe.model.name == "vgg16"  # paper names resolve
    assert load_recipe("builtin", ["data.augment=none"]).data.augment == []
    assert parse_value("3") == 3 and parse_value("abc") == "abc" and parse_value("[1]") == [1]


@pytest.mark.parametrize("override, named", [
    ("model.name=vgg99", "model.name"), ("model.head=conv", "model.head"),
    ("data.batch_size=0", "data.batch_size"), ("data.batch_size=a", "data.batch_size"),
    ("phases.0.freeze=block6", "phases.0.freeze"), ("phases.0.lr=0", "phases.0.lr"),
    ("model.image_size=16", "model.image_size"),
    ("data.validation_split=1.5", "data.validation_split"), ("data.augment=blur", "data.augment"),
    ("model.head_dropout=1", "model.head_dropout"), ("data.cache=gpu", "data.cache"),
    ("class_weight=x", "class_weight"), ("model.preprocessing=bgr", "model.preprocessing"),
    ("model.weights=my.h5", r"model.weights='my.h5' \(no such file\)"),
    ("nonsense=1", "nonsense"), ("phases.0.epochs=-1", "phases.0.epochs"),
    ("novalue", "key=value"),
])
def test_bad_values_name_the_key(override, named):
    with pytest.raises(ValueError, match=named):
        load_recipe("builtin", [override])


@pytest.mark.parametrize("text", ["none", "None", "null", "NULL", ""])
def test_no_weights_can_be_said_on_a_command_line(text):
    assert load_recipe("folder", [f"model.weights={text}"]).model.weights is None


def test_a_transfer_recipe_without_weights_trains_every_block():
    scratch = load_recipe("folder", ["model.weights=none"])
    assert scratch.phases == [Phase(epochs=15, lr=1e-3, freeze="none")]
    # Keys the user gives go on top of that plan (its one phase is phases.0).
    chosen = load_recipe("folder", ["model.weights=none", "phases.0.lr=1e-4",
                                    "phases.0.freeze=block2"])
    assert chosen.phases == [Phase(epochs=15, lr=1e-4, freeze="block2")]
    assert load_recipe("folder", ["model.weights=none"]).phases == scratch.phases  # unchanged
    pretrained = load_recipe("folder")
    assert (pretrained.model.weights, pretrained.phases[1].freeze, pretrained.phases[1].lr) == (
        "imagenet", "block4", 1e-5)


def test_cli_weights_none_trains_from_scratch(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shapes = make_shapes(tmp_path / "shapes", images_per_class=3)
    argv = ["finetune", "--data", str(shapes), "--model", "vgg11", "--weights", "none",
            "--image-size", "32",
            'phases=[{"freeze": "all", "epochs": 1}, {"freeze": "none", "epochs": 1}]',
            "data.augment=none", "tensorboard=false", "--run-dir", "runs/none"]
    assert cli.main(argv) == 0
    saved = json.loads((tmp_path / "runs/none/recipe.json").read_text())
    assert saved["model"]["weights"] is None and saved["phases"][1]["freeze"] == "none"


def test_a_plain_keras_weights_file_must_name_its_preprocessing(tmp_path):
    import keras_vgg

    path = tmp_path / "mine.weights.h5"
    keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3)).save_weights(path)
    with pytest.raises(ValueError, match="does not say how its inputs were preprocessed"):
        load_recipe("builtin", [f"model.weights={path}"])
    assert load_recipe("builtin", [f"model.weights={path}",
                                   "model.preprocessing=caffe"]).model.weights == str(path)


def test_no_epochs_at_all_is_refused():
    with pytest.raises(ValueError, match="phases.0.epochs"):
        load_recipe("builtin", ["phases.0.epochs=0"])
    with pytest.raises(ValueError, match=re.escape(
            "Expected a phase with epochs > 0. Received: phases.0.epochs=0, phases.1.epochs=0")):
        load_recipe("folder", ["phases.0.epochs=0", "phases.1.epochs=0"])


def test_recipe_files_json_and_yaml(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"model": {"name": "vgg13", "image_size": 48}}))
    assert load_recipe(tmp_path / "r.json").model.name == "vgg13"
    assert load_recipe(tmp_path / "r.json").name == "r"  # runs/r, not runs/builtin
    (tmp_path / "named.json").write_text(json.dumps({"name": "exp1"}))
    assert load_recipe(tmp_path / "named.json").name == "exp1"
    (tmp_path / "r.yaml").write_text("model:\n  name: vgg_f\n  image_size: 64\n"
                                     "data:\n  augment: [flip]\n")
    recipe = load_recipe(tmp_path / "r.yaml", ["data.batch_size=4"])
    assert (recipe.model.name, recipe.model.image_size, recipe.data.augment,
            recipe.data.batch_size) == ("vgg_f", 64, ["flip"], 4)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="Could not parse"):
        load_recipe(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="mapping"):
        load_recipe(tmp_path / "list.json")
    with pytest.raises(ValueError, match="config"):
        load_recipe(tmp_path / "missing.json")


def test_recipe_round_trips_through_json():
    recipe = load_recipe("tf_flowers", ["phases.1.epochs=3"])
    again = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe


def test_freeze_blocks():
    assert [freeze_blocks(s) for s in ("none", "block1", "block5", "all")] == [0, 1, 5, None]


@pytest.mark.parametrize("argv, message", [
    (["finetune", "--model", "vgg99"], "model"),
    (["finetune", "--data", "/no/such/folder"], "data"),
    (["finetune", "--config", "nope"], "config"),
    (["finetune", "--resume"], "--resume with --run-dir only"),
    (["finetune", "--resume", "--run-dir", "x", "data.batch_size=3"],
     "--resume with --run-dir only"),
    (["finetune", "--resume", "--run-dir", "no_such_run"], "Nothing to resume"),
    (["finetune", "data.batch_size"], "key=value"),
])
def test_finetune_command_bad_input_exits_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_finetune_command_runs_and_never_reuses_a_run_dir(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["finetune", "--model", "vgg11",
            'phases=[{"freeze": "all", "epochs": 1, "lr": 0.001}]',
            "data.builtin_images_per_class=3", "tensorboard=false"]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Outputs in runs/builtin:" in out and "Outputs in runs/builtin-2:" in out
    assert "  best.keras" in out
    saved = json.loads((tmp_path / "runs/builtin-2/recipe.json").read_text())
    assert saved["model"]["name"] == "vgg11"
    assert cli.main(argv + ["--run-dir", "runs/builtin"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(argv + ["--run-dir", "runs/builtin", "--overwrite"]) == 0


def test_the_library_never_imports_finetune():
    import subprocess
    import sys

    code = ("import sys, keras_vgg; print([m for m in sys.modules if m.startswith("
            "('keras_vgg.finetune', 'keras_vgg.recipe_files'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=CHILD_TIMEOUT_S)
    assert out.stdout.strip() == "[]"


# -- the shipped recipe files -----------------------------------------------------------------

EXPECT = {  # the `# expect:` line of each shipped file, as `keras-vgg recipes` prints it
    "builtin": "99.5% test accuracy (1,045/1,050 images), the same on every rerun, in about "
               "85 s on a 2-core AVX-512 CPU (measured; another CPU model may differ by a few "
               "images)",
    "caltech101": "about 85-92% test accuracy (an expectation: not run here); minutes on a GPU",
    "cats_vs_dogs": "about 95-97% test accuracy (an expectation: not run here); tens of "
                    "minutes on a GPU",
    "folder": "depends on your photos (no figure: this recipe has no data of its own)",
    "oxford_flowers102": "about 80-90% test accuracy (an expectation: not run here); minutes on "
                         "a GPU",
    "tf_flowers": "about 85-90% test accuracy (an expectation: not run here); minutes on a "
                  "GPU",
}


def test_shipped_recipes_are_commented_yaml_stating_what_they_reach():
    from keras_vgg.finetune.config import recipe_expectation, recipes_folder

    files = sorted(f.name for f in recipes_folder().iterdir() if f.name.endswith(".yaml"))
    assert files == [f"{name}.yaml" for name in SHIPPED]
    assert {name: recipe_expectation(name) for name in SHIPPED} == EXPECT
    for name in SHIPPED:
        text = (recipes_folder() / f"{name}.yaml").read_text()
        assert text.startswith(f"# {name}: "), name
        if load_recipe(name).data.source.startswith("tfds:"):  # never run here: said so, not measured
            assert "Not run here" in text and "not a measurement" in text, name
    builtin = (recipes_folder() / "builtin.yaml").read_text()
    assert "about 85 s" in builtin and "2-core AVX-512" in builtin
    assert "1,045/1,050" in builtin and "same metrics.json and weights" in builtin


def test_shipped_recipe_values():
    """The values of the shipped files, exactly."""
    pretrained = {"name": "vgg16", "weights": "imagenet", "image_size": 224, "head": "avg"}

    def transfer(head_epochs, data, head_dropout=0.2):
        return {"data": {"batch_size": 32, **data},
                "model": {**pretrained, "head_dropout": head_dropout},
                "phases": [{"epochs": head_epochs, "lr": 0.001, "freeze": "all", "lora_rank": 0},
                           {"epochs": 5, "lr": 1e-05, "freeze": "block4", "lora_rank": 0}]}

    every = ["flip", "rotation", "zoom", "contrast"]
    expected = {
        "builtin": {"data": {"source": "builtin", "augment": ["flip"], "batch_size": 32,
                             "builtin_images_per_class": 600, "validation_split": 0.1,
                             "test_split": 0.35},
                    "model": {"name": "vgg11_bn", "weights": None, "image_size": 32,
                              "head": "avg"},
                    "phases": [{"epochs": 6, "lr": 0.001, "freeze": "none", "lora_rank": 0}],
                    "early_stopping_patience": 5},
        "tf_flowers": transfer(5, {"source": "tfds:tf_flowers", "train_split": "train[:70%]",
                                   "val_split": "train[70%:85%]", "test_split": "train[85%:]",
                                   "augment": every}),
        "cats_vs_dogs": transfer(5, {"source": "tfds:cats_vs_dogs",
                                     "train_split": "train[:70%]",
                                     "val_split": "train[70%:85%]",
                                     "test_split": "train[85%:]",
                                     "augment": ["flip", "rotation", "zoom"]}),
        "oxford_flowers102": transfer(10, {"source": "tfds:oxford_flowers102",
                                           "train_split": "train", "val_split": "validation",
                                           "test_split": "test", "augment": every},
                                      head_dropout=0.3),
        "caltech101": transfer(8, {"source": "tfds:caltech101", "train_split": "train[:80%]",
                                   "val_split": "train[80%:]", "test_split": "test",
                                   "augment": every}),
        "folder": transfer(5, {"source": "path/to/folder_of_class_subfolders",
                               "validation_split": 0.2, "test_split": 0.2, "augment": every}),
    }
    default = Recipe().to_dict()
    for name, values in expected.items():
        recipe = load_recipe(name).to_dict()
        assert recipe == {**default, "name": name, **values,
                          "data": {**default["data"], **values["data"]},
                          "model": {**default["model"], **values["model"]}}, name
        saved = dotted_items(recipe)
        for key, value in dotted_items(values).items():  # 1e-05 stays a float: YAML 1.1
            assert type(saved[key]) is type(value), (name, key)  # reads 1e-5 as text


# -- keras-vgg recipes, keras-vgg finetune --dry-run ------------------------------------------


def test_recipes_command_lists_every_shipped_recipe(capsys):
    from keras_vgg.finetune.config import recipes_folder

    assert cli.main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "recipe".ljust(19) + "data".ljust(36) + "model     expect"
    assert lines[2] == "builtin".ljust(19) + "builtin".ljust(36) + "vgg11_bn  " + EXPECT["builtin"]
    assert lines[6] == ("oxford_flowers102  " + "tfds:oxford_flowers102".ljust(36) + "vgg16     "
                        + EXPECT["oxford_flowers102"])
    rows = [[cell.strip() for cell in line.split("  ") if cell] for line in lines[2:8]]
    data = {"builtin": "builtin", "folder": "path/to/folder_of_class_subfolders"}
    assert rows == [[name, data.get(name, f"tfds:{name}"),
                     "vgg11_bn" if name == "builtin" else "vgg16", EXPECT[name]]
                    for name in SHIPPED]
    assert lines[8:] == [
        f"Files (commented YAML): {recipes_folder()}",
        "Run one: keras-vgg finetune NAME [key=value ...]; every key it sets: "
        "keras-vgg finetune --dry-run NAME"]


def test_dry_run_prints_every_key_and_touches_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["finetune", "--dry-run", "--model", "vgg19", "tf_flowers", "data.batch_size=16",
            "data.augment=flip,zoom"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    printed = json.loads(out)
    assert list(printed) == list(Recipe().to_dict())  # every key, in the record's order
    assert list(dotted_items(printed)) == list(dotted_items(load_recipe("tf_flowers").to_dict()))
    wanted = load_recipe("tf_flowers").to_dict()
    wanted["model"]["name"] = "vgg19"
    wanted["data"].update(batch_size=16, augment=["flip", "zoom"])
    assert printed == wanted
    assert (printed["data"]["source"], printed["phases"][1]["lr"],
            printed["model"]["weights"]) == ("tfds:tf_flowers", 1e-05, "imagenet")
    assert "dry run, nothing trained or written" in err
    assert list(tmp_path.iterdir()) == []  # no runs/, no dataset, no cache
    # What it printed is a recipe file that --config runs as the same recipe.
    (tmp_path / "saved.json").write_text(out)
    assert load_recipe(tmp_path / "saved.json") == load_recipe(
        "tf_flowers", ["model.name=vgg19", "data.batch_size=16", "data.augment=flip,zoom"])
    # No recipe: builtin, or folder with --data; --config names one as RECIPE does.
    assert cli.main(["finetune", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == load_recipe("builtin").to_dict()
    assert cli.main(["finetune", "--dry-run", "--data", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == load_recipe(
        "folder", [f"data.source={tmp_path}"]).to_dict()
    assert cli.main(["finetune", "--dry-run", "--config", "caltech101", "seed=3"]) == 0
    assert json.loads(capsys.readouterr().out) == load_recipe("caltech101", ["seed=3"]).to_dict()
    assert cli.main(["finetune", "--dry-run", "--seed", "7", "--no-deterministic"]) == 0
    assert json.loads(capsys.readouterr().out) == load_recipe(
        "builtin", ["seed=7", "deterministic=false"]).to_dict()


def test_dry_run_of_a_resume_prints_the_runs_own_recipe(capsys, tmp_path):
    saved = load_recipe("builtin", ["data.batch_size=8"])
    (tmp_path / "recipe.json").write_text(json.dumps(saved.to_dict()))
    assert cli.main(["finetune", "--dry-run", "--resume", "--run-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == saved.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.json"]


@pytest.mark.parametrize("argv, message", [
    (["finetune", "--dry-run", "tf_flowers", "--config", "builtin"],
     "Expected one recipe, as RECIPE or --config. Received: 'tf_flowers' and --config builtin"),
    (["finetune", "--dry-run", "flowers"],
     "Expected RECIPE (a recipe file or one of ['builtin', 'caltech101', 'cats_vs_dogs', "
     "'folder', 'oxford_flowers102', 'tf_flowers']), then key=value overrides. "
     "Received: 'flowers'"),
    (["finetune", "--dry-run", "builtin", "data.batch_size=0"],
     "Expected `data.batch_size` >= 1. Received: data.batch_size=0"),
    (["finetune", "--dry-run", "builtin", "tf_flowers"],
     "Expected an override of the form key=value. Received: 'tf_flowers'"),
])
def test_dry_run_bad_input_exits_2(argv, message, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"keras-vgg finetune: {message}" in err


# -- a missing optional package names its extra -----------------------------------------------


def test_a_missing_extra_is_named(monkeypatch, capsys, tmp_path):
    import sys

    from keras_vgg._extras import MissingExtra
    from keras_vgg.finetune import finetune

    wanted = 'Expected the finetune extra: pip install "keras-vgg[finetune]"'
    recipe = load_recipe("builtin", ["data.builtin_images_per_class=3", "tensorboard=false"])
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "yaml", None)  # `import yaml` fails as if not installed
        with pytest.raises(ImportError, match=r"^PyYAML is not installed .*keras-vgg\[finetune\]"):
            load_recipe("builtin")
        (tmp_path / "mine.json").write_text('{"model": {"name": "vgg13"}}')
        assert load_recipe(tmp_path / "mine.json").model.name == "vgg13"  # JSON needs no PyYAML
        assert cli.main(["recipes"]) == 2 and wanted in capsys.readouterr().err
        assert cli.main(["finetune", "--dry-run"]) == 2 and wanted in capsys.readouterr().err
    for modules, package in ((["matplotlib"], "matplotlib"), (["PIL", "PIL.Image"], "pillow"),
                             (["tensorboard"], "tensorboard")):
        with monkeypatch.context() as patch:
            for module in modules:
                patch.setitem(sys.modules, module, None)
            run = recipe if package != "tensorboard" else load_recipe(
                "builtin", ["data.builtin_images_per_class=3"])
            with pytest.raises(MissingExtra, match=rf"^{package} is not installed.*{re.escape(wanted)}"):
                finetune(run, run_dir=tmp_path / "run")  # before any data or run folder
            assert not (tmp_path / "run").exists()
