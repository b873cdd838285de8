"""Every docstring example in the library runs and prints what it says."""

import doctest
import importlib

import pytest

import keras_vgg.models

MODULES = ["keras_vgg", "keras_vgg._quiet", "keras_vgg.configs", "keras_vgg.layers", "keras_vgg.builder",
           "keras_vgg.models", "keras_vgg.weights", "keras_vgg.features",
           "keras_vgg.preprocessing", "keras_vgg.convert", "keras_vgg.labels", "keras_vgg.recipes", "keras_vgg.recipes.config",
           "keras_vgg.recipes.builtin", "keras_vgg.recipes.data", "keras_vgg.recipes.model",
           "keras_vgg.recipes.report", "keras_vgg.recipes.train"]


@pytest.mark.parametrize("module_name", MODULES)
def test_module_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


@pytest.mark.parametrize("name", sorted(keras_vgg.models.BUILDERS))
def test_public_builder_examples(name):
    builder = keras_vgg.models.BUILDERS[name]
    parser = doctest.DocTestParser()
    test = parser.get_doctest(builder.__doc__, {name: builder}, name, None, 0)
    result = doctest.DocTestRunner().run(test)
    assert result.failed == 0 and result.attempted == 2
