"""TFLite dynamic, int8 and int4 files from the LiteRT Quantizer (keras_vgg.export.litert_quantize):
int8 integer end to end (no DEQUANTIZE, uint8 ends by two QUANTIZEs), int4 smaller than
float32 and agreeing on images, the quantizer's validation in the report, the converter kept
for an LRN model's int8 file, and the bad inputs: int4 asked of another format, a missing
quantizer, each one line with nothing written. Models at 32x32, 5 classes.
"""

import json
import sys

import keras
import numpy as np
import pytest

from keras_vgg import build_vgg, cli
from keras_vgg._extras import MissingExtra
from keras_vgg.export import export, serving_model, tflite_ops, write_tflite
from keras_vgg.export.flatbuffer import with_pixel_input, with_uint8_io
from keras_vgg.export.litert_quantize import (INT4_MIN_WEIGHTS, RECIPES, quantize_tflite,
                                              tflite_tool)
from keras_vgg.export.runners import TFLiteRunner
from keras_vgg.export.tflite import float_tflite

from test_export import CLASSES, fitted_classifier  # noqa: E402  (tests/ is on the path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """VGG11 with a head fitted to shapes: float32, int8 (uint8 ends) and int4 files, checked
    by export() on 20 held-out shapes with the default agreement gate."""
    model, sample, labels, representative = fitted_classifier("deep")
    out = tmp_path_factory.mktemp("quantizer") / "bundle"
    report = export(model, out, ["tflite"], ["none", "dynamic", "int8", "int4"],
                    preprocessing="caffe", class_names=CLASSES, sample=sample,
                    sample_labels=labels, representative_data=representative,
                    int8_io="uint8", verbose=False)
    keras.backend.clear_session()
    return {"out": out, "report": report, "rows": {r["quantize"]: r for r in report["exports"]}}


def test_int8_comes_from_the_quantizer_with_no_dequantize(bundle):
    row = bundle["rows"]["int8"]
    assert row["quantizer"]["tool"] == "litert-quantizer"
    assert row["quantizer"]["recipe"] == RECIPES["int8"] == "static_wi8_ai8"
    ops = tflite_ops((bundle["out"] / row["file"]).read_bytes())
    assert row["ops"] == ops and "DEQUANTIZE" not in ops
    assert ops["QUANTIZE"] == 2  # uint8 -> int8 at the input, int8 -> uint8 at the output
    runner = TFLiteRunner(bundle["out"] / row["file"])
    assert runner.input["dtype"] == np.uint8 and runner.output["dtype"] == np.uint8
    # measured 90% (2 of 20 near answers changed); the default gate is 80%
    assert row["top1_agreement"] >= 0.85 and row["agreement_gate"]["result"] == "passed"


def test_the_report_holds_the_quantizers_validation(bundle):
    on_disk = json.loads((bundle["out"] / "export_report.json").read_text())
    for quantize in ("dynamic", "int8", "int4"):
        figures = on_disk["exports"][["none", "dynamic", "int8", "int4"].index(quantize)]
        validation = figures["quantizer"]["validation"]
        assert validation["images"] == 8 and validation["tensors"] >= 10
        assert validation["min_snr_db"] <= validation["median_snr_db"]
        assert 0.9 < validation["output_cosine"] <= 1 and validation["output_snr_db"] > 10
    assert bundle["report"]["exports"][0].get("quantizer") is None  # float32: the converter


def test_int4_is_smaller_than_float32_and_agrees(bundle):
    rows = bundle["rows"]
    assert rows["int4"]["size_bytes"] < 0.3 * rows["none"]["size_bytes"]
    assert rows["int4"]["top1_agreement"] >= 0.9  # measured 100%
    assert "DEQUANTIZE" not in rows["int4"]["ops"]


def test_int4_goes_to_the_large_fc_layers(tmp_path):
    """A classic top at 32x32 (fc1 512x4096, fc2 4096x4096: 18.9M of 28M weights): the FCs
    int4 blockwise, the convs int8, the 5-class classifier float32."""
    keras.utils.set_random_seed(0)
    model = build_vgg("vgg11", input_shape=(32, 32, 3), classes=5, weights=None,
                      adaptive_pool=1)
    serving = serving_model(model, "caffe")
    float_model = float_tflite(serving)
    (tmp_path / "f32.tflite").write_bytes(float_model)
    write_tflite(serving, tmp_path / "int4.tflite", "int4", float_model=float_model)
    write_tflite(serving, tmp_path / "dynamic.tflite", "dynamic", float_model=float_model)
    sizes = {name: (tmp_path / f"{name}.tflite").stat().st_size
             for name in ("f32", "int4", "dynamic")}
    # measured 0.177 of float32 and 0.71 of dynamic (int8 weights everywhere): the FCs' 4
    # bits plus a float scale per block of 32, the convs' 9.2M weights int8
    assert sizes["int4"] < 0.2 * sizes["f32"] and sizes["int4"] < 0.75 * sizes["dynamic"]
    assert 4096 * 4096 >= INT4_MIN_WEIGHTS > 4096 * 5
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    diff = np.abs(TFLiteRunner(tmp_path / "int4.tflite")(images) -
                  TFLiteRunner(tmp_path / "f32.tflite")(images)).max()
    assert diff < 0.05  # random weights: near-uniform outputs, a sanity bound only


def test_an_lrn_models_int8_file_stays_with_the_converter():
    ops = {"CONV_2D": 8, "MUL": 8, "LOG": 2, "EXP": 2, "SOFTMAX": 1}
    tool = tflite_tool("int8", ops)
    assert tool.tool == "converter" and "EXP, LOG" in tool.reason
    assert tflite_tool("dynamic", ops).recipe == "dynamic_wi8_afp32"
    assert tflite_tool("float16", ops).to_json() == {"tool": "converter"}


def test_uint8_ends_keep_the_int8_files_answers(tmp_path, bundle):
    """with_uint8_io: the same probabilities as the int8-io file, fed the same pixels."""
    model, sample, _, representative = fitted_classifier("deep")
    float_model = float_tflite(serving_model(model, "caffe"))
    int8_io = with_pixel_input(quantize_tflite(float_model, "int8", representative))
    (tmp_path / "int8.tflite").write_bytes(int8_io)
    (tmp_path / "uint8.tflite").write_bytes(with_uint8_io(int8_io))
    a, b = (TFLiteRunner(tmp_path / f"{n}.tflite")(sample) for n in ("int8", "uint8"))
    assert np.abs(a - b).max() <= 1 / 256 + 1e-6  # one output step at most


def test_int8_file_reads_raw_pixels_in_a_plain_interpreter(bundle):
    """The quantizer calibrates the input's range (scale 0.88 on images whose brightest pixel
    was 224): the file's uint8 input is set to scale 1, zero point 0, and the int8 tensor
    behind it to scale 1, zero point -128, so camera pixels go in as they are and none is
    clipped. Fed raw pixels, ai_edge_litert gives the runner's answers."""
    from ai_edge_litert.interpreter import Interpreter

    from tensorflow.lite.tools import flatbuffer_utils

    path = bundle["out"] / bundle["rows"]["int8"]["file"]
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    given, answer = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert given["dtype"] == np.uint8 and given["quantization"] == (1.0, 0)
    graph = flatbuffer_utils.read_model(str(path)).subgraphs[0]
    behind = graph.tensors[graph.operators[0].outputs[0]].quantization  # the int8 input
    assert (list(behind.scale), list(behind.zeroPoint)) == ([1.0], [-128])
    _, sample, labels, _ = fitted_classifier("deep")
    raw = []
    for image in sample:  # uint8 pixels straight in, no rescaling
        interpreter.set_tensor(given["index"], image[None])
        interpreter.invoke()
        raw.append(interpreter.get_tensor(answer["index"])[0])
    scale, zero = answer["quantization"]
    raw = (np.stack(raw).astype("float32") - zero) * scale
    np.testing.assert_array_equal(raw, TFLiteRunner(path)(sample))
    row = bundle["rows"]["int8"]
    assert (raw.argmax(1) == labels).mean() == row["accuracy"]


def test_labels_go_into_a_quantizer_file_as_tensorflows_tools_would_write_them(tmp_path):
    """The quantizer keeps a file's weights after the flatbuffer, at offsets, which
    TensorFlow's flatbuffer_utils reads back as bytearrays (packed a byte at a time in
    Python: seconds a megabyte); add_labels reads them as arrays and writes the very bytes
    flatbuffer_utils writes."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from keras_vgg.export.flatbuffer import _read_model, add_labels, tflite_labels

    model = build_vgg("vgg11", include_top=False, input_shape=(32, 32, 3), pooling="avg")
    file = quantize_tflite(float_tflite(serving_model(model, "caffe")), "dynamic")
    assert any(buffer.Offset() for buffer in (schema.Model.GetRootAsModel(file, 0).Buffers(i)
               for i in range(schema.Model.GetRootAsModel(file, 0).BuffersLength())))
    assert all(isinstance(b.data, np.ndarray) for b in _read_model(file).buffers
               if b.data is not None)
    theirs = flatbuffer_utils.read_model_from_bytearray(bytearray(file))
    labels = schema.BufferT()
    labels.data = np.frombuffer(b"cat\ndog", np.uint8)
    theirs.buffers.append(labels)
    metadata = schema.MetadataT()
    metadata.name, metadata.buffer = "labels", len(theirs.buffers) - 1
    theirs.metadata = [*(theirs.metadata or []), metadata]
    ours = add_labels(file, ["cat", "dog"])
    assert ours == bytes(flatbuffer_utils.convert_object_to_bytearray(theirs))
    assert tflite_labels(ours) == ["cat", "dog"]


@pytest.mark.parametrize("formats", [["saved_model"], ["onnx"], ["openvino"]])
def test_int4_of_another_format_is_one_line_and_writes_nothing(tmp_path, formats):
    model, *_ = fitted_classifier("deep")
    with pytest.raises(ValueError) as info:
        export(model, tmp_path / "b", formats, ["int4"], preprocessing="caffe", verbose=False)
    message = str(info.value)
    assert "\n" not in message and "'tflite'" in message
    assert f"Received: formats={formats}, quantize=['int4']" in message
    assert list(tmp_path.iterdir()) == []


def test_cli_int4_of_saved_model_is_one_line(tmp_path, capsys):
    model, *_ = fitted_classifier("deep")
    model.save(tmp_path / "m.keras")
    code = cli.main(["export", str(tmp_path / "m.keras"), "--format", "saved_model",
                     "--quantize", "int4", "--preprocessing", "caffe", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "quantize=['int4']" in err and "formats=['saved_model']" in err
    assert not (tmp_path / "o").exists()


def test_a_missing_quantizer_names_the_export_extra(tmp_path, monkeypatch):
    model, *_ = fitted_classifier("deep")
    monkeypatch.setitem(sys.modules, "litert_quantizer", None)  # import fails as if absent
    with pytest.raises(MissingExtra) as info:
        export(model, tmp_path / "b", ["tflite"], ["none", "int4"], preprocessing="caffe",
               verbose=False)
    assert str(info.value) == (
        "litert-quantizer is not installed (no module named 'litert_quantizer'). Expected the "
        "export extra: pip install \"keras-vgg[export]\"")
    assert list(tmp_path.iterdir()) == []
