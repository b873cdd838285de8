"""Every entry of the config table keeps the contract of tests/contract.py, headless at its
smallest input (pooled), and as a 10-class classifier for serialisation and the .keras file. TFLite conversion (the slow part) runs for one variant of each kind
of layer: plain (vgg16), 1x1 conv (vgg16c), BN, LRN, ceil pooling and the fast/slow nets'
strides, and for a classifier with a record (preprocessing and class names)."""

import pytest

from contract import (run_builtin_tflite_test, run_keras_file_round_trip_test,
                      run_serialization_test)
from keras_vgg import build_vgg, list_models, min_input_size


TFLITE = ("vgg16", "vgg16c", "vgg11_bn", "vgg11_lrn", "vgg_f", "vgg_s")


@pytest.mark.parametrize("name", list_models())
def test_every_classifier_keeps_the_contract(name, tmp_path):
    size = max(32, min_input_size(name))
    with pytest.warns(UserWarning, match="ImageNet-shaped fc weights will not fit"):
        model = build_vgg(name, input_shape=(size, size, 3), classes=10)
    run_serialization_test(model)
    run_keras_file_round_trip_test(model, tmp_path)


def small(name, **kwargs):
    size = max(32, min_input_size(name))
    return build_vgg(name, include_top=False, input_shape=(size, size, 3), pooling="avg", **kwargs)


@pytest.mark.parametrize("name", list_models())
def test_every_variant_keeps_the_contract(name, tmp_path):
    model = small(name)
    run_serialization_test(model)
    run_keras_file_round_trip_test(model, tmp_path)
    if name in TFLITE:
        run_builtin_tflite_test(model, tmp_path)


@pytest.mark.parametrize("name", ["vgg_m_128"])  # the smallest fc (4096-128), with LRN
def test_a_classifier_with_its_record_keeps_the_contract(name, tmp_path):
    size = max(32, min_input_size(name))
    model = build_vgg(name, input_shape=(size, size, 3), classes=3, adaptive_pool=2)
    model.preprocessing, model.class_names = "torch", ["a", "b", "c"]
    run_serialization_test(model)
    loaded = run_keras_file_round_trip_test(model, tmp_path)
    assert (loaded.preprocessing.mode, loaded.class_names) == ("torch", ["a", "b", "c"])
    run_builtin_tflite_test(model, tmp_path, preprocessing="torch")
