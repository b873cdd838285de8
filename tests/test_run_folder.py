"""Run folders: their layout and lifecycle (keras_vgg.run_folder), naming and checks
(keras_vgg.finetune.run_folder), export_run (keras_vgg.finetune.run_export)."""

import pytest

from keras_vgg.finetune import Recipe
from keras_vgg.finetune.run_export import export_run
from keras_vgg.finetune.run_folder import new_run_dir, resolve_run_dir


def test_a_run_without_a_folder_never_lands_on_an_earlier_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = Recipe(name="builtin")
    assert str(resolve_run_dir(None, recipe)) == "runs/builtin"
    (tmp_path / "runs" / "builtin").mkdir(parents=True)
    assert str(resolve_run_dir(None, recipe)) == "runs/builtin-2"
    (tmp_path / "runs" / "builtin-2").mkdir()
    assert new_run_dir("builtin").name == "builtin-3"
    # overwrite=True without a folder means the recipe's own runs/NAME; a named one is kept
    assert str(resolve_run_dir(None, recipe, overwrite=True)) == "runs/builtin"
    assert str(resolve_run_dir("elsewhere", recipe)) == "elsewhere"
    with pytest.raises(ValueError, match=r"Expected `run_dir` \(the run to continue\) with "
                                         r"resume=True. Received: run_dir=None"):
        resolve_run_dir(None, None, resume=True)


def test_export_run_refuses_an_existing_output_before_reading_anything(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match=r"out exists; pass overwrite=True to replace it\.$"):
        export_run(tmp_path / "no_such_run", tmp_path / "out")
    with pytest.raises(ValueError, match="Expected a .keras file or a run folder"):
        export_run(tmp_path / "no_such_run", tmp_path / "new")
    assert not (tmp_path / "new").exists()
