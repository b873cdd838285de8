"""Data for recipes: tfds by name, a folder of class sub-folders, or the built-in shapes.

Every source ends as the same thing, :class:`Splits`: unbatched ``(uint8 image
resized to image_size, int label)`` datasets for train and validation, decoded
and cached once. :func:`train_pipeline` and :func:`eval_pipeline` then batch,
augment (train only) and preprocess with the weights' mode.

Folders are scanned first (:mod:`keras_vgg.finetune.scan`: a cheap header check on every
core, remembered in a manifest): a file that is not an image, or whose header or structure
is broken, is skipped and reported; grayscale, palette and RGBA images are converted to RGB
when decoded; an empty class folder is dropped and reported. Each image is then decoded once,
in the pipeline (:func:`decode_once`, the first full pass), where a file that still fails,
such as a JPEG cut short, is skipped and counted. The run fails only when fewer than two
usable classes are left.

``cache: auto`` keeps the decoded images in memory when they fit a share of the RAM, else on
disk in the run folder (:func:`choose_cache`). Under several workers each one reads and
decodes only its own share (``shard``, :func:`worker_share`), padded to the size of the
largest with weight 0 (each image counted once, every worker as many steps). A folder can
be written once as sharded TFRecords (the recipe's ``tfrecords``,
:mod:`keras_vgg.finetune.tfrecords`) and read from there, on local disk or a bucket.

Example:
    >>> import tempfile
    >>> from keras_vgg.finetune.builtin import make_shapes
    >>> from keras_vgg.finetune.data import scan_folder
    >>> scan = scan_folder(make_shapes(tempfile.mkdtemp(), images_per_class=3))
    >>> scan.class_names, len(scan.files), scan.skipped
    (['circle', 'cross', 'square', 'stripes', 'triangle'], 15, [])
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vgg._extras import require
from keras_vgg._helpers import expected, first_named
from keras_vgg.finetune import tfrecords
from keras_vgg.finetune.augment import augmentation
from keras_vgg.finetune.scan import DECODABLE, Scan, check_image, scan_folder  # noqa: F401
from keras_vgg.preprocessing import as_preprocessing, resize_uint8


@dataclass
class Splits:
    """Unbatched (uint8 HxWx3, label) train, validation and test datasets, ready to pipeline.

    Validation chooses (the best epoch, early stopping); ``test``, a split training never
    sees, reports. ``test`` is None when the recipe holds no test split (``test_split: 0``
    and no ``test_data``).

    For folders and TFRecords, ``pending`` holds what :func:`decode_once` still has to do:
    the first full pass, which decodes every image once (filling the cache) and finds the
    files that do not decode; until it has run, ``train_labels``/``val_labels`` are what
    the scan found.

    Under several workers (``shard``) each split holds this worker's share, each image once,
    followed by ``padding[split]`` repeats of its first images, so that every worker holds
    as many elements as the others (:func:`worker_share`) and runs as many steps; its
    elements are then (image, label, weight), the weight 0 on the padding, and its labels
    include the padding's (they follow the dataset). :meth:`counted` and :meth:`weights`
    leave the padding out: each image is counted once over all workers."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    class_names: list
    train_labels: np.ndarray
    val_labels: np.ndarray
    report: dict
    cache: str = "memory"  # what the datasets keep decoded images in: memory | disk | none
    shard: tuple | None = None  # (worker, workers) when each worker reads its own share
    all_train_labels: np.ndarray | None = None  # every worker's (class weights): before sharding
    pending: dict = field(default_factory=dict)
    test: tf.data.Dataset | None = None
    test_labels: np.ndarray | None = None
    padding: dict = field(default_factory=dict)  # split -> elements at its end, weight 0

    def present(self) -> tuple:
        """The names of the splits this holds: train, val and, when there is one, test."""
        return ("train", "val", "test") if self.test_labels is not None else ("train", "val")

    def counted(self, split) -> np.ndarray:
        """The labels of ``split``'s own images, each once: its padding left out."""
        labels = getattr(self, f"{split}_labels")
        return labels[:len(labels) - self.padding.get(split, 0)]

    def weights(self, split) -> np.ndarray:
        """float32 weights of ``split``'s elements in the dataset's order: 1 for its own
        images, 0 for its padding."""
        weights = np.ones(len(getattr(self, f"{split}_labels")), dtype="float32")
        weights[len(self.counted(split)):] = 0.0
        return weights


@dataclass(frozen=True)
class LoadOptions:
    """How a source is loaded, whatever it is: :func:`load_data`'s arguments after the
    recipe, which every loader passes on.

    Example:
        >>> LoadOptions(shard=(0, 2)).shard, LoadOptions().cache_dir
        ((0, 2), None)
    """

    cache_dir: str | Path | None = None  # a disk cache's folder (a run's cache/); None: none
    shard: tuple | None = None  # (worker, workers): this worker's share; None: all of it
    budget: int | None = None  # bytes cache: auto may keep in memory (default: from the RAM)
    verbose: int = 0  # 1 prints the scan, the cache chosen and progress bars


@dataclass(frozen=True)
class Source:
    """A scanned folder or TFRecords set, as :func:`_pipeline_splits` splits it.

    ``names``: a path per item; ``labels``: their labels; ``report``: the data report so far
    (the splits add to it); ``encoded(indices)``: a dataset of (encoded bytes, label, index)
    for those items, in any order; ``test_indices``: the items of a separate test folder
    (None: the recipe's ``test_split`` is drawn)."""

    names: list
    labels: list | np.ndarray
    class_names: list
    report: dict
    encoded: Callable
    test_indices: np.ndarray | None = None


def stratified_split(labels, fraction: float, seed: int):
    """Indices (train, val): ``fraction`` of each class held out (at least one when it has two)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(members) * fraction))
        n_val = min(max(n_val, 1 if len(members) > 1 else 0), len(members) - 1)
        val += members[:n_val].tolist()
        train += members[n_val:].tolist()
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(val, dtype=int))


def three_way_split(labels, validation: float, test: float, seed: int):
    """Indices (train, val, test): ``test`` of each class held out first, then
    ``validation`` (a share of the whole) of the rest; stratified, seeded, sorted. With
    ``test`` 0 the test indices are empty and (train, val) are :func:`stratified_split`'s."""
    labels = np.asarray(labels)
    if not test:
        return (*stratified_split(labels, validation, seed), np.array([], dtype=int))
    rest, held = stratified_split(labels, test, [int(seed), 21])
    train, val = stratified_split(labels[rest], min(validation / (1 - test), 0.99), seed)
    return rest[train], rest[val], held


def _rgb(image):
    """Grayscale -> RGB, RGBA -> RGB (tfds images keep their own channel count)."""
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    return image[..., :3] if channels == 4 else image


# -- the cache: memory when it fits, else the run folder's disk ------------------------------

MEMORY_SHARE = 0.5  # cache: auto keeps images in memory up to this share of available RAM...
MEMORY_CAP = 2 * 2**30  # ...and this many bytes (past it the disk cache, read back through
#                         the OS page cache, runs as fast and the memory stays the kernel's)
FIT_SHARE = 0.8  # cache: memory fails early past this share of available RAM


def available_memory():
    """Bytes of RAM available to a new allocation (MemAvailable of /proc/meminfo, else
    psutil's figure when psutil is installed), or None when neither says."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _gb(n):
    return f"{n / 1e9:.2f} GB"


@dataclass(frozen=True)
class Memory:
    """The RAM figures :func:`choose_cache` decides by, each measured when None: ``budget``,
    the bytes ``cache: auto`` may keep in memory (half the available RAM, at most 2 GiB), and
    ``available``, the bytes of free RAM."""

    budget: int | None = None
    available: int | None = None


def choose_cache(cache, images, image_size, cache_dir=None, memory=Memory()):
    """``(choice, reason, figures)``: where ``images`` decoded images at ``image_size`` go.

    ``cache`` is the recipe's: ``memory``, ``disk`` and ``none`` are kept (``memory`` fails
    early when the images need more than 80% of the available RAM, naming the figure and the
    alternatives); ``auto`` estimates the decoded size (height x width x 3 bytes an image)
    and keeps it in memory when it fits ``memory.budget`` (:class:`Memory`), else on disk
    under ``cache_dir`` (the run folder), else (no ``cache_dir``) decodes every epoch
    (``none``).

    Example:
        >>> choose_cache("auto", 100, 32, memory=Memory(budget=10**6))[0]
        'memory'
        >>> choose_cache("auto", 100, 32, "run/cache", Memory(budget=10**5))[0]
        'disk'
    """
    estimate = int(images) * int(image_size) ** 2 * 3
    available = available_memory() if memory.available is None else memory.available
    budget = memory.budget
    figures = {"images": int(images), "estimate_bytes": estimate, "available_bytes": available}
    if cache == "memory":
        if available is not None and estimate > FIT_SHARE * available:
            raise expected(
                f"`data.cache` to fit in memory: {images:,} images at {image_size}x{image_size} "
                f"decode to {_gb(estimate)}, over {FIT_SHARE:.0%} of the "
                f"{_gb(available)} of RAM available. Use data.cache=auto (memory when it fits, "
                f"else a disk cache in the run folder), data.cache=disk or data.cache=none "
                f"(decode every epoch), or a smaller model.image_size",
                **{"data.cache": "memory"})
        return "memory", "data.cache=memory", figures
    if cache in ("disk", "none"):
        return (cache if cache_dir is not None or cache == "none" else "memory"), \
            f"data.cache={cache}", figures
    if cache != "auto":
        raise expected("`data.cache` to be one of ['auto', 'memory', 'disk', 'none']",
                       **{"data.cache": cache})
    if budget is None:
        budget = MEMORY_CAP if available is None else min(MEMORY_SHARE * available, MEMORY_CAP)
    figures["budget_bytes"] = int(budget)
    size = f"{images:,} images at {image_size}x{image_size} decode to {_gb(estimate)}"
    if estimate <= budget:
        return "memory", f"data.cache=auto: {size}, within the memory budget {_gb(budget)}", figures
    if cache_dir is not None:
        return "disk", (f"data.cache=auto: {size}, over the memory budget {_gb(budget)}: a disk "
                        f"cache in {cache_dir}"), figures
    return "none", (f"data.cache=auto: {size}, over the memory budget {_gb(budget)} and no run "
                    "folder to cache in: decoded every epoch"), figures


def _cached(ds, choice, cache_dir, split):
    """Decoded images kept after the first pass: in memory, or in files under ``cache_dir``
    (which must exist before the first iteration)."""
    if choice == "memory":
        return ds.cache()
    if choice == "disk":
        return ds.cache(str(Path(cache_dir) / split))
    return ds


# -- decoding, once, in the pipeline ---------------------------------------------------------

DECODE_PROGRESS_FROM = 1000  # images to decode before the first pass shows a progress bar
UNDECODABLE = "corrupt or truncated (tf.io.decode_image failed in the pipeline)"


def plain(fn):
    """``fn`` for ``Dataset.map``/``filter``/``flat_map``, traced as written: AutoGraph does
    not rewrite its source (nor that of the functions it calls). The pipeline's functions
    branch on Python values only, so the graph is the same. Measured (cProfile, a tiny run
    of 8 images per class): the rewriting took 3.5 s of the run's 19.5 s, 0.6 s after.

    Example:
        >>> import tensorflow as tf
        >>> doubled = tf.data.Dataset.range(3).map(plain(lambda i: i * 2))
        >>> [int(i) for i in doubled.as_numpy_iterator()]
        [0, 2, 4]
    """
    return tf.autograph.experimental.do_not_convert(fn)


def _decode(encoded):
    """The pipeline's decoder: any format tf.io.decode_image reads, as RGB."""
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def _decode_rgb(path):
    """A file decoded as the pipeline decodes it."""
    return _decode(tf.io.read_file(path))


def worker_share(indices, worker, workers, seed):
    """The ``worker``-th of ``workers`` disjoint shares of ``indices`` that together cover
    them: a seeded permutation dealt round-robin (sizes differ by at most one, the largest
    :func:`share_size`), sorted."""
    indices = np.asarray(indices, dtype=int)
    order = np.random.default_rng([int(seed), 18]).permutation(len(indices))
    return np.sort(indices[order[worker::workers]])


def share_size(count, workers) -> int:
    """The elements every worker's share of a ``count``-image split holds, padding included:
    the largest share's images, the same on every worker (each computes it from the listing
    alone, so no worker waits for another's decode)."""
    return -(-int(count) // int(workers))


def _even(ds, labels, size, shard):
    """A split's (image, label) ``ds`` and its ``labels`` as :class:`Splits` holds them, and
    its padding: as they are on one worker (``size`` None); under several, (image, label,
    weight) padded up to ``size`` elements by repeating its first images with weight 0."""
    if size is None:
        return ds, labels, 0
    pad = int(size) - len(labels)
    weighted = ds.map(plain(lambda x, y: (x, y, tf.constant(1.0))))
    if pad:
        weighted = weighted.concatenate(
            ds.repeat().take(pad).map(plain(lambda x, y: (x, y, tf.constant(0.0)))))
    return _per_worker(weighted, shard), np.concatenate([labels, np.resize(labels, pad)]), pad


def _decoded(encoded_ds, image_size):
    """(encoded, label, index) -> (uint8 image, label, index); an element that fails to
    decode is dropped (``ignore_errors``) and counted by :func:`decode_once`."""
    ds = encoded_ds.map(plain(lambda e, y, i: (resize_uint8(_decode(e), image_size), y, i)),
                        tf.data.AUTOTUNE)
    return ds.ignore_errors()


def _per_worker(ds, shard):
    """A dataset that already holds only this worker's share: tf.distribute must not shard
    it again (auto-sharding off)."""
    if shard is None:
        return ds
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def per_worker(ds, splits):
    """``ds`` (e.g. cached features of this worker's images) marked as this worker's share
    when ``splits`` is sharded, so tf.distribute does not shard it again."""
    return _per_worker(ds, splits.shard)


def feature_dataset(splits, split, features) -> tf.data.Dataset:
    """``features`` (a row per element of ``split``, such as the base's outputs) with the
    split's labels, as :class:`Splits` holds the split: (features, label), or (features,
    label, weight) for a worker's padded share, marked as this worker's."""
    labels = getattr(splits, f"{split}_labels")
    if splits.shard is None:
        return tf.data.Dataset.from_tensor_slices((features, labels))
    return per_worker(tf.data.Dataset.from_tensor_slices(
        (features, labels, splits.weights(split))), splits)


def folder_test_share(recipe) -> float:
    """The share of a folder held out for test: ``test_split`` (a fraction for folders and
    the built-in data; a tfds split name means nothing here), 0 with ``test_data``."""
    share = recipe.data.test_split
    return float(share) if isinstance(share, (int, float)) and not recipe.data.test_data else 0.0


def _pipeline_splits(source: Source, recipe, options: LoadOptions) -> Splits:
    """The splits of a scanned :class:`Source`: drawn (:func:`_split_indices`), shared out
    among workers (``options.shard``, :func:`_share_out`), kept where :func:`choose_cache`
    says, decoded in the pipeline (:func:`decode_once` runs the first pass)."""
    labels = np.asarray(source.labels, dtype="int32")
    indices = _split_indices(labels, recipe, source.test_indices)
    all_train, sizes = labels[indices["train"]], {}
    if options.shard is not None:
        indices, sizes = _share_out(indices, source, recipe, options.shard)
    if len(indices["train"]) > shuffle_buffer(recipe.model.image_size):
        # More images than the shuffle holds: decode (and cache) them in a seeded random
        # order, so that the buffer does not see one class at a time.
        indices["train"] = np.random.default_rng([recipe.seed, 20]).permutation(
            indices["train"])
    choice, reason, figures = choose_cache(
        recipe.data.cache, sum(len(members) for members in indices.values()), recipe.model.image_size,
        options.cache_dir, Memory(budget=options.budget))
    source.report["cache"] = dict(choice=choice, reason=reason, **figures)
    if options.verbose:
        print(f"Cache: {choice} ({reason}).", flush=True)
    pending, datasets, split_labels, padding = {}, {}, {}, {}
    for split, members in indices.items():
        if split == "test" and not len(members):
            continue
        indexed = _cached(_decoded(source.encoded(members), recipe.model.image_size), choice,
                          options.cache_dir, split)
        pending[split] = dict(indexed=indexed, indices=members, encoded=source.encoded,
                              size=sizes.get(split))
        datasets[split], split_labels[split], padding[split] = _even(
            indexed.map(plain(lambda x, y, i: (x, y))), labels[members], sizes.get(split),
            options.shard)
    splits = _checked(Splits(
        datasets["train"], datasets["val"], list(source.class_names), split_labels["train"],
        split_labels["val"], source.report, test=datasets.get("test"),
        test_labels=split_labels.get("test"), padding=padding))
    splits.cache, splits.shard, splits.all_train_labels = choice, options.shard, all_train
    splits.pending = dict(pending, source=source.names, labels=labels,
                          image_size=recipe.model.image_size)
    return splits


def _split_indices(labels, recipe, test_indices=None) -> dict:
    """``{"train", "val", "test"}``: the indices of ``labels`` in each split, drawn with the
    recipe's shares and seed (stratified, sorted); ``test_indices``, the items of a separate
    test folder (they come after the training folder's), are the test split as they are."""
    if test_indices is None:
        train, val, test = three_way_split(
            labels, recipe.data.validation_split, folder_test_share(recipe), recipe.seed)
    else:
        test = np.asarray(test_indices, dtype=int)
        first = np.setdiff1d(np.arange(len(labels)), test)
        train, val = (first[i] for i in stratified_split(
            labels[first], recipe.data.validation_split, recipe.seed))
    return {"train": train, "val": val, "test": test}


def _share_out(indices, source: Source, recipe, shard) -> tuple:
    """``(shares, sizes)``: this worker's share of each split's ``indices`` and the size
    every worker's share is padded up to (:func:`_even`, the padding weighted 0), noted in
    ``source.report["worker_share"]``. Every worker must run the same number of steps (a
    collective waits for all)."""
    worker, workers = shard
    shares, sizes = {}, {}
    for split, members in indices.items():
        if 0 < len(members) < workers:
            raise expected(f"at least one image of each split for each of the {workers} "
                           f"workers", **{f"{split}_images": len(members)})
        shares[split] = worker_share(members, worker, workers, recipe.seed)
        sizes[split] = share_size(len(members), workers)
    source.report["worker_share"] = {
        "worker": worker, "workers": workers, "seed": recipe.seed,
        **{split: [source.names[i] for i in share] for split, share in shares.items()},
        "size": sizes,
        "padding": {split: sizes[split] - len(share) for split, share in shares.items()}}
    return shares, sizes


def decode_once(splits: Splits, verbose=0) -> Splits:
    """The first full pass over a folder's or TFRecords' splits: every image decoded once
    (filling the cache); files that fail to decode are skipped and counted. Updates the
    labels, the counts and ``splits.report`` (``skipped``, ``decode``); a no-op for tfds
    data and after the first call. A disk cache needs its folder to exist first."""
    if not splits.pending:
        return splits
    pending, started = splits.pending, time.perf_counter()
    source, labels, total, failed = pending["source"], pending["labels"], 0, []
    for split in splits.present():
        step, indices = pending[split], pending[split]["indices"]
        total += len(indices)
        bar = keras.utils.Progbar(len(indices), unit_name="image") if (
            verbose and len(indices) >= DECODE_PROGRESS_FROM) else None
        if bar is not None:
            print(f"Decoding the {split} split once ({splits.cache} cache):", flush=True)
        kept = []
        for batch in step["indexed"].map(plain(lambda x, y, i: i)).batch(256).as_numpy_iterator():
            kept.extend(batch.tolist())
            if bar is not None:
                bar.add(len(batch))
        kept = np.array(kept, dtype=int)
        lost = sorted(set(indices.tolist()) - set(kept.tolist()))
        failed += lost
        if splits.cache == "none" and lost:  # decoded again every epoch: leave them out
            keep = np.isin(indices, kept)
            indexed = _decoded(step["encoded"](indices[keep]), pending["image_size"])
        else:
            indexed = step["indexed"]
        ds = indexed.map(plain(lambda x, y, i: (x, y)))
        if splits.cache != "none":
            ds = ds.apply(tf.data.experimental.assert_cardinality(len(kept)))
        ds, split_labels, splits.padding[split] = _even(
            ds, labels[kept] if len(kept) else labels[:0], step["size"], splits.shard)
        setattr(splits, split, ds)
        setattr(splits, f"{split}_labels", split_labels)
        if splits.shard is not None:  # a file that failed to decode is padded for too
            splits.report["worker_share"]["padding"][split] = splits.padding[split]
    seconds = time.perf_counter() - started
    splits.report["skipped"] += [{"file": source[i], "reason": UNDECODABLE} for i in failed]
    splits.report["decode"] = {"images": total, "failed": len(failed),
                               "seconds": round(seconds, 2),
                               "images_per_s": round(total / max(seconds, 1e-9), 1)}
    splits.pending = {}
    if verbose:
        print(f"Decoded {total:,} images once in {seconds:.1f} s"
              + (f"; {len(failed)} failed to decode and {'is' if len(failed) == 1 else 'are'}"
                 f" skipped: {first_named(source[i] for i in failed)} (data_report.json)"
                 if failed else "") + ".", flush=True)
    return _checked(splits)


def load_folder(root, recipe, options: LoadOptions = LoadOptions()) -> Splits:
    """A folder of class sub-folders: scanned (:mod:`keras_vgg.finetune.scan`), split per
    class, shared out among workers (``options.shard``: (worker, workers)), decoded in the
    pipeline (:func:`decode_once`).

    Example:
        >>> import tempfile
        >>> from keras_vgg.finetune import Recipe
        >>> from keras_vgg.finetune.builtin import make_shapes
        >>> root = make_shapes(tempfile.mkdtemp(), images_per_class=4)
        >>> recipe = Recipe().but({"data.source": str(root), "model.image_size": 32})
        >>> splits = load_folder(root, recipe, LoadOptions(shard=(0, 2)))
        >>> splits.report["worker_share"]["workers"], len(splits.class_names)
        (2, 5)
    """
    scan = scan_folder(root, verbose=options.verbose)
    report = {
        "source": str(root),
        "skipped": [{"file": f, "reason": r} for f, r in scan.skipped],
        "converted": [{"file": f, "change": c} for f, c in scan.converted],
        "dropped_classes": [{"class": c, "reason": r} for c, r in scan.dropped_classes],
        "scan": {"files": scan.listed, "checked": scan.checked,
                 "seconds": round(scan.seconds, 4), "manifest": scan.manifest},
    }
    names, labels, test_indices = list(scan.files), list(scan.labels), None
    if recipe.data.test_data:
        test_scan = _test_folder(recipe.data.test_data, scan.class_names, options.verbose)
        report["test_data"] = str(recipe.data.test_data)
        report["skipped"] += [{"file": f, "reason": r} for f, r in test_scan.skipped]
        report["converted"] += [{"file": f, "change": c} for f, c in test_scan.converted]
        test_indices = np.arange(len(names), len(names) + len(test_scan.files))
        names, labels = names + list(test_scan.files), labels + list(test_scan.labels)
    files = np.array(names)

    def encoded(indices):
        ds = tf.data.Dataset.from_tensor_slices(
            (files[indices], np.asarray(labels, dtype="int32")[indices],
             np.asarray(indices, dtype="int64")))
        return ds.map(plain(lambda p, y, i: (tf.io.read_file(p), y, i)), tf.data.AUTOTUNE)

    source = Source(names, labels, scan.class_names, report, encoded, test_indices)
    return _pipeline_splits(source, recipe, options)


def _test_folder(folder, class_names, verbose=0) -> Scan:
    """The scan of a separate test folder (``data.test_data``), which must hold the training
    folder's classes."""
    if not Path(folder).is_dir():
        raise expected("`data.test_data` to be a folder of class sub-folders",
                       **{"data.test_data": str(folder)})
    scan = scan_folder(folder, verbose=verbose)
    if list(scan.class_names) != list(class_names):
        raise expected(f"`data.test_data` to hold the training data's classes "
                       f"{list(class_names)}",
                       **{"data.test_data": f"{folder} (classes {list(scan.class_names)})"})
    return scan


def tfds_test_split(recipe) -> str | None:
    """The tfds split a recipe tests on (its ``test_split`` when that is a split name), else
    None."""
    share = recipe.data.test_split
    return share if isinstance(share, str) and share else None


def load_tfds(name, recipe, options: LoadOptions = LoadOptions()) -> Splits:
    """A tensorflow-datasets image classification set; image/label keys from its features.

    The recipe's ``data_dir`` (when set) is the folder tfds keeps prepared datasets in;
    unset, tfds uses $TFDS_DATA_DIR or ~/tensorflow_datasets. A dataset already there is
    read without a network; one that is not is downloaded and prepared (:func:`prepare_tfds`).
    """
    tfds = require_tfds()

    data_dir = os.path.expanduser(recipe.data.data_dir) if recipe.data.data_dir else None
    builder = tfds.builder(name, data_dir=data_dir)
    image_key, label_key = feature_keys(builder.info.features, recipe.data.image_key, recipe.data.label_key)
    prepare_tfds(builder, name)
    class_names = list(builder.info.features[label_key].names)

    def dataset(split_key):
        split = getattr(recipe.data, split_key)
        try:
            ds = builder.as_dataset(split=split, shuffle_files=False)
        except (ValueError, KeyError, tf.errors.InvalidArgumentError) as error:
            raise ValueError(
                f"Expected `data.{split_key}` to be a split of {name} "
                f"({sorted(builder.info.splits)}; slices like 'train[:80%]' work). "
                f"Received: data.{split_key}={split!r} ({error})"
            ) from error
        label_only = builder.as_dataset(split=split, shuffle_files=False,
                                        decoders={image_key: tfds.decode.SkipDecoding()})
        labels = np.fromiter(label_only.map(plain(lambda ex: ex[label_key])).as_numpy_iterator(),
                             dtype="int32")
        ds = ds.map(plain(lambda ex: (resize_uint8(_rgb(ex[image_key]), recipe.model.image_size),
                                      tf.cast(ex[label_key], tf.int32))), tf.data.AUTOTUNE)
        return ds, labels

    (train, train_labels), (val, val_labels) = dataset("train_split"), dataset("val_split")
    test, test_labels = dataset("test_split") if tfds_test_split(recipe) else (None, None)
    images = len(train_labels) + len(val_labels) + (0 if test is None else len(test_labels))
    cache_dir = options.cache_dir
    choice, reason, figures = choose_cache(recipe.data.cache, images, recipe.model.image_size, cache_dir,
                                           Memory(budget=options.budget))
    if options.verbose:
        print(f"Cache: {choice} ({reason}).", flush=True)
    train, val = _cached(train, choice, cache_dir, "train"), _cached(val, choice, cache_dir, "val")
    test = None if test is None else _cached(test, choice, cache_dir, "test")
    report = {"source": f"tfds:{name}", "image_key": image_key, "label_key": label_key,
              "skipped": [], "converted": [], "dropped_classes": [],
              "cache": dict(choice=choice, reason=reason, **figures)}
    return _checked(Splits(train, val, class_names, train_labels, val_labels, report,
                           cache=choice, all_train_labels=train_labels, test=test,
                           test_labels=test_labels))


PROBE_TIMEOUT = 5.0  # seconds to wait for a dataset's download host before calling it offline


def prepare_tfds(builder, name, timeout=PROBE_TIMEOUT):
    """``builder.download_and_prepare()``, unless the dataset is already in its data dir.

    Before downloading, each download host in the builder's checksums is asked once (one
    HEAD request, no retries, ``timeout`` seconds). When one does not answer, tfds' own
    retries (10, with backoff: about 3.5 minutes offline) are turned off, so that a
    download that cannot work fails at once; files tfds already downloaded are still used.
    A download that fails for want of a network is a ValueError that names the dataset,
    the folder tfds looks in and how to prepare the dataset elsewhere and copy it in.
    """
    import requests

    tfds = require_tfds()
    path = builder.data_path
    if path.exists():
        if not (path / "dataset_info.json").exists():
            raise ValueError(
                f"Expected the tfds dataset folder {path} to be prepared (a copy of a whole "
                f"{builder.info.full_name}/ folder). Received: a folder without "
                f"dataset_info.json; delete it, or copy the whole folder again."
            )
        return
    unreachable = _unreachable_host(_download_urls(builder), timeout)
    retries = _no_tfds_retries() if unreachable else contextlib.nullcontext()
    try:
        with retries:
            builder.download_and_prepare()
    except (requests.exceptions.RequestException, urllib.error.URLError, ConnectionError,
            TimeoutError, tfds.download.DownloadError) as error:
        reason = unreachable or f"{type(error).__name__}: {_short(error)}"
        raise ValueError(_not_prepared(builder, name, reason)) from error


def _download_urls(builder) -> list:
    """One http(s) url per download host of the builder (from its checksums file), in order."""
    hosts, urls = set(), []
    for url in builder.url_infos or {}:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc not in hosts:
            hosts.add(parts.netloc)
            urls.append(url)
    return urls


def _unreachable_host(urls, timeout):
    """What went wrong with the first url whose host gives no HTTP answer (any status is an
    answer), else None.

    The request runs in a thread so that a name lookup that hangs (which no requests
    timeout covers) still ends the probe after about ``timeout`` seconds."""
    import requests

    for url in urls:
        host, failure = urllib.parse.urlsplit(url).hostname, []

        def probe(url=url, failure=failure):
            try:
                requests.head(url, timeout=timeout, allow_redirects=False).close()
            except requests.exceptions.RequestException as error:
                failure.append(error)

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(timeout + 1)
        if thread.is_alive():
            return f"{host} did not answer within {timeout:g} s"
        if failure:
            return f"{host} is unreachable ({_short(failure[0])})"
    return None


@contextlib.contextmanager
def _no_tfds_retries():
    """tfds' downloader without its retries (its module constant, read at each download)."""
    from tensorflow_datasets.core.download import downloader

    if not hasattr(downloader, "MAX_RETRIES"):
        yield
        return
    saved, downloader.MAX_RETRIES = downloader.MAX_RETRIES, 0
    try:
        yield
    finally:
        downloader.MAX_RETRIES = saved


def _short(error) -> str:
    """The innermost reason of a requests/urllib3 error, without object addresses."""
    while error.args and isinstance(getattr(error.args[0], "reason", None), BaseException):
        error = error.args[0].reason
    text = re.sub(r"^(<[\w.]+ object at 0x[0-9a-f]+>|\w+\(host=[^)]*\)): ", "", str(error))
    return text.splitlines()[0][:200] if text else type(error).__name__


def _not_prepared(builder, name, reason) -> str:
    root, folder = str(builder.data_dir_root), builder.info.full_name
    top = folder.split("/")[0]
    return (
        f"The tfds dataset {name!r} is not prepared in {root} (no {folder}/ there) and "
        f"could not be downloaded: {reason}. tfds looks for prepared datasets in the "
        f"recipe's `data_dir` (when unset: $TFDS_DATA_DIR, else ~/tensorflow_datasets). "
        f"On a machine with a network, prepare it with\n"
        f"    python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('{name}').download_and_prepare()\"\n"
        f"then copy the {top}/ folder it writes (under ~/tensorflow_datasets) to {root}/ here, "
        f"or to any folder and set the recipe's `data_dir` to that folder."
    )


def require_tfds():
    """tensorflow_datasets, or an error naming the finetune extra. importlib_resources is
    checked too: tfds prepares datasets with it but does not declare it."""
    require("importlib_resources", "finetune")
    return require("tensorflow_datasets", "finetune", package="tensorflow-datasets")


def feature_keys(features, image_key=None, label_key=None):
    """The (image, label) keys of a tfds FeaturesDict: given ones checked, else found."""
    tfds = require_tfds()

    def find(kind, given, preferred, key_name):
        names = [k for k, f in features.items() if isinstance(f, kind)]
        if given is not None:
            if given not in names:
                raise ValueError(
                    f"Expected `{key_name}` to name a {kind.__name__} feature {names}. "
                    f"Received: {key_name}={given!r}"
                )
            return given
        if preferred in names:
            return preferred
        if len(names) == 1:
            return names[0]
        raise ValueError(
            f"Expected exactly one {kind.__name__} feature or `{key_name}` set. "
            f"Found: {names}"
        )

    return (find(tfds.features.Image, image_key, "image", "data.image_key"),
            find(tfds.features.ClassLabel, label_key, "label", "data.label_key"))


def load_builtin(recipe, options: LoadOptions = LoadOptions()) -> Splits:
    """The built-in shapes (drawn once, :func:`keras_vgg.finetune.builtin.make_shapes`),
    loaded as a folder."""
    from keras_vgg.finetune.builtin import make_shapes

    root = make_shapes(images_per_class=recipe.data.builtin_images_per_class)
    splits = _load_files(root, recipe, options)
    splits.report["source"] = "builtin shapes"
    return splits


def load_data(recipe, cache_dir=None, shard=None, budget=None, verbose=0) -> Splits:
    """The recipe's data as :class:`Splits`.

    Args:
        recipe: the run's recipe (``data``, ``tfrecords``, ``cache``, ``image_size``...).
        cache_dir: the folder a disk cache goes in (a run's ``cache/``); None: no disk cache.
        shard: ``(worker, workers)``: this worker's share of a folder or TFRecords (each
            worker lists and decodes only its own), or None for all of it.
        budget: bytes ``cache: auto`` may keep in memory (default: from the available RAM).
        verbose: 1 prints the scan, the cache chosen and progress bars.

    Folders and TFRecords are decoded on their first full pass: :func:`decode_once` runs it
    (the run does, before training) and counts the files that fail to decode.
    """
    options = LoadOptions(cache_dir, shard, budget, verbose)
    if recipe.data.source == "builtin":
        return load_builtin(recipe, options)
    if recipe.data.source.startswith("tfds:"):
        if recipe.data.tfrecords:
            raise expected("`data.tfrecords` unset with tfds data (tfds keeps its own "
                           "TFRecords); it writes folders",
                           **{"data.tfrecords": recipe.data.tfrecords,
                              "data.source": recipe.data.source})
        return load_tfds(recipe.data.source[len("tfds:"):], recipe, options)
    return _load_files(recipe.data.source, recipe, options)


def _load_files(root, recipe, options: LoadOptions) -> Splits:
    """A folder, a folder written as TFRecords (``recipe.data.tfrecords``), or TFRecords."""
    from_records = recipe.data.tfrecords or tfrecords.is_tfrecords(root)
    if recipe.data.test_data and from_records:  # TFRecords hold one folder: draw test_split
        raise expected("`data.test_data` unset when training from TFRecords (they hold one "
                       "folder; hold out a test share with data.test_split)",
                       **{"data.test_data": recipe.data.test_data,
                          "data.tfrecords": recipe.data.tfrecords or str(root)})
    if tfrecords.is_tfrecords(root):
        return load_tfrecords(root, recipe, options)
    if recipe.data.tfrecords:
        scan = scan_folder(root, verbose=options.verbose)
        tfrecords.write_tfrecords(scan, root, recipe.data.tfrecords, tfrecords.WriteOptions(
            seed=recipe.seed, verbose=options.verbose))
        splits = load_tfrecords(recipe.data.tfrecords, recipe, options)
        splits.report["source"] = str(root)
        splits.report["tfrecords"] = recipe.data.tfrecords
        return splits
    return load_folder(root, recipe, options)


def load_tfrecords(path, recipe, options: LoadOptions = LoadOptions()) -> Splits:
    """A folder written by :func:`keras_vgg.finetune.tfrecords.write_tfrecords` (a local path
    or any path tf.io.gfile reads: ``gs://``, ``s3://``), split and shared out as a folder."""
    index = tfrecords.read_index(path)
    report = {"source": str(path), "skipped": list(index["skipped"]),
              "converted": list(index["converted"]), "dropped_classes": list(index["dropped"])}
    source = Source(index["files"], index["labels"], index["class_names"], report,
                    lambda indices: tfrecords.records(path, index, indices))
    return _pipeline_splits(source, recipe, options)


def _checked(splits: Splits) -> Splits:
    """``splits``, checked (images in every split) and counted in its report (each image
    once: the padding of a worker's share left out)."""
    counted = {split: splits.counted(split) for split in splits.present()}
    if any(len(labels) == 0 for labels in counted.values()):
        test_count = "" if splits.test_labels is None else f", {len(counted['test'])} for test"
        raise ValueError(
            f"Expected images in every split. Received: {len(counted['train'])} for "
            f"training, {len(counted['val'])} for validation{test_count} (from "
            f"{splits.report['source']})."
        )
    splits.report["classes"] = list(splits.class_names)
    for split, labels in counted.items():
        splits.report[f"{split}_counts"] = np.bincount(
            labels, minlength=len(splits.class_names)).tolist()
    return splits


class EpochSeed(keras.callbacks.Callback):
    """The epoch a run's training data and dropout draw their randomness from.

    Set at each epoch's start (``fit`` opens an epoch's data iterator after
    ``on_epoch_begin``): the training pipeline reads it when an epoch's iterator starts, so
    its order and augmentation come from (seed, epoch); and every seed generator of the
    model (dropout) restarts at (its seed, epoch), and on torch, whose Dropout draws from
    torch's global generator, that generator too. Epoch e is then the same in an
    uninterrupted run and in one resumed at e (BackupAndRestore restores the weights, not
    the generators' state)."""

    STEPS = 2**20  # room in a generator's counter for one epoch's draws

    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_seed")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)
        for state in self.model.variables:  # seed generators' states are among them
            if state.name == "seed_generator_state":
                first = keras.ops.convert_to_numpy(state.value)[0]
                state.assign(np.array([first, epoch * self.STEPS], dtype=state.dtype))
        if keras.backend.backend() == "torch":  # its Dropout draws from torch's own generator
            import torch

            torch.manual_seed(self.seed * 1_000_003 + epoch)

    def tensor(self):
        """The epoch's seed, an int64 read when an epoch's iterator starts."""
        return tf.constant(self.seed, tf.int64) * 1_000_003 + self.epoch.read_value()


def shuffle_batch(ds, recipe, epoch: EpochSeed | None = None, augment=None):
    """One epoch per iteration, the same for the same (seed, epoch): ``ds`` shuffled from
    the epoch's seed, batched, and each batch's images passed through ``augment(images,
    seed)`` with the stateless seed (epoch seed, batch). ``epoch``: the run's
    :class:`EpochSeed` (without one, every iteration is epoch 0)."""
    epoch = epoch or EpochSeed(recipe.seed)
    drop = sharded()
    count = int(ds.cardinality())

    def one_epoch(_):
        seed = epoch.tensor()
        batches = permuted(ds, seed, shuffle_buffer(recipe.model.image_size)).batch(
            recipe.data.batch_size, drop_remainder=drop)
        if augment is None:
            return batches
        return batches.enumerate().map(  # (images, labels[, weights])
            plain(lambda i, xy: (augment(xy[0], tf.stack([seed, i])), *xy[1:])),
            tf.data.AUTOTUNE)

    batches = tf.data.Dataset.range(1).flat_map(plain(one_epoch))
    if count >= 0:  # flat_map forgets the length; fit's progress bar and steps need it
        steps = count // recipe.data.batch_size if drop else -(-count // recipe.data.batch_size)
        batches = batches.apply(tf.data.experimental.assert_cardinality(steps))
    return batches


def permuted(ds, seed, window: int):
    """``ds`` shuffled from ``seed`` (an int64 tensor) alone: each run of ``window`` elements
    put in the order of stateless random keys drawn from (seed, position), so the same seed
    gives the same order in any process (a whole permutation when ``ds`` fits one window)."""
    keyed = ds.enumerate().map(plain(lambda i, element: (
        tf.random.stateless_uniform([], seed=tf.stack([seed, i])), element)))

    def in_key_order(keys, elements):
        order = tf.argsort(keys)
        return tf.nest.map_structure(lambda t: tf.gather(t, order), elements)

    return keyed.batch(window).map(plain(in_key_order)).unbatch()


def train_pipeline(ds, recipe, mode, augment=True, epoch: EpochSeed | None = None):
    """Shuffled and augmented from (seed, epoch) (:func:`shuffle_batch`, stateless
    :mod:`~keras_vgg.finetune.augment`), batched, preprocessed: TensorFlow ops only, so the
    same pipeline feeds a model on every Keras backend."""
    augmenting = augmentation(recipe.data.augment, recipe.data.augment_factor) if augment else None
    preprocess = as_preprocessing(mode)
    return shuffle_batch(ds, recipe, epoch, augmenting).map(
        plain(lambda x, y, *w: (preprocess(x), y, *w)), tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(ds, recipe, mode):
    """Batched and preprocessed, in order; a weight (a worker's padded share) kept."""
    preprocess = as_preprocessing(mode)
    return ds.batch(recipe.data.batch_size, drop_remainder=sharded()).map(
        plain(lambda x, y, *w: (preprocess(x), y, *w)), tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


SHUFFLE_IMAGES = 4096  # the shuffle window, in images...
SHUFFLE_BYTES = 256 * 2**20  # ...holding at most this many decoded bytes (1,706 at 224x224)


def shuffle_buffer(image_size) -> int:
    """Images the training shuffle permutes at once: 4096, fewer for big images (256 MB at
    most)."""
    return int(min(SHUFFLE_IMAGES, max(256, SHUFFLE_BYTES // (int(image_size) ** 2 * 3))))


def sharded() -> bool:
    """Whether a JAX ``keras.distribution`` splits batches over several devices: then every
    batch must divide evenly, and the last, partial one of an epoch is left out (a run's
    final evaluation and feature cache run on one device and see every image)."""
    if keras.backend.backend() != "jax":
        return False
    distribution = keras.distribution.distribution()
    return distribution is not None and distribution.device_mesh.devices.size > 1


def export_arrays(splits: Splits, seed=0, calibration=200, sample=2000):
    """``(representative, sample, sample_labels)`` as uint8 arrays for an export: a shuffled
    share of the training split to calibrate int8, and the test split (else the validation
    split) to check on (its own images: a worker's padding left out)."""
    train = [x.numpy() for x, *_ in splits.train.shuffle(10_000, seed=seed).take(calibration)]
    held = "val" if splits.test is None else "test"
    held_out = getattr(splits, held).take(min(sample, len(splits.counted(held))))
    pairs = [(x.numpy(), int(y)) for x, y, *_ in held_out]
    return np.stack(train), np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])
