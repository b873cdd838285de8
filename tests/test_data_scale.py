"""Data at scale: the remembered scan, the cache choice, one decode in the pipeline (a file
that fails there is skipped and counted), worker shares and TFRecords. Tiny images, a few
dozen files."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_vgg.finetune import Recipe, finetune
from keras_vgg.finetune import tfrecords as tfrecords_lib
from keras_vgg.finetune.data import (
    UNDECODABLE,
    LoadOptions,
    Memory,
    choose_cache,
    decode_once,
    load_data,
    load_folder,
    train_pipeline,
    worker_share,
)
from keras_vgg.finetune.scan import scan_folder

SIZE = 32


def jpeg_bytes(seed, size=48):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def folder(root, per_class=6, classes="abc"):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i}.jpg").write_bytes(jpeg_bytes(c * 100 + i))
    return root


def truncate(path):
    """Half the file: the header (and so the scan) is intact, the decode fails."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def recipe(data, changes=None):
    """A small recipe on ``data``, with ``changes`` ({dotted key: value}) on top."""
    return Recipe().but({"data.source": str(data), "model.name": "vgg11",
                         "model.image_size": SIZE, "data.batch_size": 4, "data.augment": [],
                         "data.validation_split": 0.25, **(changes or {})})


# -- the manifest ----------------------------------------------------------------------------


def test_manifest_is_reused_and_invalidated_by_a_changed_added_or_removed_file(tmp_path):
    root, where = folder(tmp_path / "data"), tmp_path / "manifests"
    first = scan_folder(root, manifest_dir=where)
    assert (first.listed, first.checked, len(first.files)) == (18, 18, 18)
    assert Path(first.manifest).parent == where
    assert not [p for p in where.iterdir() if p.name.endswith(".tmp")]  # renamed into place

    again = scan_folder(root, manifest_dir=where)  # unchanged: nothing checked
    assert again.checked == 0 and again.files == first.files and again.labels == first.labels

    (root / "a" / "0.jpg").write_bytes(b"not a jpeg any more")  # changed
    changed = scan_folder(root, manifest_dir=where)
    assert changed.checked == 1
    assert changed.skipped == [(str(root / "a" / "0.jpg"), "not an image")]

    (root / "b" / "new.jpg").write_bytes(jpeg_bytes(7))  # added
    added = scan_folder(root, manifest_dir=where)
    assert added.checked == 1 and str(root / "b" / "new.jpg") in added.files

    (root / "c" / "5.jpg").unlink()  # removed
    removed = scan_folder(root, manifest_dir=where)
    assert removed.checked == 0 and str(root / "c" / "5.jpg") not in removed.files
    assert removed.listed == 18 and len(removed.files) == 17
    rows = json.loads(Path(removed.manifest).read_text())["files"]
    assert len(rows) == 18 and str(root / "c" / "5.jpg") not in {r[0] for r in rows}

    stamp = os.stat(root / "c" / "4.jpg")  # the same size, a new mtime: checked again
    os.utime(root / "c" / "4.jpg", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    assert scan_folder(root, manifest_dir=where).checked == 1
    assert scan_folder(root, manifest=False).checked == 18  # off: everything, nothing kept


# -- the cache choice ------------------------------------------------------------------------


def test_cache_auto_picks_memory_under_the_budget_else_disk(tmp_path):
    per_image = SIZE * SIZE * 3
    ten = Memory(budget=10 * per_image)
    choice, reason, figures = choose_cache("auto", 10, SIZE, tmp_path, ten)
    assert choice == "memory" and "within the memory budget" in reason
    assert figures["estimate_bytes"] == 10 * per_image
    choice, reason, _ = choose_cache("auto", 11, SIZE, tmp_path, ten)
    assert choice == "disk" and str(tmp_path) in reason
    assert choose_cache("auto", 11, SIZE, None, ten)[0] == "none"
    assert choose_cache("auto", 10, 224, None, Memory(available=10**12))[0] == "memory"
    for cache in ("disk", "none"):
        assert choose_cache(cache, 10**9, 224, tmp_path)[0] == cache
    assert Recipe().data.cache == "auto"
    with pytest.raises(ValueError,
                       match=r"Expected `data.cache` to be one of \['auto', 'memory'"):
        Recipe().but({"data.cache": "ram"})


def test_cache_memory_that_cannot_fit_fails_early_with_the_figure(tmp_path):
    with pytest.raises(ValueError) as error:
        choose_cache("memory", 100_000, 224, tmp_path, Memory(available=8 * 10**9))
    message = str(error.value)
    assert message.startswith("Expected `data.cache` to fit in memory: 100,000 images at "
                              "224x224 decode to 15.05 GB, over 80% of the 8.00 GB")
    assert "data.cache=auto" in message and "data.cache=disk" in message
    assert "data.cache=none" in message
    assert message.endswith("Received: data.cache='memory'")


def test_cache_auto_over_the_budget_decodes_into_the_run_folder(tmp_path):
    root = folder(tmp_path / "data", per_class=4, classes="ab")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    splits = load_data(recipe(root), cache_dir=cache_dir, budget=1)
    assert splits.cache == "disk" and splits.report["cache"]["choice"] == "disk"
    assert splits.report["cache"]["budget_bytes"] == 1
    decode_once(splits)
    assert {p.name.split(".")[0] for p in cache_dir.iterdir()} == {"train", "val"}
    assert len(list(splits.train.as_numpy_iterator())) == 6


# -- one decode, in the pipeline -------------------------------------------------------------


@pytest.mark.backend
def test_a_file_that_passes_the_scan_but_fails_to_decode_is_skipped_and_counted(tmp_path):
    root = folder(tmp_path / "data", per_class=4, classes="ab")
    truncate(root / "b" / "1.jpg")
    assert str(root / "b" / "1.jpg") in scan_folder(root).files  # the header is fine
    splits = load_data(recipe(root, {"data.cache": "none"}))
    assert len(splits.train_labels) + len(splits.val_labels) == 8  # before the decode
    decode_once(splits)
    report = splits.report
    assert report["decode"]["failed"] == 1 and report["decode"]["images"] == 8
    assert report["skipped"] == [{"file": str(root / "b" / "1.jpg"), "reason": UNDECODABLE}]
    assert len(splits.train_labels) + len(splits.val_labels) == 7
    assert sum(report["train_counts"]) + sum(report["val_counts"]) == 7

    # A file that breaks after that pass (cache none: decoded again every epoch) is skipped
    # mid-epoch too, not a crash.
    train = splits.report["train_counts"]
    truncate(root / "a" / "0.jpg")
    batches = train_pipeline(splits.train, recipe(root, {"data.cache": "none"}), "torch")
    seen = sum(len(y) for _, y in batches.as_numpy_iterator())
    assert seen in (sum(train) - 1, sum(train))  # - 1 when a/0.jpg is a training image


def test_a_run_skips_the_undecodable_file_and_reports_it(tmp_path):
    root = folder(tmp_path / "data", per_class=4, classes="ab")
    truncate(root / "a" / "2.jpg")
    run = finetune(recipe(root, {"phases.0.epochs": 1, "phases.1.epochs": 0,
                                 "tensorboard": False, "early_stopping_patience": 0,
                                 "reduce_lr_patience": 0}),
                   run_dir=tmp_path / "run", verbose=0)
    report = json.loads((run.run_dir / "data_report.json").read_text())
    assert report["decode"]["failed"] == 1
    assert report["skipped"] == [{"file": str(root / "a" / "2.jpg"), "reason": UNDECODABLE}]
    assert report["cache"]["choice"] == "memory"
    assert sum(run.metrics["per_class"][c]["support"] for c in "ab") == sum(
        report["val_counts"])


# -- worker shares ---------------------------------------------------------------------------


def test_worker_shares_are_seeded_disjoint_and_cover_the_set():
    indices = np.arange(3, 40, 2)
    for workers in (2, 3):
        shares = [worker_share(indices, w, workers, seed=5) for w in range(workers)]
        assert sorted(np.concatenate(shares).tolist()) == indices.tolist()
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        assert all(np.array_equal(s, worker_share(indices, w, workers, seed=5))
                   for w, s in enumerate(shares))
    assert not np.array_equal(worker_share(indices, 0, 2, 5), worker_share(indices, 0, 2, 6))


def test_each_worker_lists_and_decodes_only_its_share(tmp_path):
    root = folder(tmp_path / "data", per_class=5, classes="ab")
    whole = load_folder(root, recipe(root))
    shares = [decode_once(load_folder(root, recipe(root), LoadOptions(shard=(w, 2))))
              for w in range(2)]
    for split in ("train", "val"):
        parts = [set(s.report["worker_share"][split]) for s in shares]
        assert not parts[0] & parts[1]
        assert len(parts[0] | parts[1]) == len(getattr(whole, f"{split}_labels"))
        for s, part in zip(shares, parts):  # what a worker decodes is its share
            assert len(getattr(s, f"{split}_labels")) == len(part)
            assert s.report["decode"]["images"] == sum(
                len(s.report["worker_share"][k]) for k in ("train", "val"))
    assert shares[0].report["worker_share"]["workers"] == 2
    policy = shares[0].train.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.OFF  # tf.distribute: no second cut
    np.testing.assert_array_equal(shares[1].all_train_labels, whole.train_labels)


# -- TFRecords -------------------------------------------------------------------------------


@pytest.mark.backend
def test_a_folder_written_as_tfrecords_trains_the_same_images(tmp_path):
    root = folder(tmp_path / "data", per_class=4, classes="ab")
    truncate(root / "b" / "3.jpg")
    out = tmp_path / "records"
    direct = decode_once(load_data(recipe(root)))
    via = decode_once(load_data(recipe(root, {"data.tfrecords": str(out)})))
    index = tfrecords_lib.read_index(out)
    shard_name = f"images-{index['generation']}-00000-of-00001.tfrecord"  # the set's own names
    assert index["fingerprint"].startswith(index["generation"])
    assert sorted(p.name for p in out.iterdir()) == [
        shard_name, "tfrecords.json"]  # no temporary file left
    assert via.class_names == direct.class_names
    assert via.report["train_counts"] == direct.report["train_counts"]
    assert via.report["skipped"] == direct.report["skipped"]  # the same file, the same reason

    def images(splits):
        return sorted(x.tobytes() for x, _ in splits.train.as_numpy_iterator())

    assert images(via) == images(direct)
    shard = out / shard_name
    written = shard.stat().st_mtime_ns
    again = decode_once(load_data(recipe(out)))  # data= the TFRecords folder itself
    assert images(again) == images(direct) and shard.stat().st_mtime_ns == written
    load_data(recipe(root, {"data.tfrecords": str(out)}))  # unchanged folder: not written again
    assert shard.stat().st_mtime_ns == written

    (root / "a" / "new.jpg").write_bytes(jpeg_bytes(99))  # changed folder: written again
    grown = decode_once(load_data(recipe(root, {"data.tfrecords": str(out)})))
    assert sum(grown.report["train_counts"]) + sum(grown.report["val_counts"]) == 8
    regrown = tfrecords_lib.read_index(out)  # a new set, under new names; the old one gone
    assert sorted(p.name for p in out.iterdir()) == [
        f"images-{regrown['generation']}-00000-of-00001.tfrecord", "tfrecords.json"]
    assert regrown["generation"] != index["generation"]


def test_tfrecords_refuses_a_folder_of_other_files_and_tfds(tmp_path):
    root = folder(tmp_path / "data", per_class=2, classes="ab")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"Expected `data.tfrecords` to name a new folder.*"
                                         r"Received: data.tfrecords='.*other \(holds other "
                                         r"files\)'"):
        load_data(recipe(root, {"data.tfrecords": str(other)}))
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match=r"Expected `data.tfrecords` unset with tfds data"):
        load_data(recipe("tfds:mnist", {"data.tfrecords": str(tmp_path / "x")}))
    assert Recipe().but({"data.tfrecords": "none"}).data.tfrecords is None
    assert not tfrecords_lib.is_tfrecords(root)
