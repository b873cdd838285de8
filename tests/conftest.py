"""Shared fixtures: nothing downloads, and each test starts with a fresh Keras session."""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The built-in dataset (and anything else a test caches) goes to a throwaway Keras home.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="keras_vgg_tests_")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any call of keras.utils.get_file fails loudly: tests never touch the network."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to download: get_file{args}")

    monkeypatch.setattr(keras.utils, "get_file", refuse)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", refuse)
    return refuse


@pytest.fixture(autouse=True)
def fresh_session():
    yield
    keras.backend.clear_session()
