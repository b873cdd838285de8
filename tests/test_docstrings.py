"""Every docstring example in the library runs and prints what it says."""

import doctest
import importlib
import tempfile
from pathlib import Path

import pytest

import keras_vgg
import keras_vgg.models

PACKAGE = Path(keras_vgg.__file__).parent
# Found, not listed: every module of the package (cli runs the command line and has no
# examples of its own).
NO_EXAMPLES = {"keras_vgg.cli"}
MODULES = sorted(
    name for name in (
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py"))
    if name not in NO_EXAMPLES)


@pytest.fixture(autouse=True)
def examples_write_under_tmp_path(tmp_path, monkeypatch):
    """The examples make their folders with ``tempfile.mkdtemp()``, as a user would; here those
    land in the test's ``tmp_path``, deleted when it passes. (They were left in /tmp: a
    fine-tuned run of 140-350 MB per example that trains one, each time the suite ran.)"""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.mark.parametrize("module_name", MODULES)
def test_module_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


@pytest.mark.parametrize("name", sorted(keras_vgg.models.public_builders()))
def test_public_builder_examples(name):
    builder = keras_vgg.models.public_builders()[name]
    parser = doctest.DocTestParser()
    test = parser.get_doctest(builder.__doc__, {name: builder}, name, None, 0)
    result = doctest.DocTestRunner().run(test)
    assert result.failed == 0 and result.attempted == 2
