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


def test_run_state_writes_state_json_as_before_and_complete_drops_the_scratch(tmp_path):
    """state.json keeps its keys and order (a run's, a compress's); complete() marks it and
    drops backup/ and cache/, nothing else."""
    import json

    from keras_vgg.run_folder import RunFolder, RunState

    folder = RunFolder(tmp_path / "run")
    folder.start()
    state = RunState().phase_done("phase1", 3).phase_done("phase2", 5, stopped_early=True)
    folder.save_state(state)
    assert json.loads(folder.state_file.read_text()) == {
        "phases_done": ["phase1", "phase2"], "epoch": 5, "complete": False,
        "stopped_early": ["phase2"]}
    assert list(json.loads(folder.state_file.read_text())) == [
        "phases_done", "epoch", "complete", "stopped_early"]
    assert folder.read_state() == state and RunFolder(folder).path == folder.path
    for name in ("backup", "cache", "feature_cache"):
        (folder / name).mkdir()
    assert folder.complete(state) == folder.read_state() == state.completed()
    assert sorted(p.name for p in folder.path.iterdir()) == ["feature_cache", "state.json"]
    compress = RunState.of_compress({"steps": 2}).step_done(1)
    assert compress.to_json() == {"settings": {"steps": 2}, "steps_done": 1, "complete": False}
    assert RunState.from_json(compress.to_json()) == compress


def test_every_existing_output_is_refused_with_one_error_type(tmp_path):
    """Issue 29: a run folder, a compress, a run's export, a converted file, a bundle, a
    folder of pictures and an .npz (the last three in their own tests) all refuse an
    existing output with OutputExists: a FileExistsError, and a ValueError as before."""
    from keras_vgg import convert
    from keras_vgg._helpers import OutputExists
    from keras_vgg.finetune.compress import Settings, check_out
    from keras_vgg.finetune.run_folder import open_run_dir
    from keras_vgg.run_folder import RunFolder

    used = tmp_path / "used"
    used.mkdir()
    (used / "file.txt").write_text("kept")
    (used / "vgg11.weights.h5").write_text("kept")
    settings = Settings({"flops": 0.5}, 1, 1, 1e-4, "l1", ["none"], [[1]], 1.0)
    refusals = {
        "run_dir": lambda: open_run_dir(used, Recipe()),
        "compress": lambda: check_out(RunFolder(used), "compress", settings, False, False),
        "export_run": lambda: export_run(tmp_path / "no_such_run", used),
        "convert": lambda: convert.convert(tmp_path / "no_such.pth", "vgg11",
                                            used / "vgg11.weights.h5"),
    }
    for name, call in refusals.items():
        with pytest.raises(OutputExists) as error:
            call()
        assert isinstance(error.value, FileExistsError) and isinstance(error.value, ValueError)
        assert str(used) in str(error.value), name
    assert sorted(p.name for p in used.iterdir()) == ["file.txt", "vgg11.weights.h5"]
    assert (used / "file.txt").read_text() == "kept"


def test_output_exists_is_public():
    import keras_vgg
    from keras_vgg._helpers import OutputExists

    assert keras_vgg.OutputExists is OutputExists and "OutputExists" in keras_vgg.__all__
