"""Recipe files, overrides and the `keras-vgg finetune` command's argument handling."""

import json

import pytest

from keras_vgg import cli
from keras_vgg.recipes import Recipe, load_recipe, shipped_recipes
from keras_vgg.recipes.builtin import make_shapes
from keras_vgg.recipes.config import freeze_blocks, parse_value

SHIPPED = ["builtin", "caltech101", "cats_vs_dogs", "folder", "oxford_flowers102", "tf_flowers"]


def test_shipped_recipes_all_validate():
    assert shipped_recipes() == SHIPPED
    data = {name: load_recipe(name).data for name in SHIPPED}
    assert data["builtin"] == "builtin"
    assert data["tf_flowers"] == "tfds:tf_flowers"
    assert data["oxford_flowers102"] == "tfds:oxford_flowers102"
    assert load_recipe("oxford_flowers102").val_split == "test"
    assert load_recipe("tf_flowers").weights == "imagenet"


def test_builtin_recipe_is_offline_and_small():
    recipe = load_recipe("builtin")
    assert (recipe.model, recipe.weights, recipe.image_size) == ("vgg11_bn", None, 32)
    assert (recipe.phase1_freeze, recipe.phase2_freeze) == ("all", "none")


def test_overrides_parse_by_type():
    recipe = load_recipe("builtin", ["batch_size=8", "phase2_lr=1e-4", "augment=flip,zoom",
                                     "tensorboard=false", "weights=null", "model=D"])
    assert recipe.batch_size == 8 and recipe.phase2_lr == 1e-4
    assert recipe.augment == ["flip", "zoom"] and recipe.tensorboard is False
    assert recipe.weights is None and recipe.model == "vgg16"  # paper names resolve
    assert load_recipe("builtin", ["augment=none"]).augment == []
    assert parse_value("3") == 3 and parse_value("abc") == "abc" and parse_value("[1]") == [1]


@pytest.mark.parametrize("override, named", [
    ("model=vgg99", "model"), ("head=conv", "head"), ("batch_size=0", "batch_size"),
    ("batch_size=a", "batch_size"), ("phase1_freeze=block6", "phase1_freeze"),
    ("phase1_lr=0", "phase1_lr"), ("image_size=16", "image_size"),
    ("validation_split=1.5", "validation_split"), ("augment=blur", "augment"),
    ("head_dropout=1", "head_dropout"), ("cache=gpu", "cache"), ("class_weight=x", "class_weight"),
    ("preprocessing=bgr", "preprocessing"), ("weights=my.h5", r"weights='my.h5' \(no such file\)"),
    ("nonsense=1", "nonsense"), ("phase2_epochs=-1", "phase2_epochs"), ("novalue", "key=value"),
])
def test_bad_values_name_the_key(override, named):
    with pytest.raises(ValueError, match=named):
        load_recipe("builtin", [override])


@pytest.mark.parametrize("text", ["none", "None", "null", "NULL", ""])
def test_no_weights_can_be_said_on_a_command_line(text):
    assert load_recipe("folder", [f"weights={text}"]).weights is None


def test_a_transfer_recipe_without_weights_trains_every_block():
    scratch = load_recipe("folder", ["weights=none"])
    assert (scratch.phase2_freeze, scratch.phase2_lr) == ("none", 1e-3)
    assert (scratch.phase1_freeze, scratch.phase1_lr) == ("all", 1e-3)
    chosen = load_recipe("folder", ["weights=none", "phase2_lr=1e-4", "phase2_freeze=block2"])
    assert (chosen.phase2_freeze, chosen.phase2_lr) == ("block2", 1e-4)
    pretrained = load_recipe("folder")
    assert (pretrained.weights, pretrained.phase2_freeze, pretrained.phase2_lr) == (
        "imagenet", "block4", 1e-5)


def test_cli_weights_none_trains_from_scratch(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shapes = make_shapes(tmp_path / "shapes", images_per_class=3)
    argv = ["finetune", "--data", str(shapes), "--model", "vgg11", "--weights", "none",
            "--image-size", "32", "phase1_epochs=1", "phase2_epochs=1", "augment=none",
            "tensorboard=false", "--run-dir", "runs/none"]
    assert cli.main(argv) == 0
    saved = json.loads((tmp_path / "runs/none/recipe.json").read_text())
    assert saved["weights"] is None and saved["phase2_freeze"] == "none"


def test_a_plain_keras_weights_file_must_name_its_preprocessing(tmp_path):
    import keras_vgg

    path = tmp_path / "mine.weights.h5"
    keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3)).save_weights(path)
    with pytest.raises(ValueError, match="does not say how its inputs were preprocessed"):
        load_recipe("builtin", [f"weights={path}"])
    assert load_recipe("builtin", [f"weights={path}", "preprocessing=caffe"]).weights == str(path)


def test_no_epochs_at_all_is_refused():
    with pytest.raises(ValueError, match="phase1_epochs"):
        load_recipe("builtin", ["phase1_epochs=0", "phase2_epochs=0"])


def test_recipe_files_json_and_yaml(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"model": "vgg13", "image_size": 48}))
    assert load_recipe(tmp_path / "r.json").model == "vgg13"
    assert load_recipe(tmp_path / "r.json").name == "r"  # runs/r, not runs/builtin
    (tmp_path / "named.json").write_text(json.dumps({"name": "exp1"}))
    assert load_recipe(tmp_path / "named.json").name == "exp1"
    (tmp_path / "r.yaml").write_text("model: vgg_f\nimage_size: 64\naugment: [flip]\n")
    recipe = load_recipe(tmp_path / "r.yaml", ["batch_size=4"])
    assert (recipe.model, recipe.image_size, recipe.augment, recipe.batch_size) == (
        "vgg_f", 64, ["flip"], 4)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="Could not parse"):
        load_recipe(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="mapping"):
        load_recipe(tmp_path / "list.json")
    with pytest.raises(ValueError, match="config"):
        load_recipe(tmp_path / "missing.json")


def test_recipe_round_trips_through_json():
    recipe = load_recipe("tf_flowers", ["phase2_epochs=3"])
    again = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe


def test_freeze_blocks():
    assert [freeze_blocks(s) for s in ("none", "block1", "block5", "all")] == [0, 1, 5, None]


@pytest.mark.parametrize("argv, message", [
    (["finetune", "--model", "vgg99"], "model"),
    (["finetune", "--data", "/no/such/folder"], "data"),
    (["finetune", "--config", "nope"], "config"),
    (["finetune", "--resume"], "--resume with --run-dir only"),
    (["finetune", "--resume", "--run-dir", "x", "batch_size=3"], "--resume with --run-dir only"),
    (["finetune", "--resume", "--run-dir", "no_such_run"], "Nothing to resume"),
    (["finetune", "batch_size"], "key=value"),
])
def test_finetune_command_bad_input_exits_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_finetune_command_runs_and_never_reuses_a_run_dir(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["finetune", "--model", "vgg11", "phase1_epochs=1", "phase2_epochs=0",
            "builtin_images_per_class=3", "tensorboard=false"]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Outputs in runs/builtin:" in out and "Outputs in runs/builtin-2:" in out
    assert "  best.keras" in out
    assert json.loads((tmp_path / "runs/builtin-2/recipe.json").read_text())["model"] == "vgg11"
    assert cli.main(argv + ["--run-dir", "runs/builtin"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(argv + ["--run-dir", "runs/builtin", "--overwrite"]) == 0


def test_the_library_never_imports_recipes():
    import subprocess
    import sys

    code = "import sys, keras_vgg; print('keras_vgg.recipes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
