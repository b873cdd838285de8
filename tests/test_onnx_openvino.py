"""ONNX and OpenVINO files in the export bundle (issue 30): written by Keras's Model.export,
float32 and int8 (ONNX Runtime's static QDQ quantization, NNCF), each checked against Keras
by its own runtime, reported, run by `predict`, and scored again in a fresh process that
imports only its runtime and numpy (not keras_vgg, not keras)."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

from keras_vgg import cli  # noqa: E402
from keras_vgg._extras import MissingExtra  # noqa: E402
from keras_vgg.export import bundle, export, load_predictor  # noqa: E402
from keras_vgg.export.formats import ONNX_FILES, OPENVINO_FILES  # noqa: E402
from keras_vgg.export.runners import KerasRunner  # noqa: E402
from keras_vgg.export.serving import serving_model  # noqa: E402

NAMES = ["red", "green", "blue"]
FILES = [ONNX_FILES["none"], ONNX_FILES["int8"], OPENVINO_FILES["none"], OPENVINO_FILES["int8"]]


def channel_model(size=16):
    """Conv (identity at the centre) -> relu -> max pool -> average -> Dense: the class is the
    brightest channel, with clear margins (int8 keeps every answer)."""
    inputs = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(3, 3, padding="same", activation="relu")
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.MaxPooling2D()(conv(inputs)))
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(h), name="channels")
    kernel = np.zeros((3, 3, 3, 3), "float32")
    kernel[1, 1] = np.eye(3)
    conv.set_weights([kernel, np.zeros(3, "float32")])
    dense.set_weights([4 * np.eye(3, dtype="float32"), np.zeros(3, "float32")])
    return model


def channel_images(count, seed, size=16):
    """uint8 images whose class (their label) is their brightest channel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(0, 120, (count, size, size, 3))
    images[np.arange(count), :, :, labels] += 120
    return images.astype(np.uint8), labels


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(bundle folder, report, sample images, Keras's probabilities on them)."""
    model = channel_model()
    sample, labels = channel_images(18, seed=1)
    representative, _ = channel_images(24, seed=2)
    out = tmp_path_factory.mktemp("served") / "bundle"
    report = export(model, out, ["onnx", "openvino"], ["none", "int8"], preprocessing="tf",
                    class_names=NAMES, sample=sample, sample_labels=labels,
                    representative_data=representative, latency_repeats=2, verbose=False)
    reference = KerasRunner(serving_model(model, "tf"))(sample)
    return out, report, sample, reference


def test_bundle_holds_each_file_checked_and_reported(served):
    out, report, sample, reference = served
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["export_report.json", "labels.txt", "model.onnx", "model_int8.onnx",
                     "openvino/model.bin", "openvino/model.xml", "openvino_int8/model.bin",
                     "openvino_int8/model.xml"]
    rows = report["exports"]
    assert [(r["format"], r["quantize"], r["file"]) for r in rows] == [
        ("onnx", "none", "model.onnx"), ("onnx", "int8", "model_int8.onnx"),
        ("openvino", "none", "openvino/model.xml"),
        ("openvino", "int8", "openvino_int8/model.xml")]
    assert [r["precision"] for r in rows] == ["float32", "int8", "float32", "int8"]
    assert [r.get("inference_precision") for r in rows] == [None, None, "f32", "f32"]
    assert [r["agreement_gate"]["result"] for r in rows] == [None, "passed", None, "passed"]
    for row in rows:
        assert row["checked_on"] == "real images" and row["top1_agreement"] == 1.0
        assert row["accuracy"] == 1.0 and row["paired_difference"]["changed"] == 0
        assert row["max_abs_diff"] <= (1e-4 if row["quantize"] == "none" else 0.2)
    openvino = sum(p.stat().st_size for p in (out / "openvino").iterdir())
    assert rows[2]["size_bytes"] == openvino
    assert rows[0]["size_bytes"] == (out / "model.onnx").stat().st_size
    assert rows[1]["size_vs_float32"] == rows[1]["size_bytes"] / rows[0]["size_bytes"]
    assert (out / "labels.txt").read_text() == "red\ngreen\nblue\n"
    assert json.loads((out / "export_report.json").read_text())["exports"] == rows


FRESH = """
import json, sys
import numpy as np
images = sys.argv[1]
x = np.load(images).astype("float32")
top1 = []
for kind, path in zip(sys.argv[2::2], sys.argv[3::2]):
    if kind == "onnx":
        import onnxruntime as ort
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        p = session.run(None, {session.get_inputs()[0].name: x})[0]
    else:
        import openvino as ov
        core = ov.Core()
        model = core.read_model(path)
        key = ["runtime_options", "INFERENCE_PRECISION_HINT"]
        hint = model.get_rt_info(key).astype(str) if model.has_rt_info(key) else "f32"
        p = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})(x)[0]
    top1.append(p.argmax(-1).tolist())
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("keras_vgg", "keras"))
print(json.dumps({"top1": top1, "imported": ours}))
"""


@pytest.fixture(scope="module")
def fresh(served, tmp_path_factory):
    """Every file of the bundle scored in one fresh process by its own runtime (not
    keras_vgg, not keras): {"top1": [one list per report row], "imported": [...]}."""
    out, report, sample, reference = served
    folder = tmp_path_factory.mktemp("fresh")
    np.save(folder / "sample.npy", sample)
    files = []
    for row in report["exports"]:
        files += ["onnx" if row["format"] == "onnx" else "openvino", str(out / row["file"])]
    done = subprocess.run([sys.executable, "-c", FRESH, str(folder / "sample.npy"), *files],
                          capture_output=True, text=True, cwd=folder, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("index", range(4), ids=FILES)
def test_each_file_scores_the_same_in_a_fresh_process(served, fresh, index):
    """The issue's acceptance: every file scored by its own runtime in a fresh process that
    does not import keras_vgg, with the top-1 agreement the report gives."""
    out, report, sample, reference = served
    row = report["exports"][index]
    assert fresh["imported"] == []
    top1 = np.array(fresh["top1"][index])
    assert np.mean(top1 == reference.argmax(-1)) == row["top1_agreement"] == 1.0
    run, names = load_predictor(out / row["file"])
    assert names == NAMES
    assert top1.tolist() == run(sample).argmax(-1).tolist()


@pytest.mark.parametrize("path", ["model.onnx", "openvino", "openvino_int8/model.xml"])
def test_predict_runs_onnx_and_openvino_files(served, path):
    out, report, sample, reference = served
    run, names = load_predictor(out / path)
    probabilities = run(sample[:3])
    assert probabilities.shape == (3, 3) and names == NAMES
    assert probabilities.argmax(-1).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="precision` 'auto'"):
        load_predictor(out / path, precision="float32")


def test_openvino_bf16_hint_is_recorded_and_checked(tmp_path):
    sample, _ = channel_images(6, seed=3)
    report = export(channel_model(), tmp_path / "b", ["openvino"], preprocessing="tf",
                    sample=sample, precision="bfloat16", latency_repeats=1, verbose=False)
    row = report["exports"][0]
    assert (row["precision"], row["inference_precision"]) == ("float32", "bf16")
    assert row["max_abs_diff"] <= 5e-2
    run, _ = load_predictor(tmp_path / "b" / "openvino")
    import openvino as ov

    model = ov.Core().read_model(str(tmp_path / "b" / "openvino" / "model.xml"))
    assert model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == \
        "bf16"


@pytest.mark.parametrize("kwargs, message", [
    ({"formats": ["onnnx"]}, "Received: formats='onnnx'"),
    ({"formats": "onnnx"}, "Received: formats='onnnx'"),
    ({"formats": ["openvino"], "quantize": ["int8"]},
     "Expected `representative_data` (--representative-data: training images) to calibrate "
     "openvino_int8/model.xml. Received: representative_data=None"),
    ({"formats": ["onnx"], "quantize": ["int8"]},
     "to calibrate model_int8.onnx. Received: representative_data=None"),
    ({"formats": ["tflite", "onnx"], "quantize": ["float16"]},
     "Expected `quantize` to hold 'none' or 'int8' for onnx files (float16, dynamic, int4 are "
     "TFLite's). Received: quantize=['float16']"),
], ids=["format", "format-string", "openvino-int8", "onnx-int8", "onnx-float16"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as info:
        export(channel_model(), tmp_path / "b", preprocessing="tf", verbose=False, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_runtime_names_the_serve_extra(tmp_path, monkeypatch):
    real = bundle.require_openvino

    def missing(quantize=("none",)):
        from keras_vgg._extras import require

        real(quantize)
        return require("openvino_not_here", "serve", package="openvino")

    monkeypatch.setattr(bundle, "require_openvino", missing)
    with pytest.raises(MissingExtra) as info:
        export(channel_model(), tmp_path / "b", ["openvino"], preprocessing="tf", verbose=False)
    assert str(info.value) == (
        "openvino is not installed (no module named 'openvino_not_here'). Expected the serve "
        "extra: pip install \"keras-vgg[serve]\"")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend, formats, message", [
    ("jax", ["openvino"], "Expected KERAS_BACKEND=tensorflow or torch for openvino files"),
    ("jax", ["onnx"], "Expected KERAS_BACKEND=tensorflow or torch for onnx files"),
    ("torch", ["onnx", "tflite"], "Expected KERAS_BACKEND=tensorflow for export"),
])
def test_a_backend_that_cannot_write_a_format_says_so(monkeypatch, backend, formats, message):
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    with pytest.raises(ValueError, match=message) as info:
        bundle.check_backend("export", formats)
    assert "\n" not in str(info.value) and f"KERAS_BACKEND={backend}" in str(info.value)


def test_defaults_stay_saved_model_and_tflite():
    from keras_vgg.choices import DEFAULT_FORMATS, FORMATS

    assert FORMATS == ("saved_model", "tflite", "onnx", "openvino")
    assert DEFAULT_FORMATS == ("saved_model", "tflite")
    args = cli.build_parser().parse_args(["export", "m.keras", "-o", "x"])
    assert args.format == list(DEFAULT_FORMATS)


def test_cli_exports_onnx_and_openvino_int8_from_image_folders(tmp_path, capsys):
    model_file = tmp_path / "channels.keras"
    channel_model().save(model_file)
    for folder, seed in (("train", 4), ("test", 5)):
        images, labels = channel_images(9, seed)
        for i, (image, label) in enumerate(zip(images, labels)):
            (tmp_path / folder / NAMES[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / folder / NAMES[label] / f"{i}.png")
    out = tmp_path / "out"
    code = cli.main(["export", str(model_file), "--preprocessing", "tf", "--format", "onnx",
                     "openvino", "--quantize", "none", "int8", "--representative-data",
                     str(tmp_path / "train"), "--sample-data", str(tmp_path / "test"),
                     "-o", str(out)])
    assert code == 0
    report = json.loads((out / "export_report.json").read_text())
    assert [r["file"] for r in report["exports"]] == FILES
    assert all(r["top1_agreement"] == 1.0 for r in report["exports"])
    assert "openvino_int8/model.xml" in capsys.readouterr().out
    code = cli.main(["predict", str(out / "model_int8.onnx"), str(tmp_path / "test" / "red")])
    assert code == 0 and "red" in capsys.readouterr().out


def test_cli_unknown_format_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["export", "m.keras", "-o", str(tmp_path / "o"), "--format", "onnnx"])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "keras-vgg export: error: argument --format: invalid choice: 'onnnx' (choose from "
        "'saved_model', 'tflite', 'onnx', 'openvino'). Did you mean 'onnx'?")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.backend
def test_this_backend_writes_what_docs_backends_says(tmp_path):
    """Under tensorflow and torch, onnx and openvino files are written and checked; under
    jax, a one-line error says which backends can (docs/backends.md)."""
    sample, _ = channel_images(6, seed=6)
    formats = ["onnx", "openvino"]
    if keras.backend.backend() == "jax":
        with pytest.raises(ValueError, match="Expected KERAS_BACKEND=tensorflow or torch"):
            export(channel_model(), tmp_path / "b", formats, preprocessing="tf", sample=sample,
                   verbose=False)
        assert list(tmp_path.iterdir()) == []
        return
    report = export(channel_model(), tmp_path / "b", formats, preprocessing="tf",
                    sample=sample, latency_repeats=1, verbose=False)
    assert [r["file"] for r in report["exports"]] == ["model.onnx", "openvino/model.xml"]
    assert all(r["max_abs_diff"] <= 1e-4 for r in report["exports"])
