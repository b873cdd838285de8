"""Shared fixtures: nothing downloads, and each test starts with a fresh Keras session."""

import contextlib
import io
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The built-in dataset (and anything else a test caches) goes to a throwaway Keras home.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="keras_vgg_tests_")

import keras  # noqa: E402
import pytest  # noqa: E402


def _refuse_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to download: get_file{args}")

    monkeypatch.setattr(keras.utils, "get_file", refuse)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", refuse)
    return refuse


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any call of keras.utils.get_file fails loudly: tests never touch the network."""
    return _refuse_downloads(monkeypatch)


@pytest.fixture(scope="session")
def builtin_run(tmp_path_factory):
    """The README's main command, run once: ``(run folder, what it printed)``.

    Several tests read this one trained model (its accuracy, its exports).
    """
    from keras_vgg.cli import main

    root = tmp_path_factory.mktemp("main_command")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        _refuse_downloads(patch)
        patch.chdir(root)
        assert main(["finetune"]) == 0
    keras.backend.clear_session()
    return root / "runs" / "builtin", printed.getvalue()


@pytest.fixture(autouse=True)
def fresh_session():
    yield
    keras.backend.clear_session()
