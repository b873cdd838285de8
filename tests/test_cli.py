"""The keras-vgg command."""

import os
import subprocess
import sys

import pytest

from keras_vgg import cli, list_models

# A fresh `keras-vgg` or `python -c` process: TensorFlow's import and one small command, about
# 10 s; a hung one fails its test at this bound instead of holding CI.
CHILD_TIMEOUT_S = 180


def test_list_prints_every_variant_with_figures(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.startswith("vgg")}
    assert list(rows) == list_models()
    assert rows["vgg16"][1:6] == ["D", "138,357,544", "14,714,688", "30.94", "7x7x512"]
    assert rows["vgg19"][2:4] == ["143,667,240", "20,024,384"]
    assert rows["vgg_f"][5] == "6x6x256"
    assert rows["vgg_m_2048"][1:3] == ["M-2048", "92,469,864"]


def test_summary_builds_the_model(capsys):
    assert cli.main(["summary", "vgg_s", "--input-shape", "64,64,3", "--no-top"]) == 0
    out = capsys.readouterr().out
    assert "block1_lrn" in out and "6,528,640" in out


def test_summary_batch_norm(capsys):
    assert cli.main(["summary", "vgg11", "--input-shape", "32,32,3", "--no-top",
                     "--batch-norm"]) == 0
    assert "block1_conv1_bn" in capsys.readouterr().out


def test_summary_bad_inputs_exit_2(capsys):
    assert cli.main(["summary", "vgg16", "--input-shape", "16,16,3", "--no-top"]) == 2
    assert "input_shape" in capsys.readouterr().err
    assert cli.main(["summary", "vgg99"]) == 2
    assert "variant='vgg99'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["summary", "vgg16", "--input-shape", "64x64"])
    assert info.value.code == 2
    assert "H,W,C" in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "keras_vgg.cli", "list"], capture_output=True,
                            text=True, timeout=CHILD_TIMEOUT_S)
    assert result.returncode == 0
    assert "vgg19_bn" in result.stdout


def run_command(*argv):
    """``keras-vgg ARGV`` as a user runs it: the installed console script, a fresh process."""
    import shutil

    program = shutil.which("keras-vgg")
    assert program, "the keras-vgg console script is installed with the package"
    return subprocess.run([program, *argv], capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S)


def test_quiet_by_default_verbose_on_request():
    """No TensorFlow start-up lines (absl, cudart, cpu_feature_guard, cuInit) on stderr,
    while the command's own errors still reach it; --verbose lets TensorFlow speak."""
    quiet = run_command("summary", "vgg11", "--input-shape", "32,32,3", "--no-top")
    assert quiet.returncode == 0 and "block5_pool" in quiet.stdout
    assert quiet.stderr == ""
    refused = run_command("summary", "vgg99")
    assert refused.returncode == 2
    assert refused.stderr.startswith("keras-vgg summary: Unknown VGG variant")
    assert "absl" not in refused.stderr
    verbose = run_command("--verbose", "list")
    assert verbose.returncode == 0 and "vgg19_bn" in verbose.stdout


def test_onednn_kernels_on_unless_the_user_said_otherwise():
    """Importing keras_vgg before TensorFlow turns TF's oneDNN CPU kernels on (x86 only);
    a value the user set is kept, and an already loaded TensorFlow is left alone."""
    from keras_vgg._onednn import prefer_onednn

    env = {}
    assert prefer_onednn(environ=env, machine="x86_64", modules={}) is True
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    kept = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert prefer_onednn(environ=kept, machine="x86_64", modules={}) is False
    assert kept == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert prefer_onednn(environ={}, machine="x86_64", modules={"tensorflow": None}) is False
    assert prefer_onednn(environ={}, machine="aarch64", modules={}) is False
    code = ("import os, keras_vgg, tensorflow as tf; "
            "from tensorflow.python.util import _pywrap_util_port as port; "
            "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), port.IsMklEnabled())")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    for user, expected in ((None, "1 True"), ("0", "0 False")):
        if user is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = user
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=CHILD_TIMEOUT_S, env=env)
        assert result.stdout.split()[-2:] == expected.split(), result.stderr[-2000:]


def test_help_is_plain_text_and_finetune_help_lists_recipe_keys(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and "--verbose" in top and "keras-vgg finetune --data" in top
    with pytest.raises(SystemExit):
        cli.main(["finetune", "--help"])
    text = capsys.readouterr().out
    assert 'folder: data.source="path/to/folder_of_class_subfolders"' in text
    assert 'model.weights="imagenet"' in text
    assert 'phases.0.freeze="none" phases.0.epochs=6 phases.0.lr=0.001' in text
    from keras_vgg.finetune import Recipe
    from keras_vgg.finetune.recipe import dotted_items

    for key in dotted_items(Recipe().to_dict()):
        assert f"{key}=" in text, key
