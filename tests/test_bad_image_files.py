"""Folders with bad files (issue 28): predict, explain, embed and nearest skip what they
cannot read, say which files and why, and go on; they fail (exit 2, one line) only when
nothing could be read. CMYK JPEGs and grey PNGs are read as RGB, not skipped."""

import os
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_vgg import VGG11
from keras_vgg.cli import main
from keras_vgg.embeddings import Embeddings
from keras_vgg.inference.embed import embed_files, nearest_files
from keras_vgg.inference.explain import LINE_HEIGHT, explain
from keras_vgg.inference.predict import predict, read_image
from keras_vgg.pixels import Results, Skipped

GOOD = ["cat/cmyk.jpg", "cat/img_00.jpg", "cat/img_01.png", "coffee/grey.png",
        "coffee/img_00.jpg"]
BAD = {"cat/truncated.jpg": "corrupt or truncated JPEG", "coffee/empty.jpg": "empty file",
       "notes.jpg": "not a JPEG, PNG, BMP or GIF image"}


def write_photos(root: Path) -> Path:
    """Five readable images (a CMYK JPEG and a grey PNG among them) in two class folders,
    and three bad files: a JPEG cut short, an empty .jpg, a text file named .jpg."""
    rng = np.random.default_rng(0)
    for name in ("cat", "coffee"):
        (root / name).mkdir(parents=True)
    for name in ("cat/img_00.jpg", "coffee/img_00.jpg", "cat/img_01.png"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / name)
    Image.new("CMYK", (36, 36), (0, 255, 255, 0)).save(root / "cat/cmyk.jpg")  # red
    Image.fromarray(np.full((33, 30), 77, np.uint8)).save(root / "coffee/grey.png")
    whole = (root / "cat/img_00.jpg").read_bytes()
    (root / "cat/truncated.jpg").write_bytes(whole[:len(whole) // 2])
    (root / "coffee/empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("shopping: milk, coffee\n")
    return root


def skipped_of(root: Path) -> list:
    return [Skipped(str(root / name), reason) for name, reason in sorted(BAD.items())]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny classifier saved as .keras, recording its preprocessing and class names."""
    model = VGG11(input_shape=(32, 32, 3), classes=3, adaptive_pool=1)
    model.preprocessing, model.class_names = "torch", ["cat", "coffee", "dog"]
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return str(path)


@pytest.fixture
def photos(tmp_path):
    return write_photos(tmp_path / "photos")


def test_cmyk_jpeg_and_grey_png_are_read_as_rgb(photos):
    red = read_image(photos / "cat/cmyk.jpg")
    assert red.shape == (36, 36, 3) and red.dtype == np.uint8
    assert np.abs(red.astype(int) - [255, 0, 0]).max() <= 2
    grey = read_image(photos / "coffee/grey.png")
    assert grey.shape == (33, 30, 3) and np.all(grey == 77)


def test_predict_skips_bad_files_and_returns_them(model_file, photos):
    results = predict(model_file, photos, top_k=2)
    assert isinstance(results, Results) and isinstance(results, list)
    assert [p.image for p in results] == [str(photos / name) for name in GOOD]
    assert results.skipped == skipped_of(photos)


def test_predict_arrays_skip_nothing(model_file):
    results = predict(model_file, np.zeros((2, 32, 32, 3), np.uint8), top_k=1)
    assert len(results) == 2 and results.skipped == []


def test_cli_predict_folder_with_bad_files(model_file, photos, capsys):
    assert main(["predict", model_file, str(photos), "--top-k", "1"]) == 0
    captured = capsys.readouterr()
    printed = [line.split(": ")[0] for line in captured.out.splitlines()]
    assert printed == [str(photos / name) for name in GOOD]
    assert captured.err.splitlines() == [
        "keras-vgg predict: skipped 3 files that could not be read: " + ", ".join(
            f"{s.path} ({s.reason})" for s in skipped_of(photos))]


def test_cli_predict_names_five_skipped_files_then_counts(model_file, tmp_path, capsys):
    folder = tmp_path / "many"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a_good.png")
    for i in range(7):
        (folder / f"b_empty{i}.jpg").write_bytes(b"")
    assert main(["predict", model_file, str(folder)]) == 0
    err = capsys.readouterr().err
    assert err.count("(empty file)") == 5 and err.rstrip().endswith("... and 2 more")
    assert "skipped 7 files" in err and f"{folder / 'b_empty4.jpg'}" in err


def test_cli_bad_file_among_files_given_is_skipped(model_file, photos, capsys):
    assert main(["predict", model_file, str(photos / "cat/img_00.jpg"),
                 str(photos / "notes.jpg")]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1
    assert captured.err == (f"keras-vgg predict: skipped 1 file that could not be read: "
                            f"{photos / 'notes.jpg'} (not a JPEG, PNG, BMP or GIF image)\n")


def test_cli_predict_nothing_readable_exits_2_in_one_line(model_file, photos, capsys):
    for name in GOOD:
        (photos / name).unlink()
    assert main(["predict", model_file, str(photos)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "keras-vgg predict: Expected image files (JPEG, PNG, BMP or GIF). Could not read any "
        "of the 3 files: " + ", ".join(f"{s.path} ({s.reason})" for s in skipped_of(photos))]


def test_cli_predict_one_bad_file_alone_is_an_error(model_file, photos, capsys):
    assert main(["predict", model_file, str(photos / "notes.jpg")]) == 2
    assert capsys.readouterr().err == (
        f"keras-vgg predict: Expected an image file. Could not read {photos / 'notes.jpg'}: "
        "not a JPEG, PNG, BMP or GIF image\n")


def test_cli_predict_missing_image_is_named_once(model_file, tmp_path, capsys):
    missing = str(tmp_path / "no_such_photo.jpg")
    assert main(["predict", model_file, missing]) == 2
    err = capsys.readouterr().err
    assert err.count(missing) == 1
    assert err == (f"keras-vgg predict: Expected an image file. Could not read {missing}: "
                   "no such file\n")


@pytest.mark.parametrize("make, what", [
    (None, "no such file or folder"),
    ("mkdir", "a folder without best.keras, saved_model.pb or model.xml"),
    ("touch", "a .h5 file"),
])
def test_cli_predict_bad_model_names_every_form_it_takes(tmp_path, photos, capsys, make, what):
    model = tmp_path / "model.h5"
    if make:
        getattr(model, make)()
    assert main(["predict", str(model), str(photos)]) == 2
    assert capsys.readouterr().err == (
        "keras-vgg predict: Expected the model as a .keras file, a run folder (holding "
        "best.keras), a SavedModel or export folder, a .tflite or .onnx file, or an OpenVINO "
        ".xml (or its folder). Received: "
        f"'{model}' ({what})\n")


def test_explain_mirrors_sub_folders_and_skips_bad_files(model_file, photos, tmp_path, capsys):
    out = tmp_path / "explained"
    mask = os.umask(0o022)
    try:
        code = main(["explain", model_file, str(photos), "-o", str(out), "--top-k", "2"])
    finally:
        os.umask(mask)
    assert code == 0
    captured = capsys.readouterr()
    pngs = [str(Path(name).with_suffix(".png")) for name in GOOD]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == pngs
    assert [line.split(": ")[0] for line in captured.out.splitlines()] == [
        f"{photos / name} -> {out / png}" for name, png in zip(GOOD, pngs)]
    assert captured.err.startswith("keras-vgg explain: skipped 3 files that could not be read: ")
    assert os.stat(out).st_mode & 0o777 == 0o755  # not tempfile.mkdtemp's 0o700
    picture = Image.open(out / "cat/img_00.png")
    assert picture.size[1] == 256 * 40 // 48 + 8 + 3 * LINE_HEIGHT and LINE_HEIGHT >= 18


def test_explain_in_python_keeps_names_given_and_reports_skips(model_file, photos, tmp_path):
    cat, coffee = photos / "cat", photos / "coffee"
    results = explain(model_file, [cat, coffee], tmp_path / "out", top_k=1)
    assert [Path(e.output).relative_to(tmp_path / "out").as_posix() for e in results] == [
        "cmyk.png", "img_00.png", "img_01.png", "grey.png", "img_00_2.png"]
    assert results.skipped == skipped_of(photos)[:2]


def test_explain_nothing_readable_writes_nothing(model_file, photos, tmp_path, capsys):
    out = tmp_path / "explained"
    assert main(["explain", model_file, str(photos / "notes.jpg"),
                 str(photos / "coffee/empty.jpg"), "-o", str(out)]) == 2
    assert capsys.readouterr().err.startswith(
        "keras-vgg explain: Expected image files (JPEG, PNG, BMP or GIF). Could not read any of "
        "the 2 files: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_cli_embed_skips_bad_files(model_file, photos, tmp_path, capsys):
    out = tmp_path / "embeddings.npz"
    assert main(["embed", model_file, str(photos), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"Wrote {out}: 5 images, 512 features each")
    assert captured.err.startswith("keras-vgg embed: skipped 3 files that could not be read: ")
    assert Embeddings.load(out).names == [str(photos / name) for name in GOOD]


def test_embed_files_returns_the_skipped_files(model_file, photos):
    saved = embed_files(model_file, photos, verbose=1)
    assert saved.names == [str(photos / name) for name in GOOD] and len(saved.vectors) == 5
    assert saved.skipped == skipped_of(photos)


def test_embed_writes_its_file_0644_under_umask_022(model_file, photos, tmp_path):
    out = tmp_path / "embeddings.npz"
    mask = os.umask(0o022)
    try:
        embed_files(model_file, photos / "cat/img_00.jpg", out, verbose=0)
    finally:
        os.umask(mask)
    assert os.stat(out).st_mode & 0o777 == 0o644  # not tempfile.mkstemp's 0o600


def test_embed_writes_no_progress_escapes_off_a_terminal(model_file, photos, tmp_path,
                                                         capsys):
    for name in BAD:
        (photos / name).unlink()  # good files only: the check does not depend on skipping
    out = tmp_path / "embeddings.npz"
    assert main(["embed", model_file, str(photos), "-o", str(out), "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err and "\b" not in captured.out
    assert captured.out == (f"Wrote {out}: 5 images, 512 features each (block5_pool, "
                            "average-pooled, L2-normalised)\n")


def test_embed_nothing_readable_exits_2_and_writes_nothing(model_file, photos, tmp_path,
                                                           capsys):
    out = tmp_path / "embeddings.npz"
    assert main(["embed", model_file, str(photos / "cat/truncated.jpg"), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"keras-vgg embed: Expected an image file. Could not read {photos / 'cat/truncated.jpg'}"
        ": corrupt or truncated JPEG\n")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_embed_offline_hint_names_what_embed_takes(photos, monkeypatch, capsys, tmp_path):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid/w.h5: None -- "
                        "[Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    assert main(["embed", "vgg11", str(photos), "-o", str(tmp_path / "e.npz")]) == 2
    err = capsys.readouterr().err
    assert "--weights" not in err and len(err.splitlines()) == 1
    assert err.startswith("keras-vgg embed: Could not download ")
    assert err.endswith("or give `model` (MODEL) as a run folder or a .keras file holding the "
                        "weights. Received: model='vgg11'\n")


def test_nearest_skips_unreadable_queries(model_file, photos, tmp_path, capsys):
    out = tmp_path / "embeddings.npz"
    saved = embed_files(model_file, photos / "cat", out, verbose=0)
    assert len(saved.names) == 3
    queries = [str(photos / "coffee/img_00.jpg"), str(photos / "notes.jpg")]
    results = nearest_files(out, queries, k=1)
    assert [q.image for q in results] == queries[:1]
    assert results.skipped == [Skipped(queries[1], BAD["notes.jpg"])]
    assert main(["nearest", str(out), *queries, "-k", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{queries[0]}: ") and len(captured.out.splitlines()) == 1
    assert captured.err == (f"keras-vgg nearest: skipped 1 file that could not be read: "
                            f"{queries[1]} (not a JPEG, PNG, BMP or GIF image)\n")


def test_cli_predict_tflite_skips_bad_files(photos, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    from keras_vgg.export.serving import serving_model
    from keras_vgg.export.tflite import write_tflite

    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    tiny = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    path = tmp_path / "model.tflite"
    write_tflite(serving_model(tiny, "torch"), path, class_names=["cat", "coffee", "dog"])
    assert main(["predict", str(path), str(photos), "--top-k", "3"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(photos / name) for name in GOOD]
    assert all(sorted(x.rsplit(" ", 1)[0] for x in line.split(": ")[1].split(", "))
               == ["cat", "coffee", "dog"] for line in lines)
    assert captured.err.startswith("keras-vgg predict: skipped 3 files that could not be read: ")
