"""Recipe data: folder scanning, the stratified split, the pipelines, tfds (a real tiny
dataset prepared from local files, and tf_flowers with no network) and the built-in shapes.
Tiny images throughout; nothing downloads."""

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds  # a hard dependency: import it plainly, failing loudly
from PIL import Image

from keras_vgg.preprocessing import preprocess_input
from keras_vgg.finetune import builtin
from keras_vgg.finetune.builtin import SHAPES, make_shapes
from keras_vgg.finetune.config import load_recipe
from keras_vgg.finetune.recipe import Recipe
from keras_vgg.finetune.data import (
    UNDECODABLE,
    check_image,
    decode_once,
    eval_pipeline,
    feature_keys,
    load_data,
    load_folder,
    scan_folder,
    EpochSeed,
    shuffle_batch,
    stratified_split,
    train_pipeline,
)

SIZE = 32  # the smallest image_size vgg11 accepts
RED, GREEN, BLUE = (200, 30, 90), (10, 200, 30), (40, 60, 220)


# --- helpers ---------------------------------------------------------------------------


def make_recipe(data, changes=None):
    """A small recipe on ``data`` (a folder, "builtin" or "tfds:NAME"), with ``changes``
    ({dotted key: value}) on top."""
    return Recipe().but({"data.source": str(data), "model.name": "vgg11",
                         "model.image_size": SIZE, "data.batch_size": 4,
                         "data.validation_split": 0.25, "data.augment": [], **(changes or {})})


def solid(mode, colour, size=(12, 10)):
    """A Pillow image of one colour: RGB/RGBA take a tuple, L an int, P a palette colour."""
    if mode == "P":
        image = Image.new("P", size, 0)
        image.putpalette(list(colour) + [0, 0, 0] * 255)
        return image
    return Image.new(mode, size, colour)


def write(path, image=None, fmt=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if image is not None else solid("RGB", RED)).save(path, fmt)
    return path


def encoded(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def noise_image(size=(20, 16), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def asymmetric(green=0, size=16):
    """White left edge on black: a horizontal flip changes it."""
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:, : size // 4] = 255
    pixels[..., 1] = green
    return Image.fromarray(pixels)


def two_classes(root, n=2, colours=(RED, GREEN)):
    for name, colour in zip("ab", colours):
        for i in range(n):
            write(root / name / f"{i}.png", solid("RGB", colour))
    return root


def as_arrays(ds):
    pairs = list(ds.as_numpy_iterator())
    return [x for x, _ in pairs], [int(y) for _, y in pairs]


# --- 1. folder scanning ----------------------------------------------------------------


def test_bad_files_are_skipped_with_their_reason_and_hidden_ones_ignored(tmp_path):
    root = tmp_path / "data"
    write(root / "a" / "good1.png")
    write(root / "a" / "good2.jpg", noise_image(), "JPEG")
    (root / "a" / "corrupt.jpg").write_bytes(
        np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8).tobytes())
    png = encoded(noise_image(), "PNG")
    (root / "a" / "trunc.png").write_bytes(png[: len(png) // 2])
    (root / "a" / "notes.txt").write_text("not a picture\n")
    (root / "a" / "labels.csv").write_text("file,label\n0.png,a\n")
    write(root / "a" / ".hidden.png")  # a valid image, but hidden
    (root / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write(root / "b" / "good1.png", solid("RGB", GREEN))
    write(root / "b" / "good2.png", solid("RGB", GREEN))
    jpeg = encoded(noise_image(seed=1), "JPEG")
    (root / "b" / "trunc.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    write(root / ".cache" / "x" / "0.png")  # a hidden folder is no class
    (root / "README.txt").write_text("top-level files are not in a class\n")

    scan = scan_folder(root)

    # The scan reads headers: a JPEG cut short after its header passes it...
    assert scan.class_names == ["a", "b"]
    assert scan.files == [str(root / "a" / "good1.png"), str(root / "a" / "good2.jpg"),
                          str(root / "b" / "good1.png"), str(root / "b" / "good2.png"),
                          str(root / "b" / "trunc.jpg")]
    assert scan.labels == [0, 0, 1, 1, 1]
    skipped = [(Path(f).relative_to(root).as_posix(), r) for f, r in scan.skipped]
    assert [f for f, _ in skipped] == ["a/corrupt.jpg", "a/labels.csv", "a/notes.txt",
                                       "a/trunc.png"]
    assert [r for _, r in skipped[:3]] == ["not an image"] * 3
    assert skipped[3][1].startswith("corrupt or truncated (") and skipped[3][1].endswith(")")
    assert scan.converted == [] and scan.dropped_classes == []

    # ...and the pipeline's one decode skips and counts it.
    splits = decode_once(load_folder(root, make_recipe(root, {"data.validation_split": 0.5})))
    assert splits.report["decode"]["failed"] == 1
    assert splits.report["skipped"][-1] == {"file": str(root / "b" / "trunc.jpg"),
                                            "reason": UNDECODABLE}
    assert len(splits.train_labels) + len(splits.val_labels) == 4


def test_check_image_reasons(tmp_path):
    good = write(tmp_path / "ok.png", solid("L", 7))
    assert check_image(good) == (True, "", "L")
    text = tmp_path / "x.jpg"
    text.write_text("hello")
    assert check_image(text) == (False, "not an image", None)
    png = encoded(noise_image(), "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(png[: len(png) // 2])
    ok, reason, mode = check_image(cut)
    assert (ok, mode) == (False, None) and reason.startswith("corrupt or truncated (")
    jpeg = encoded(noise_image((64, 64)), "JPEG")  # whole header, half the data: the decode's
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    assert check_image(tmp_path / "cut.jpg") == (True, "", "RGB")
    tiff = write(tmp_path / "x.tif", solid("RGB", RED), "TIFF")
    assert check_image(tiff) == (
        False, "TIFF images are not readable by tf.io.decode_image", None)


def test_empty_and_unusable_class_folders_are_dropped_and_reported(tmp_path):
    root = two_classes(tmp_path / "data", n=4)
    (root / "empty").mkdir()
    (root / "junk").mkdir()
    (root / "junk" / "notes.txt").write_text("nothing to see\n")
    write(root / "nested" / "deeper" / "0.png", solid("RGB", BLUE))  # found recursively
    write(root / "nested" / "deeper" / "1.png", solid("RGB", BLUE))

    scan = scan_folder(root)
    assert scan.class_names == ["a", "b", "nested"]
    assert scan.labels == [0] * 4 + [1] * 4 + [2] * 2
    assert scan.dropped_classes == [("empty", "no usable images"), ("junk", "no usable images")]
    assert [Path(f).name for f, _ in scan.skipped] == ["notes.txt"]

    splits = load_folder(root, make_recipe(root))
    assert splits.class_names == ["a", "b", "nested"]
    assert splits.report["dropped_classes"] == [
        {"class": "empty", "reason": "no usable images"},
        {"class": "junk", "reason": "no usable images"}]
    assert splits.report["skipped"] == [
        {"file": str(root / "junk" / "notes.txt"), "reason": "not an image"}]
    assert splits.report["train_counts"] == [3, 3, 1]
    assert splits.report["val_counts"] == [1, 1, 1]


def test_one_class_is_not_enough(tmp_path):
    root = tmp_path / "data"
    write(root / "a" / "0.png")
    write(root / "a" / "1.png")
    with pytest.raises(ValueError, match=r"at least two class") as error:
        scan_folder(root)
    assert f"data={str(root)!r}" in str(error.value)
    assert "usable classes ['a']" in str(error.value)
    with pytest.raises(ValueError, match=r"at least two class.*data="):
        load_data(make_recipe(root))


def test_all_but_one_class_unusable(tmp_path):
    root = tmp_path / "data"
    write(root / "a" / "0.png")
    write(root / "a" / "1.png")
    (root / "b").mkdir()
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError) as error:
        load_data(make_recipe(root))
    message = str(error.value)
    assert "at least two class" in message and f"data={str(root)!r}" in message
    assert "usable classes ['a']; skipped 1 file(s)." in message


@pytest.mark.parametrize("layout", ["empty root", "only junk"])
def test_nothing_usable(tmp_path, layout):
    root = tmp_path / "data"
    root.mkdir()
    if layout == "only junk":
        for name in "ab":
            (root / name).mkdir()
            (root / name / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"at least two class") as error:
        scan_folder(root)
    assert f"data={str(root)!r} with no usable images" in str(error.value)


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_data_that_is_not_a_folder(tmp_path, kind):
    path = tmp_path / "data.zip"
    if kind == "file":
        path.write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"Expected `data`") as error:
        load_data(make_recipe(path))
    assert f"data={str(path)!r} (not a folder)" in str(error.value)
    with pytest.raises(ValueError, match=r"Expected `data`"):
        scan_folder(path)


def test_grayscale_palette_and_rgba_are_converted_to_rgb(tmp_path):
    root = tmp_path / "data"
    for i in range(2):
        write(root / "gray" / f"{i}.png", solid("L", 77))
        write(root / "pal" / f"{i}.png", solid("P", RED))
        write(root / "rgba" / f"{i}.png", solid("RGBA", GREEN + (128,)))
        write(root / "rgb" / f"{i}.png", solid("RGB", BLUE))
    expected = {"gray": (77, 77, 77), "pal": RED, "rgb": BLUE, "rgba": GREEN}  # per class

    scan = scan_folder(root)
    assert scan.class_names == ["gray", "pal", "rgb", "rgba"]
    assert scan.skipped == []
    assert [(Path(f).relative_to(root).as_posix(), c) for f, c in scan.converted] == [
        ("gray/0.png", "L -> RGB"), ("gray/1.png", "L -> RGB"),
        ("pal/0.png", "P -> RGB"), ("pal/1.png", "P -> RGB"),
        ("rgba/0.png", "RGBA -> RGB"), ("rgba/1.png", "RGBA -> RGB")]

    splits = load_data(make_recipe(root, {"data.validation_split": 0.5}))
    assert splits.report["converted"][0] == {"file": str(root / "gray" / "0.png"),
                                             "change": "L -> RGB"}
    assert len(splits.report["converted"]) == 6
    for ds in (splits.train, splits.val):
        assert ds.element_spec[0].dtype == tf.uint8
        images, labels = as_arrays(ds)
        assert len(images) == 4
        for image, label in zip(images, labels):
            assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3)
            want = np.broadcast_to(np.array(expected[splits.class_names[label]], np.uint8),
                                   image.shape)
            np.testing.assert_array_equal(image, want)


def test_report_counts_and_dataset_labels(tmp_path):
    root = tmp_path / "data"
    for name, n in (("a", 5), ("b", 3), ("c", 4)):
        for i in range(n):
            write(root / name / f"{i}.png", noise_image(seed=i))
    (root / "b" / "bad.jpg").write_bytes(b"definitely not a jpeg" * 10)
    (root / "c" / "readme.md").write_text("# c\n")

    splits = load_data(make_recipe(root))
    report = splits.report
    assert report["source"] == str(root)
    assert report["classes"] == splits.class_names == ["a", "b", "c"]
    # per class round(n * 0.25), at least one, at most n - 1: a 1 (1.25), b 1 (0.75), c 1
    assert report["train_counts"] == [4, 2, 3]
    assert report["val_counts"] == [1, 1, 1]
    assert report["skipped"] == [
        {"file": str(root / "b" / "bad.jpg"), "reason": "not an image"},
        {"file": str(root / "c" / "readme.md"), "reason": "not an image"}]
    assert report["converted"] == [] and report["dropped_classes"] == []
    assert splits.train_labels.dtype == np.int32
    assert splits.train_labels.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    assert splits.val_labels.tolist() == [0, 1, 2]
    assert as_arrays(splits.train)[1] == splits.train_labels.tolist()
    assert as_arrays(splits.val)[1] == splits.val_labels.tolist()


def test_disk_cache_writes_under_cache_dir(tmp_path):
    root = two_classes(tmp_path / "data", n=4)
    (tmp_path / "cache").mkdir()  # the caller makes it (the run directory's cache/)
    splits = load_data(make_recipe(root, {"data.cache": "disk"}), cache_dir=tmp_path / "cache")
    list(splits.train)
    list(splits.val)
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert "train.index" in names and "val.index" in names


def test_builtin_data_uses_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    splits = load_data(make_recipe("builtin", {"data.builtin_images_per_class": 3}))
    assert splits.report["source"] == "builtin shapes"
    assert splits.class_names == list(SHAPES)
    assert splits.report["train_counts"] == [2] * 5 and splits.report["val_counts"] == [1] * 5
    assert (tmp_path / "keras_home" / "datasets" / "keras_vgg_shapes_v1"
            / "3_per_class_seed0").is_dir()


# --- 2. stratified_split ---------------------------------------------------------------


def test_stratified_split_exact_sizes():
    labels = [0] * 10 + [1] * 4
    train, val = stratified_split(labels, 0.25, seed=0)
    # class 0: round(2.5) = 2 held out (round half to even); class 1: round(1.0) = 1
    assert len(train) == 11 and len(val) == 3
    assert np.bincount(np.asarray(labels)[val]).tolist() == [2, 1]
    assert np.bincount(np.asarray(labels)[train]).tolist() == [8, 3]


def test_stratified_split_keeps_every_class_in_both_splits():
    labels = np.array([0] * 2 + [1] * 3 + [2] * 1 + [3] * 50 + [4] * 2)
    train, val = stratified_split(labels, 0.05, seed=3)
    assert np.bincount(labels[val], minlength=5).tolist() == [1, 1, 0, 2, 1]
    train, val = stratified_split(labels, 0.9, seed=3)  # at least one stays in train
    assert np.bincount(labels[train], minlength=5).tolist() == [1, 1, 1, 5, 1]
    assert np.bincount(labels[val], minlength=5).tolist() == [1, 2, 0, 45, 1]


def test_stratified_split_is_a_partition_and_deterministic():
    labels = np.random.default_rng(0).integers(0, 4, 101)
    train, val = stratified_split(labels, 0.3, seed=7)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(101))
    assert train.tolist() == sorted(train.tolist()) and val.tolist() == sorted(val.tolist())
    again = stratified_split(labels, 0.3, seed=7)
    assert train.tolist() == again[0].tolist() and val.tolist() == again[1].tolist()
    others = [stratified_split(labels, 0.3, seed=s)[1].tolist() for s in range(8, 12)]
    assert any(o != val.tolist() for o in others)
    assert all(len(o) == len(val) for o in others)  # the sizes do not depend on the seed


# --- 3. pipelines ----------------------------------------------------------------------


def coloured_folder(root, n=4):
    """Classes a and b, each image its own solid colour (green channel = a unique id)."""
    colours = {}
    for c, name in enumerate("ab"):
        for i in range(n):
            colour = (100 + 50 * c, 10 * (n * c + i) + 5, 7)
            colours[str(write(root / name / f"{i}.png", solid("RGB", colour)))] = colour
    return colours


def test_train_pipeline_batches_are_preprocessed_float32(tmp_path):
    root = tmp_path / "data"
    coloured_folder(root, n=5)  # train: 4 + 4
    recipe = make_recipe(root)
    splits = load_data(recipe)
    batches = list(train_pipeline(splits.train, recipe, "tf").as_numpy_iterator())
    assert [x.shape for x, _ in batches] == [(4, SIZE, SIZE, 3)] * 2
    assert all(x.dtype == np.float32 and y.dtype == np.int32 for x, y in batches)
    images = np.concatenate([x for x, _ in batches])
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.min() < 0  # "tf" mode
    assert sorted(np.concatenate([y for _, y in batches]).tolist()) == [0] * 4 + [1] * 4


@pytest.mark.parametrize("mode", ["caffe", "torch", "tf"])
def test_eval_pipeline_preprocesses_with_the_mode(tmp_path, mode):
    root = tmp_path / "data"
    for name, colour in (("a", RED), ("b", GREEN)):
        for i in range(2):
            write(root / name / f"{i}.png", solid("RGB", colour))
    recipe = make_recipe(root, {"data.validation_split": 0.5})
    splits = load_data(recipe)
    (x, y), = list(eval_pipeline(splits.val, recipe, mode).as_numpy_iterator())
    assert x.dtype == np.float32 and x.shape == (2, SIZE, SIZE, 3) and y.tolist() == [0, 1]
    for image, colour in zip(x, (RED, GREEN)):
        want = preprocess_input(np.full((1, SIZE, SIZE, 3), colour, np.float32), mode)[0]
        np.testing.assert_allclose(image, want, rtol=1e-6, atol=1e-5)
    if mode == "caffe":  # BGR, ImageNet means subtracted
        np.testing.assert_allclose(x[0, 0, 0], [90 - 103.939, 30 - 116.779, 200 - 123.68],
                                   atol=1e-4)


def test_eval_pipeline_keeps_file_order_and_labels(tmp_path):
    root = tmp_path / "data"
    colours = coloured_folder(root, n=6)
    recipe = make_recipe(root, {"data.batch_size": 3})
    splits = load_data(recipe)
    scan = scan_folder(root)
    train_idx, val_idx = stratified_split(scan.labels, recipe.data.validation_split, recipe.seed)
    for ds, idx, labels in ((splits.train, train_idx, splits.train_labels),
                            (splits.val, val_idx, splits.val_labels)):
        batches = list(eval_pipeline(ds, recipe, "tf").as_numpy_iterator())
        got_labels = np.concatenate([y for _, y in batches]).tolist()
        assert got_labels == labels.tolist() == [scan.labels[i] for i in idx]
        pixels = np.rint((np.concatenate([x for x, _ in batches])[:, 0, 0] + 1) * 127.5)
        assert pixels.tolist() == [list(colours[scan.files[i]]) for i in idx]


@pytest.mark.parametrize("augment", [["flip"], ["contrast"]])
def test_augmentation_only_in_train_pipeline(tmp_path, augment):
    root = tmp_path / "data"
    for c, name in enumerate("ab"):
        for i in range(4):
            write(root / name / f"{i}.png", asymmetric(green=40 * i + c))
    recipe = make_recipe(root, {"data.augment": augment, "data.augment_factor": 0.5})
    splits = load_data(recipe)
    evaluated = [x for x, _ in eval_pipeline(splits.train, recipe, "tf").as_numpy_iterator()]
    again = [x for x, _ in eval_pipeline(splits.train, recipe, "tf").as_numpy_iterator()]
    for a, b in zip(evaluated, again):
        np.testing.assert_array_equal(a, b)
    unaugmented = train_pipeline(splits.train, recipe, "tf", augment=False)
    shuffled = [x for x, _ in unaugmented.as_numpy_iterator()]
    assert sorted(np.concatenate(evaluated).sum((1, 2, 3)).tolist()) == sorted(
        np.concatenate(shuffled).sum((1, 2, 3)).tolist())  # the same images, reordered

    epoch = EpochSeed(recipe.seed)
    train = train_pipeline(splits.train, recipe, "tf", epoch=epoch)
    unaugmented = train_pipeline(splits.train, recipe, "tf", augment=False, epoch=epoch)
    changed = []
    for e in range(3):
        epoch.epoch.assign(e)
        for (a, _), (b, _) in zip(unaugmented.as_numpy_iterator(), train.as_numpy_iterator()):
            assert b.shape == a.shape and b.dtype == np.float32
            changed += [bool(np.abs(a[k] - b[k]).max() > 1e-3) for k in range(len(a))]
    assert any(changed)
    if augment == ["flip"]:  # a flip is applied to some images and not to others
        assert not all(changed)


def test_shuffle_batch_draws_each_epoch_from_the_seed_and_the_epoch(tmp_path):
    recipe = make_recipe(tmp_path, {"data.batch_size": 5, "seed": 3})

    def epochs(recipe, order=(0, 1)):
        epoch = EpochSeed(recipe.seed)
        ds = shuffle_batch(tf.data.Dataset.range(20), recipe, epoch)
        out = []
        for e in order:
            epoch.epoch.assign(e)
            out.append(np.concatenate(list(ds.as_numpy_iterator())).tolist())
        return out

    first, second = epochs(recipe), epochs(recipe)
    assert first == second
    assert sorted(first[0]) == list(range(20)) and first[0] != list(range(20))
    assert first[0] != first[1]  # reshuffled each epoch
    assert epochs(recipe, order=(1,)) == [first[1]]  # epoch 1 alone: as after epoch 0
    other = epochs(make_recipe(tmp_path, {"data.batch_size": 5, "seed": 4}), order=(0,))
    assert other[0] != first[0]
    batches = list(shuffle_batch(tf.data.Dataset.range(20), recipe).as_numpy_iterator())
    assert [len(b) for b in batches] == [5] * 4
    assert int(shuffle_batch(tf.data.Dataset.range(21), recipe).cardinality()) == 5


def test_train_pipeline_order_is_seeded(tmp_path):
    root = tmp_path / "data"
    coloured_folder(root, n=6)
    recipe = make_recipe(root)

    def order():
        splits = load_data(recipe)  # a fresh pipeline each time
        ds = train_pipeline(splits.train, recipe, "tf")
        return [np.rint((x[:, 0, 0, 1] + 1) * 127.5).tolist()
                for x, _ in ds.as_numpy_iterator()]

    assert order() == order()


# --- 4. tfds ------------------------------------------------------------------------------
# A real tfds dataset (tests/conftest.py: tiny_tfds, tiny_tfds_prepared), prepared for real by
# download_and_prepare from files the fixture writes, then read with as_dataset; and the real
# tf_flowers builder on a machine without a network (the offline fixture).


def tiny_recipe(tiny, changes=None):
    return make_recipe(f"tfds:{tiny.name}", {
        "data.train_split": "train", "data.val_split": "test",
        "data.data_dir": str(tiny.data_dir), **(changes or {})})


def check_tiny_split(tiny, split, ds, labels):
    """Every image of ``split`` once, each with its own label, as uint8 SIZE x SIZE x 3."""
    assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[1].dtype == tf.int32
    images, got = as_arrays(ds)
    assert got == labels.tolist()
    assert all(x.shape == (SIZE, SIZE, 3) and x.dtype == np.uint8 for x in images)
    colours = sorted(tuple(int(v) for v in x[0, 0]) for x in images)
    assert colours == sorted(tiny.colour(split, label, i)
                             for label, n in enumerate(tiny.counts[split]) for i in range(n))
    for image, label in zip(images, got):  # solid images: the resize keeps the colour
        assert np.all(image == image[0, 0]) and image[0, 0, 0] == tiny.colour(split, label, 0)[0]


def test_tfds_download_and_prepare_for_real_then_as_dataset(tiny_tfds, offline):
    recipe = tiny_recipe(tiny_tfds)
    info = tiny_tfds.data_dir / tiny_tfds.name / "1.0.0" / "dataset_info.json"
    assert not info.exists()

    splits = load_data(recipe)

    assert info.is_file()  # load_tfds prepared it, into the recipe's data_dir
    assert splits.class_names == ["apple", "banana", "cherry"]
    assert splits.report["source"] == f"tfds:{tiny_tfds.name}"
    assert (splits.report["image_key"], splits.report["label_key"]) == ("image", "label")
    assert splits.report["skipped"] == splits.report["converted"] == []
    assert splits.report["train_counts"] == [4, 3, 2]  # what the fixture wrote
    assert splits.report["val_counts"] == [2, 1, 1]
    assert splits.train_labels.dtype == np.int32
    check_tiny_split(tiny_tfds, "train", splits.train, splits.train_labels)
    check_tiny_split(tiny_tfds, "test", splits.val, splits.val_labels)
    assert offline == []  # local files: no host was asked for

    stamp = info.stat().st_mtime_ns
    again = load_data(recipe)  # prepared: read as it is
    assert info.stat().st_mtime_ns == stamp
    assert again.train_labels.tolist() == splits.train_labels.tolist()


def test_tfds_split_slicing(tiny_tfds_prepared):
    whole = load_data(tiny_recipe(tiny_tfds_prepared))
    splits = load_data(tiny_recipe(tiny_tfds_prepared, {"data.train_split": "train[:6]",
                                                        "data.val_split": "train[6:]+test"}))
    assert (len(splits.train_labels), len(splits.val_labels)) == (6, 3 + 4)
    assert splits.train_labels.tolist() == whole.train_labels[:6].tolist()
    assert splits.val_labels.tolist() == (whole.train_labels[6:].tolist()
                                          + whole.val_labels.tolist())
    assert (np.array(splits.report["train_counts"]) + splits.report["val_counts"]).tolist() \
        == [4 + 2, 3 + 1, 2 + 1]
    images, labels = as_arrays(splits.train)
    assert labels == splits.train_labels.tolist()
    assert all(x.shape == (SIZE, SIZE, 3) for x in images)


@pytest.mark.parametrize("key, value", [
    ("train_split", "tran[:75%]"), ("train_split", "train[:75"), ("val_split", "validation")])
def test_tfds_bad_split(tiny_tfds_prepared, key, value):
    with pytest.raises(ValueError, match=rf"Expected `data.{key}` to be a split of "
                                         rf"{tiny_tfds_prepared.name} \(\['test', 'train'\]"
                       ) as error:
        load_data(tiny_recipe(tiny_tfds_prepared, {f"data.{key}": value}))
    assert f"data.{key}={value!r}" in str(error.value)


@pytest.mark.parametrize("key, value, names", [
    ("image_key", "file_name", "Image feature ['image']"),
    ("label_key", "nope", "ClassLabel feature ['label']")])
def test_tfds_wrong_feature_key_fails_before_preparing(tiny_tfds, key, value, names):
    with pytest.raises(ValueError, match=r"Expected `.*` to name a") as error:
        load_data(tiny_recipe(tiny_tfds, {f"data.{key}": value}))
    assert str(error.value) == (f"Expected `data.{key}` to name a {names}. Received: "
                                f"data.{key}={value!r}")
    assert not (tiny_tfds.data_dir / tiny_tfds.name).exists()  # nothing prepared
    splits = load_data(tiny_recipe(tiny_tfds, {"data.image_key": "image",
                                                  "data.label_key": "label"}))
    assert splits.class_names == tiny_tfds.classes


def test_tfds_folder_without_dataset_info(tiny_tfds):
    folder = tiny_tfds.data_dir / tiny_tfds.name / "1.0.0"
    folder.mkdir(parents=True)
    (folder / "features.json").write_text("{}")  # half a copy
    with pytest.raises(ValueError) as error:
        load_data(tiny_recipe(tiny_tfds))
    assert str(error.value) == (
        f"Expected the tfds dataset folder {folder} to be prepared (a copy of a whole "
        f"{tiny_tfds.name}/1.0.0/ folder). Received: a folder without dataset_info.json; "
        f"delete it, or copy the whole folder again.")


@pytest.mark.parametrize("data_dir", ["recipe", "default"])
def test_tfds_offline_fails_within_seconds_saying_how_to_prepare(tmp_path, offline, data_dir):
    """The real tf_flowers builder with nothing prepared and no network: a ValueError in
    seconds, not tfds' 10 retries with backoff (about 3.5 minutes) and a raw ConnectionError."""
    import requests
    from tensorflow_datasets.core.download import downloader

    recipe = flowers_recipe(
        {"data.data_dir": str(tmp_path / "tfds") if data_dir == "recipe" else None})
    if data_dir == "recipe":
        root = str(tmp_path / "tfds")
    else:  # tfds' default: $TFDS_DATA_DIR (conftest sets it), else ~/tensorflow_datasets
        root = os.environ["TFDS_DATA_DIR"]
    start = time.monotonic()
    with pytest.raises(ValueError) as error:
        load_data(recipe)
    elapsed = time.monotonic() - start

    assert elapsed < 15, f"{elapsed:.1f} s"
    # asked once by the probe and once by tfds' own download, whose retries were off
    assert offline == ["download.tensorflow.org"] * 2
    assert downloader.MAX_RETRIES == 10  # and are on again
    assert isinstance(error.value.__cause__, requests.exceptions.ConnectionError)
    message = str(error.value)
    assert message.startswith(
        f"The tfds dataset 'tf_flowers' is not prepared in {root} (no tf_flowers/3.0.1/ "
        f"there) and could not be downloaded: download.tensorflow.org is unreachable (Failed "
        f"to resolve 'download.tensorflow.org' ([Errno -2] Name or service not known)).")
    assert ("tfds looks for prepared datasets in the recipe's `data_dir` (when unset: "
            "$TFDS_DATA_DIR, else ~/tensorflow_datasets)") in message
    assert ('python -c "import tensorflow_datasets as tfds; '
            'tfds.builder(\'tf_flowers\').download_and_prepare()"') in message
    assert f"copy the tf_flowers/ folder it writes (under ~/tensorflow_datasets) to {root}/" \
        in message
    assert not Path(root, "tf_flowers", "3.0.1").exists()


def test_tfds_unreachable_host_still_prepares_what_needs_no_network(tiny_tfds, offline,
                                                                      monkeypatch):
    """The probe only turns tfds' retries off: a dataset whose files need no download (here
    local files; in use, files tfds downloaded before) is still prepared."""
    builder_class = type(tfds.builder(tiny_tfds.name, data_dir=str(tiny_tfds.data_dir)))
    monkeypatch.setattr(builder_class, "url_infos", {"https://tiny.example/a.zip": None,
                                                     "https://tiny.example/b.zip": None})
    splits = load_data(tiny_recipe(tiny_tfds))
    assert offline == ["tiny.example"]  # one probe per host
    assert splits.report["train_counts"] == [4, 3, 2]


def test_tfds_prepared_dataset_asks_no_host(tiny_tfds_prepared, offline, monkeypatch):
    builder_class = type(tfds.builder(tiny_tfds_prepared.name))
    monkeypatch.setattr(builder_class, "url_infos", {"https://tiny.example/a.zip": None})
    splits = load_data(tiny_recipe(tiny_tfds_prepared))
    assert offline == [] and splits.report["val_counts"] == [2, 1, 1]


def test_tfds_grayscale_images_become_rgb():
    """Splits promise uint8 HxWx3: a tfds dataset of 1-channel images (mnist, fashion_mnist,
    emnist...) comes through with 3, as a VGG input needs. (mock_data: mnist's real
    features, generated examples; the real path is tested above.)"""
    with tfds.testing.mock_data(num_examples=4):
        splits = load_data(make_recipe("tfds:mnist", {"data.train_split": "train",
                                                      "data.val_split": "test"}))
    assert splits.class_names == [str(i) for i in range(10)]
    assert splits.train.element_spec[0].shape.as_list() == [SIZE, SIZE, 3]
    image, _ = next(iter(splits.train))
    assert tuple(image.shape) == (SIZE, SIZE, 3)


FLOWERS = ["dandelion", "daisy", "tulips", "sunflowers", "roses"]


def flowers_recipe(changes=None):
    return make_recipe("tfds:tf_flowers", {"data.train_split": "train[:75%]",
                                           "data.val_split": "train[75%:]", **(changes or {})})


def test_feature_keys():
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.ClassLabel(names=FLOWERS),
        "file_name": tfds.features.Text()})
    assert feature_keys(features) == ("image", "label")
    assert feature_keys(features, "image", "label") == ("image", "label")
    with pytest.raises(ValueError, match=r"Expected `data.image_key` to name a Image feature "
                                         r"\['image'\]. Received: data.image_key='file_name'"):
        feature_keys(features, image_key="file_name")
    with pytest.raises(ValueError, match=r"Expected `data.label_key` to name a ClassLabel feature "
                                         r"\['label'\]. Received: data.label_key='labels'"):
        feature_keys(features, label_key="labels")

    other = tfds.features.FeaturesDict({
        "img": tfds.features.Image(shape=(None, None, 3)),
        "coarse": tfds.features.ClassLabel(num_classes=2),
        "fine": tfds.features.ClassLabel(num_classes=4)})
    with pytest.raises(ValueError, match=r"exactly one ClassLabel feature or `data.label_key` set"):
        feature_keys(other)
    assert feature_keys(other, label_key="fine") == ("img", "fine")  # the only Image: found


@pytest.mark.parametrize("name, classes", [
    ("tf_flowers", 5), ("cats_vs_dogs", 2), ("oxford_flowers102", 102), ("caltech101", 102)])
def test_shipped_tfds_recipes_find_their_feature_keys(name, classes):
    """The shipped tfds recipes rely on feature discovery in the real builders' features."""
    recipe = load_recipe(name)
    assert recipe.data.source == f"tfds:{name}"
    features = tfds.builder(name).info.features
    keys = feature_keys(features, recipe.data.image_key, recipe.data.label_key)
    assert keys == ("image", "label")
    assert features["label"].num_classes == classes


# --- 5. the built-in shapes ------------------------------------------------------------


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_make_shapes_layout(tmp_path):
    root = make_shapes(tmp_path, images_per_class=3)
    assert root == tmp_path / "3_per_class_seed0"
    assert sorted(p.name for p in root.iterdir()) == list(SHAPES)
    for shape in SHAPES:
        files = sorted(p.name for p in (root / shape).iterdir())
        assert files == [f"{shape}_{i:04d}.png" for i in range(3)]
        for name in files:
            with Image.open(root / shape / name) as image:
                assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temp dirs left


def test_make_shapes_is_deterministic(tmp_path):
    first = tree_bytes(make_shapes(tmp_path / "one", images_per_class=3))
    second = tree_bytes(make_shapes(tmp_path / "two", images_per_class=3))
    assert len(first) == 15 and first == second
    other = make_shapes(tmp_path / "one", images_per_class=3, seed=1)
    assert other.name == "3_per_class_seed1"
    third = tree_bytes(other)
    assert third.keys() == first.keys()
    assert all(third[k] != first[k] for k in first)
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [
        "3_per_class_seed0", "3_per_class_seed1"]


def test_make_shapes_twice_does_not_rewrite(tmp_path, monkeypatch):
    root = make_shapes(tmp_path, images_per_class=3)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    def refuse(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(builtin, "render", refuse)
    assert make_shapes(tmp_path, images_per_class=3) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps
    assert [p.name for p in tmp_path.iterdir()] == [root.name]


def test_make_shapes_interrupted_leaves_nothing(tmp_path, monkeypatch):
    real, calls = builtin.render, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(builtin, "render", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_shapes(tmp_path, images_per_class=3)
    assert list(tmp_path.iterdir()) == []


def test_scan_of_builtin_shapes(tmp_path):
    scan = scan_folder(make_shapes(tmp_path, images_per_class=3))
    assert (scan.class_names, len(scan.files), scan.skipped) == (list(SHAPES), 15, [])
    assert scan.labels == [c for c in range(5) for _ in range(3)]
    assert scan.converted == [] and scan.dropped_classes == []


# --- bugs found ------------------------------------------------------------------------
# Regression tests for bugs found in review; all are fixed and pass. Each docstring says what
# went wrong.


def test_a_split_with_no_images_fails_with_value_error(tmp_path):
    """With one image per class nothing can be held out, and _splits says so. (It used to
    fail first: stratified_split returned np.sort([]), a float64 array, and load_folder's
    files[val_idx] raised IndexError.)"""
    train, val = stratified_split([0, 1], 0.25, seed=0)
    assert (train.tolist(), val.tolist()) == ([0, 1], [])
    assert val.dtype.kind == "i", f"indices of dtype {val.dtype}"
    root = two_classes(tmp_path / "data", n=1)
    with pytest.raises(ValueError, match=r"Expected images in every split.*0 for validation"):
        load_data(make_recipe(root))


# Every file the scan keeps must decode: the scan also runs tf.io.decode_image, which rejects
# some files Pillow accepts.


def test_png_missing_its_last_chunk_is_skipped(tmp_path):
    """A PNG without its IEND chunk (the last 12 bytes) passes Pillow's load() but
    tf.io.decode_image rejects it ("Invalid PNG data")."""
    root = two_classes(tmp_path / "data", n=2)
    bad = root / "a" / "cut.png"
    bad.write_bytes(encoded(noise_image(), "PNG")[:-12])
    scan = scan_folder(root)
    assert [(f, r.split(" (")[0]) for f, r in scan.skipped] == [
        (str(bad), "corrupt or truncated")]
    splits = load_data(make_recipe(root, {"data.validation_split": 0.5}))
    list(splits.train), list(splits.val)  # every kept file decodes


def test_gif_missing_its_trailer_is_kept_because_it_decodes(tmp_path):
    """TensorFlow logs "failed to slurp gif file" but returns the frame: the file is usable."""
    root = two_classes(tmp_path / "data", n=2)
    (root / "a" / "cut.gif").write_bytes(encoded(noise_image(), "GIF")[:-1])
    scan = scan_folder(root)
    assert scan.skipped == [] and str(root / "a" / "cut.gif") in scan.files
    splits = load_data(make_recipe(root, {"data.validation_split": 0.5}))
    assert len(list(splits.train)) + len(list(splits.val)) == 5


@pytest.mark.parametrize("mode", ["1", "P"])
def test_bmp_with_a_colour_table_is_skipped_with_its_reason(tmp_path, mode):
    """tf.io.decode_bmp fails on a 1-bit BMP and reads an 8-bit palette BMP's indices as grey
    levels (a solid RED one decodes to black), so the scan skips both and says why."""
    root = two_classes(tmp_path / "data", n=2, colours=(GREEN, BLUE))
    write(root / "a" / "x.bmp", solid("RGB", RED).convert(mode))
    scan = scan_folder(root)
    assert [(Path(f).name, r.split(":")[0]) for f, r in scan.skipped] == [
        ("x.bmp", "BMP with a colour table")]


def test_files_in_hidden_subfolders_are_ignored(tmp_path):
    """Hidden class folders and hidden files are ignored, and so is a hidden folder inside a
    class (a NAS's .@__thumb thumbnails, .ipynb_checkpoints). (It used to be scanned: its
    copies of the class's images joined the data, and could land in both train and val.)"""
    root = two_classes(tmp_path / "data", n=2)
    write(root / "a" / ".@__thumb" / "0.png")
    scan = scan_folder(root)
    assert str(root / "a" / ".@__thumb" / "0.png") not in scan.files


# --- the test split -----------------------------------------------------------------------


def test_test_split_is_held_out_per_class_before_validation(tmp_path):
    """12 images per class, test 0.25 and validation 0.25 of the whole: 3 + 3 + 6 a class,
    three disjoint splits that cover the folder, drawn from the seed."""
    root = tmp_path / "data"
    colours = coloured_folder(root, n=12)
    recipe = make_recipe(root, {"data.test_split": 0.25})
    splits = decode_once(load_data(recipe))
    assert splits.present() == ("train", "val", "test")
    assert (splits.report["train_counts"], splits.report["val_counts"],
            splits.report["test_counts"]) == ([6, 6], [3, 3], [3, 3])
    seen = [sorted(int(x[0, 0, 1]) for x, _ in ds.as_numpy_iterator())
            for ds in (splits.train, splits.val, splits.test)]
    assert sorted(sum(seen, [])) == sorted(c[1] for c in colours.values())  # each image once
    again = decode_once(load_data(recipe))
    assert sorted(int(x[0, 0, 1]) for x, _ in again.test.as_numpy_iterator()) == seen[2]
    other = decode_once(load_data(make_recipe(root, {"data.test_split": 0.25, "seed": 1})))
    assert sorted(int(x[0, 0, 1]) for x, _ in other.test.as_numpy_iterator()) != seen[2]
    without = load_data(make_recipe(root))
    assert without.test is None and without.present() == ("train", "val")


def test_test_data_is_a_separate_folder_of_the_same_classes(tmp_path):
    train_root, test_root = tmp_path / "train", tmp_path / "test"
    coloured_folder(train_root, n=4)
    two_classes(test_root, n=3)
    splits = decode_once(load_data(make_recipe(train_root, {"data.test_data": str(test_root)})))
    assert splits.report["test_data"] == str(test_root)
    assert (splits.report["train_counts"], splits.report["val_counts"],
            splits.report["test_counts"]) == ([3, 3], [1, 1], [3, 3])
    assert sorted(tuple(int(v) for v in x[0, 0]) for x, _ in splits.test.as_numpy_iterator()) \
        == sorted([RED] * 3 + [GREEN] * 3)
    write(tmp_path / "odd" / "c" / "0.png")
    write(tmp_path / "odd" / "a" / "0.png")
    with pytest.raises(ValueError, match=r"Expected `data.test_data` to hold the training "
                       r"data's classes \['a', 'b'\]\. Received: data.test_data=\".*odd \(classes "
                       r"\['a', 'c'\]\)\""):
        load_data(make_recipe(train_root, {"data.test_data": str(tmp_path / "odd")}))
    with pytest.raises(ValueError, match=r"Expected `data.test_data` unset when training from "
                       r"TFRecords .* Received: data.test_data="):
        load_data(make_recipe(train_root, {"data.test_data": str(test_root),
                                           "data.tfrecords": str(tmp_path / "records")}))
    with pytest.raises(ValueError, match=r"Expected `data.test_data` to be a folder of class "
                       r"sub-folders. Received: data.test_data='.*nowhere'"):
        load_data(make_recipe(train_root, {"data.test_data": str(tmp_path / "nowhere")}))


def test_tfds_test_split_by_name(tiny_tfds_prepared, offline):
    recipe = tiny_recipe(tiny_tfds_prepared, {"data.train_split": "train[:6]",
                                              "data.val_split": "train[6:]",
                                              "data.test_split": "test"})
    splits = load_data(recipe)
    assert (sum(splits.report["train_counts"]), sum(splits.report["val_counts"])) == (6, 3)
    assert [a + b for a, b in zip(splits.report["train_counts"],
                                  splits.report["val_counts"])] == [4, 3, 2]
    assert splits.report["test_counts"] == [2, 1, 1]
    check_tiny_split(tiny_tfds_prepared, "test", splits.test, splits.test_labels)
    with pytest.raises(ValueError, match=r"Expected `data.test_split` to be a split of"):
        load_data(tiny_recipe(tiny_tfds_prepared, {"data.test_split": "holdout"}))
