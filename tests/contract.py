"""One contract every model of the config table keeps, as keras-hub's ``TestCase.run_*_test``
helpers: config serialisation, the ``.keras`` safe-mode round trip with its record, and a
TFLite file of builtin ops only that computes what Keras does.

Example (what tests/test_contract.py runs for every variant)::

    model = build_vgg("vgg16", include_top=False, input_shape=(32, 32, 3), pooling="avg")
    run_serialization_test(model)
    run_keras_file_round_trip_test(model, tmp_path)
    run_builtin_tflite_test(model, tmp_path)
"""

import keras
import numpy as np

from keras_vgg.vgg_model import INFO_KEYS as RECORD, VGGModel


def images(model, count=2, seed=0):
    shape = tuple(model.input_shape[1:])
    return np.random.default_rng(seed).uniform(0, 255, (count, *shape)).astype("float32")


def outputs(model, x):
    """``model`` on ``x`` in inference mode, called eagerly: the same layers as ``predict``
    without tracing a predict function for each model (three a test: about 0.6 s of its 2.8)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def record(model):
    values = [getattr(model, key) for key in RECORD]
    values[1] = None if values[1] is None else values[1].to_json()
    return values


def run_serialization_test(model):
    """get_config -> from_config and serialize -> deserialize give the same model."""
    assert isinstance(model, VGGModel)
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert type(revived) is type(model) and revived.get_config() == model.get_config()
    revived.set_weights(model.get_weights())
    x = images(model)
    np.testing.assert_allclose(outputs(revived, x), outputs(model, x), rtol=1e-5, atol=1e-5)
    assert record(revived) == record(model)


def run_keras_file_round_trip_test(model, tmp_path):
    """A .keras file loads with safe_mode=True: same class, layer names, outputs, record."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    x = images(model)
    np.testing.assert_allclose(outputs(loaded, x), outputs(model, x), rtol=1e-5, atol=1e-5)
    assert record(loaded) == record(model)
    return loaded


def run_builtin_tflite_test(model, tmp_path, preprocessing="caffe"):
    """keras_vgg's TFLite path: builtin ops only (no CUSTOM, no Flex), outputs as Keras's."""
    from keras_vgg.export import TFLiteRunner, serving_model, write_tflite

    serving = serving_model(model, preprocessing)
    path = tmp_path / f"{model.name}.tflite"
    ops = write_tflite(serving, path)
    assert "CUSTOM" not in ops and not [op for op in ops if op.startswith("Flex")], ops
    x = images(serving, count=1)
    expected = serving.predict(x, verbose=0)
    got = TFLiteRunner(path)(x)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
    return ops
