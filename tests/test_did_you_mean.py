"""Every name error offers the closest name; errors speak the caller's language (the flag
on the command line, the argument in Python); finetune takes options and key=value in any
order; predict and nearest describe themselves (issue 28: F2, F3, F9)."""

import pytest

from keras_vgg import cli
from keras_vgg._helpers import closest, did_you_mean
from keras_vgg.configs import get_config
from keras_vgg.finetune.config import load_recipe


def cli_error(capsys, argv):
    """(exit code, stderr) of ``keras-vgg ARGV`` failing in argparse or in the command."""
    try:
        code = cli.main(argv)
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


def test_closest_prefers_the_same_letters():
    assert closest("vgg61", ["vgg11", "vgg13", "vgg16", "vgg19"]) == "vgg16"
    assert closest("zzz", ["vgg11"]) is None
    assert did_you_mean("--wieghts", ["--weights"], quote=False) == ". Did you mean --weights?"
    assert did_you_mean("zzz", ["vgg11"]) == ""


def test_variant_name():
    with pytest.raises(ValueError) as error:
        get_config("vgg61")
    assert str(error.value).endswith("Received: variant='vgg61'. Did you mean 'vgg16'?")
    with pytest.raises(ValueError) as error:
        get_config("qqq")
    assert str(error.value).endswith("Received: variant='qqq'")


def test_recipe_key_and_value_and_name():
    with pytest.raises(ValueError) as error:
        load_recipe("builtin", ["phases.0.epoch=1"])
    assert str(error.value) == "Unknown recipe key 'phases.0.epoch' in builtin. Did you mean " \
                               "'phases.0.epochs'?"
    with pytest.raises(ValueError) as error:
        load_recipe("builtin", ["model.head=avgg"])
    assert str(error.value) == ("Expected `model.head` to be one of ['avg', 'max', 'flatten', "
                                "'fc']. Received: model.head='avgg'. Did you mean 'avg'?")
    with pytest.raises(ValueError) as error:
        load_recipe("tf_flower")
    assert str(error.value).endswith("Received: config='tf_flower'. Did you mean 'tf_flowers'?")


def test_cli_model_and_shipped_recipe(capsys):
    code, err = cli_error(capsys, ["finetune", "--dry-run", "--model", "vgg61"])
    assert code == 2 and err.endswith("Received: model.name='vgg61'. Did you mean 'vgg16'?\n")
    code, err = cli_error(capsys, ["finetune", "tf_flower", "--dry-run"])
    assert code == 2 and err.endswith("then key=value overrides. Received: 'tf_flower'. "
                                      "Did you mean 'tf_flowers'?\n")


def test_cli_choice_and_command(capsys):
    code, err = cli_error(capsys, ["export", "m.keras", "-o", "x", "--format", "tflit"])
    assert code == 2 and err.splitlines()[-1] == (
        "keras-vgg export: error: argument --format: invalid choice: 'tflit' (choose from "
        "'saved_model', 'tflite', 'onnx', 'openvino'). Did you mean 'tflite'?")
    code, err = cli_error(capsys, ["lsit"])
    assert code == 2 and err.splitlines()[-1].endswith("Did you mean 'list'?")


def test_misspelled_flag_gets_the_command_usage(capsys):
    code, err = cli_error(capsys, ["finetune", "--wieghts", "imagenet"])
    assert code == 2
    assert err.splitlines() == [
        "usage: keras-vgg finetune [-h] [options] [RECIPE] [key=value ...]",
        "keras-vgg finetune: error: unrecognized arguments: --wieghts. Did you mean --weights?"]
    code, err = cli_error(capsys, ["--verbsoe", "list"])
    assert code == 2 and err.splitlines()[-1] == (
        "keras-vgg: error: unrecognized arguments: --verbsoe. Did you mean --verbose?")


def test_overwrite_in_python_names_the_argument(tmp_path):
    from keras_vgg.finetune.run_export import export_run

    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError) as error:
        export_run(tmp_path / "model.keras", tmp_path / "out")
    assert str(error.value) == f"{tmp_path / 'out'} exists; pass overwrite=True to replace it."


def test_overwrite_on_the_command_line_names_the_flag(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code, err = cli_error(capsys, ["export", str(tmp_path / "model.keras"),
                                   "-o", str(tmp_path / "out")])
    assert (code, err) == (2, f"keras-vgg export: {tmp_path / 'out'} exists; pass --overwrite "
                              "to replace it.\n")
    assert cli.in_flags("Expected `out` not to exist (pass overwrite=True, --overwrite, to "
                        "replace it, or resume=True, --resume).") == (
        "Expected `out` not to exist (pass --overwrite to replace it, or --resume).")


def test_finetune_takes_options_between_overrides(capsys):
    assert cli.main(["finetune", "tf_flowers", "--dry-run", "data.batch_size=16"]) == 0
    out = capsys.readouterr().out
    assert '"name": "tf_flowers"' in out and '"batch_size": 16' in out


@pytest.mark.parametrize("command, first_words", [
    ("predict", "Print the top-k classes of each image"),
    ("nearest", "For each query image, print the -k files"),
])
def test_predict_and_nearest_describe_themselves(capsys, command, first_words):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    help_text = capsys.readouterr().out
    assert help_text.split("\n\n")[1].startswith(first_words)
