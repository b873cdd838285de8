"""Worker shares of uneven splits, from a folder and from TFRecords of several shards: each
image counted once over all workers, every worker as many elements (so as many steps); the
multi-worker loop leaving the padding out of every figure; two workers on localhost; and a
TFRecords set rewritten in one move. 32x32 PNGs, a few per class."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_data_scale import jpeg_bytes, truncate
from test_distribute import finished, free_ports, h5_arrays, run_recipes

from keras_vgg.finetune import Recipe, loop
from keras_vgg.finetune import tfrecords as tfrecords_lib
from keras_vgg.finetune.data import decode_once, eval_pipeline, load_data, train_pipeline
from keras_vgg.finetune.scan import scan_folder
from keras_vgg.finetune.tfrecords import WriteOptions

SIZE = 32
SHARDS = 4  # the TFRecords source is written as this many shards


def pngs(root, per_class=5, classes="abc"):
    """``per_class`` seeded noise PNGs (32x32) in a sub-folder per class."""
    rng = np.random.default_rng(len(classes) * 100 + per_class)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def shard_bytes(root, shards=SHARDS):
    """A shard size that cuts the folder's images into ``shards`` shards."""
    total = sum(p.stat().st_size for p in root.rglob("*.png"))
    return -(-total // shards)


def recipe(data, changes=None):
    """A small recipe on ``data``, with ``changes`` ({dotted key: value}) on top."""
    return Recipe().but({"data.source": str(data), "model.name": "vgg11",
                         "model.image_size": SIZE, "data.batch_size": 2, "data.augment": [],
                         "data.validation_split": 0.25, **(changes or {})})


def count(ds) -> int:
    return int(ds.reduce(0, lambda n, *_: n + 1))


def batches(ds) -> int:
    return sum(1 for _ in ds)


# -- each image once, as many steps on every worker --------------------------------------------

# (classes, workers, test_split (None: no test split), each split's padding on each worker).
# 3 classes x 5 images: 12 train / 3 val, or 9 / 3 / 3 with a test split; 4 classes x 5
# images: 12 / 4 / 4. A worker's share is the largest one (ceil(n / workers)) or one short.
CASES = [
    ("abc", 2, None, {"train": [0, 0], "val": [0, 1]}),
    ("abc", 2, 0.2, {"train": [0, 1], "val": [0, 1], "test": [0, 1]}),
    ("abcd", 3, 0.2, {"train": [0, 0, 0], "val": [0, 1, 1], "test": [0, 1, 1]}),
]


@pytest.mark.parametrize("source", ["folder", "tfrecords"])
@pytest.mark.parametrize("classes, workers, test_split, padding", CASES)
def test_uneven_shares_count_each_image_once_and_run_equal_steps(tmp_path, source, classes,
                                                                 workers, test_split, padding):
    root = pngs(tmp_path / "data", classes=classes)
    data = root
    if source == "tfrecords":
        data = tmp_path / "records"
        index = tfrecords_lib.write_tfrecords(scan_folder(root), root, data, WriteOptions(
            shard_bytes=shard_bytes(root)))
        assert len(index["shards"]) == SHARDS
    r = recipe(data, {} if test_split is None else {"data.test_split": test_split})
    whole = decode_once(load_data(r))
    shares = [decode_once(load_data(r, shard=(w, workers))) for w in range(workers)]
    sizes = {split: -(-len(getattr(whole, f"{split}_labels")) // workers) for split in padding}
    for split, size in sizes.items():
        # Each image is counted once over all workers: the padding is in no count.
        assert np.sum([s.report[f"{split}_counts"] for s in shares], axis=0).tolist() == (
            whole.report[f"{split}_counts"]), split
        # Every worker holds as many elements, so runs as many steps at any batch size.
        assert [count(getattr(s, split)) for s in shares] == [size] * workers, split
        assert len({batches(eval_pipeline(getattr(s, split), r, "torch"))
                    for s in shares}) == 1, split
        assert len({batches(train_pipeline(getattr(s, split), r, "torch", augment=False))
                    for s in shares}) == 1, split
    for split, size in sizes.items():
        # The padding: at the end of a share, weight 0, its labels following the dataset.
        assert [s.report["worker_share"]["padding"][split] for s in shares] == padding[split]
        elements = []
        for s in shares:
            rows = list(getattr(s, split).as_numpy_iterator())
            assert [int(y) for _, y, _ in rows] == getattr(s, f"{split}_labels").tolist()
            assert [float(w) for _, _, w in rows] == s.weights(split).tolist()
            assert len(s.counted(split)) == size - s.padding[split]
            elements += rows
        # The images weighted 1 over all workers are the whole split's, each once.
        assert sorted((x.tobytes(), int(y)) for x, y, w in elements if w == 1.0) == sorted(
            (x.tobytes(), int(y)) for x, y in getattr(whole, split).as_numpy_iterator())


def test_a_file_that_fails_to_decode_is_padded_for(tmp_path):
    root = pngs(tmp_path / "data")
    first = load_data(recipe(root), shard=(0, 2))  # worker 0 holds 2 of the 3 val images
    broken = first.report["worker_share"]["val"][0]
    with open(broken, "wb") as f:  # a JPEG cut short: the scan passes it, the decode fails
        f.write(jpeg_bytes(7))
    truncate(broken)
    whole = decode_once(load_data(recipe(root)))
    shares = [decode_once(load_data(recipe(root), shard=(w, 2))) for w in range(2)]
    assert [s.report["decode"]["failed"] for s in shares] == [1, 0]
    assert [count(s.val) for s in shares] == [2, 2]  # worker 0: its one image, padded
    assert np.sum([s.report["val_counts"] for s in shares], axis=0).tolist() == (
        whole.report["val_counts"])
    assert sum(whole.report["val_counts"]) == 2
    assert [s.report["worker_share"]["padding"]["val"] for s in shares] == [1, 1]
    assert [len(s.counted("val")) for s in shares] == [1, 1]


def test_a_split_smaller_than_the_workers_is_refused(tmp_path):
    root = pngs(tmp_path / "data")
    with pytest.raises(ValueError, match=r"Expected at least one image of each split for each "
                                         r"of the 4 workers\. Received: val_images=3"):
        load_data(recipe(root), shard=(0, 4))


def test_the_loop_leaves_the_padding_out_of_every_figure():
    """loop._loop_fit (the multi-worker loop, here on one device) on batches of (x, y,
    weight): padding of weight 0 (noise, the wrong label) changes neither the weights trained
    (plain SGD: a wrong normalisation shows in them) nor the logged figures."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 4)).astype("float32"), (np.arange(10) % 3).astype("int32")
    pad_x, pad_y = rng.normal(size=(3, 4)).astype("float32"), np.full(3, 2, "int32")
    weights = np.array([1.0] * 10 + [0.0] * 3, "float32")

    def fitted(*arrays):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        data = tf.data.Dataset.from_tensor_slices(arrays).batch(4)
        history = loop._loop_fit(model, data, data, loop.FitPlan(
            epochs=3, strategy=tf.distribute.get_strategy(), verbose=0))
        return history.history, model.get_weights()

    plain_history, plain_weights = fitted(x, y)
    padded_history, padded_weights = fitted(np.concatenate([x, pad_x]),
                                            np.concatenate([y, pad_y]), weights)
    assert sorted(padded_history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for key, values in plain_history.items():
        # Summed in another order (the padding's zeros): equal to float32 rounding.
        np.testing.assert_allclose(padded_history[key], values, rtol=1e-6, err_msg=key)
    for a, b in zip(padded_weights, plain_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# -- two workers on localhost ------------------------------------------------------------------

TWO_WORKERS = {"name": "shares", "model.name": "vgg11", "model.image_size": SIZE,
               "data.augment": [], "data.batch_size": 2, "data.validation_split": 0.25,
               "model.head_dropout": 0.0, "phases.0.epochs": 1, "phases.1.epochs": 1,
               "phases.1.lr": 1e-5, "early_stopping_patience": 0, "reduce_lr_patience": 0,
               "class_weight": "none", "tensorboard": False}


def test_two_workers_score_each_image_once(tmp_path):
    """The issue's case: 3 classes x 5 images, validation 0.25, 2 workers (TensorFlow's
    multi_worker on localhost): validation shares of 2 images and 1 (padded to 2); the final
    confusion matrix counts the 3 images once each, and both workers end with the same
    weights (they ran the same steps)."""
    root = pngs(tmp_path / "data")
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = [
        run_recipes([(str(tmp_path / f"worker{i}"),
                      {**TWO_WORKERS, "data.source": str(root), "strategy": "multi_worker"})],
                    TF_CONFIG=json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}}))
        for i in range(2)]
    for worker in workers:
        finished(worker)
    runs = [tmp_path / f"worker{i}" for i in range(2)]
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    reports = [json.loads((run / "data_report.json").read_text()) for run in runs]
    assert [sum(map(sum, m["confusion_matrix"])) for m in metrics] == [3, 3]
    assert metrics[0]["confusion_matrix"] == metrics[1]["confusion_matrix"]
    assert [sum(r["val_counts"]) for r in reports] == [2, 1]
    assert [r["worker_share"]["padding"] for r in reports] == [
        {"train": 0, "val": 0, "test": 0}, {"train": 0, "val": 1, "test": 0}]
    assert [m["final"]["validation"]["count"] for m in metrics] == [3, 3]
    for a, b in zip(h5_arrays(runs[0] / "phase2.weights.h5"),
                    h5_arrays(runs[1] / "phase2.weights.h5"), strict=True):
        np.testing.assert_array_equal(a, b)


# -- a TFRecords set rewritten in one move -----------------------------------------------------


def read_set(out):
    """What a reader of ``out`` sees now: every record of the shards its index names, in the
    order written, as (index, label, bytes), each checked against the index (shard counts,
    labels); an error is what it sees when the set is not whole."""
    try:
        index = tfrecords_lib.read_index(out)
        rows = []
        for shard in index["shards"]:
            one = {**index, "shards": [shard]}
            found = [(int(i), int(y), e) for e, y, i in tfrecords_lib.records(
                out, one, np.arange(len(index["labels"]))).as_numpy_iterator()]
            assert len(found) == shard["count"], (shard, len(found))
            rows += found
        assert [y for _, y, _ in rows] == [index["labels"][i] for i, _, _ in rows]
        return rows
    except Exception as error:  # noqa: BLE001 (any failure is a view that is not whole)
        return f"not whole: {type(error).__name__}: {error}"


def test_a_rewrite_is_seen_whole_or_not_at_all(tmp_path, monkeypatch):
    root, out = pngs(tmp_path / "data"), tmp_path / "records"
    options = WriteOptions(shard_bytes=shard_bytes(root))
    first = tfrecords_lib.write_tfrecords(scan_folder(root), root, out, options)
    old = read_set(out)
    assert isinstance(old, list) and len(old) == 15
    (root / "a" / "0.png").unlink()  # a changed folder, as many shards (names that could clash)
    expected = tmp_path / "expected"  # what the changed folder writes
    fresh = tfrecords_lib.write_tfrecords(scan_folder(root), root, expected, options)
    assert len(fresh["shards"]) == len(first["shards"]) == SHARDS
    new = read_set(expected)
    assert isinstance(new, list) and len(new) == 14

    views = []
    for name in ("rename", "remove"):  # a reader looks before and after every change
        real = getattr(tf.io.gfile, name)

        def looked(*args, real=real, **kwargs):
            views.append(read_set(out))
            real(*args, **kwargs)
            views.append(read_set(out))

        monkeypatch.setattr(tf.io.gfile, name, looked)
    index = tfrecords_lib.write_tfrecords(scan_folder(root), root, out, options)
    monkeypatch.undo()
    seen = ["old" if v == old else "new" if v == new else
            v if isinstance(v, str) else f"a mix: {len(v)} records" for v in views]
    assert [v for v in seen if v not in ("old", "new")] == []
    switch = seen.index("new")
    assert seen[:switch] == ["old"] * switch and seen[switch:] == ["new"] * (len(seen) - switch)
    # Only the new set is left: its index and the shards it names, no temporary file.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [tfrecords_lib.INDEX] + [s["file"] for s in index["shards"]])


def test_the_seed_orders_the_records_and_keys_the_set(tmp_path):
    root, out = pngs(tmp_path / "data"), tmp_path / "records"

    def order(folder):
        return [i for i, _, _ in read_set(folder)]

    for seed in (0, 1):  # each seed's order, written fresh
        tfrecords_lib.write_tfrecords(scan_folder(root), root, tmp_path / f"seed{seed}",
                                      WriteOptions(seed=seed))
    assert order(tmp_path / "seed0") != order(tmp_path / "seed1")
    load_data(recipe(root, {"data.tfrecords": str(out)}))  # the recipe's seed: 0
    assert order(out) == order(tmp_path / "seed0")
    load_data(recipe(root, {"data.tfrecords": str(out), "seed": 1}))  # another seed: again
    assert order(out) == order(tmp_path / "seed1")
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    load_data(recipe(root, {"data.tfrecords": str(out), "seed": 1}))  # the same set: not again
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == written
