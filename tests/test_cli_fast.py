"""The command line answers without loading TensorFlow: the parser, every --help, list,
recipes and finetune --dry-run import only light modules (issue 28, F1). Checked by the
modules loaded in a fresh interpreter, not by a timing. Also: the package's lazy front
(PEP 562) gives the same names, and the library is quiet by default (F7)."""

import subprocess
import sys

import pytest

HEAVY = "sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules)"


def loaded_after(code):
    """The heavy frameworks loaded after ``code`` runs in a fresh interpreter."""
    script = f"import sys\nimport keras_vgg.cli as c\n{code}\nprint({HEAVY})"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("code", [
    "c.build_parser()",
    "c.main(['list'])",
    "c.main(['recipes'])",
    "c.main(['finetune', '--dry-run'])",
    "c.main(['finetune', 'tf_flowers', '--dry-run', 'data.batch_size=16'])",
])
def test_commands_load_no_framework(code):
    assert loaded_after(code) == "[]"


@pytest.mark.parametrize("command", [[], ["finetune"], ["export"], ["predict"], ["compress"],
                                     ["convert"], ["summary"], ["explain"], ["embed"],
                                     ["nearest"]])
def test_help_loads_no_framework(command):
    code = (f"try:\n    c.main({command + ['--help']!r})\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code")
    assert loaded_after(code) == "[]"


def test_lazy_front_keeps_its_names():
    import keras_vgg
    from keras_vgg import VGG16, build_vgg

    assert set(keras_vgg.__all__) <= set(dir(keras_vgg))
    assert VGG16 is keras_vgg.models.VGG16 and build_vgg is keras_vgg.models.build_vgg
    assert all(getattr(keras_vgg, name) is not None for name in keras_vgg.__all__)
    with pytest.raises(AttributeError, match="module 'keras_vgg' has no attribute 'VGG61'"):
        keras_vgg.VGG61


def test_an_export_named_as_a_submodule_stays_the_export():
    """``keras_vgg.finetune.compress`` (module) and ``compress`` (function): importing the
    module first does not make the package's ``compress`` the module."""
    code = ("import keras_vgg.finetune.compress, keras_vgg.inference.predict\n"
            "from keras_vgg.finetune import compress\nfrom keras_vgg.inference import predict\n"
            "print(type(compress).__name__, type(predict).__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "function function", result.stderr[-2000:]


def test_light_names_agree_with_their_modules():
    """keras_vgg.choices holds the names that modules loading TensorFlow also define."""
    from keras_vgg import choices, convert, weights
    from keras_vgg.finetune import distribute

    assert distribute.STRATEGIES == choices.STRATEGIES
    assert (weights.NAMES, weights.SOURCES) == (choices.WEIGHTS_NAMES, choices.WEIGHTS_SOURCES)
    assert convert.SOURCE_SUFFIXES == choices.SOURCE_SUFFIXES


def stderr_of_a_build(**environ):
    import os

    code = ("import keras_vgg, numpy as np\n"
            "m = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), weights=None)\n"
            "m.predict(np.zeros((1, 32, 32, 3)), verbose=0)")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                             "KERAS_VGG_VERBOSE")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env={**env, **environ})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


def test_the_library_is_quiet_unless_asked():
    """TensorFlow's lines after its logging starts (cpu_feature_guard, cuInit) are hidden by
    default and shown with KERAS_VGG_VERBOSE=1. (The few it writes before absl's logging
    starts, the oneDNN banner and cudart's, only the command line's descriptor-2 redirect
    hides: the library leaves descriptor 2 alone.)"""
    markers = ("cpu_feature_guard", "cuInit")
    verbose = stderr_of_a_build(KERAS_VGG_VERBOSE="1")
    shown = [m for m in markers if m in verbose]
    if not shown:
        pytest.skip("this machine's TensorFlow prints none of these lines")
    quiet = stderr_of_a_build()
    assert [m for m in shown if m in quiet] == []
