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
decodes only its own share (``shard``, :func:`worker_share`). A folder can be written once as
sharded TFRecords (the recipe's ``tfrecords``, :mod:`keras_vgg.finetune.tfrecords`) and read
from there, on local disk or a bucket.

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
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vgg._extras import require
from keras_vgg._helpers import expected
from keras_vgg.finetune import tfrecords
from keras_vgg.finetune.scan import DECODABLE, Scan, check_image, scan_folder  # noqa: F401
from keras_vgg.preprocessing import as_preprocessing, resize_uint8


@dataclass
class Splits:
    """Unbatched (uint8 HxWx3, label) train and validation datasets, ready to pipeline.

    For folders and TFRecords, ``pending`` holds what :func:`decode_once` still has to do:
    the first full pass, which decodes every image once (filling the cache) and finds the
    files that do not decode; until it has run, ``train_labels``/``val_labels`` are what
    the scan found."""

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


def choose_cache(cache, images, image_size, cache_dir=None, budget=None, available=None):
    """``(choice, reason, figures)``: where ``images`` decoded images at ``image_size`` go.

    ``cache`` is the recipe's: ``memory``, ``disk`` and ``none`` are kept (``memory`` fails
    early when the images need more than 80% of the available RAM, naming the figure and the
    alternatives); ``auto`` estimates the decoded size (height x width x 3 bytes an image)
    and keeps it in memory when it fits ``budget`` (default: half the available RAM, at most
    2 GiB), else on disk under ``cache_dir`` (the run folder), else (no ``cache_dir``)
    decodes every epoch (``none``). ``available``: bytes of free RAM (default: measured)."""
    estimate = int(images) * int(image_size) ** 2 * 3
    available = available_memory() if available is None else available
    figures = {"images": int(images), "estimate_bytes": estimate, "available_bytes": available}
    if cache == "memory":
        if available is not None and estimate > FIT_SHARE * available:
            raise expected(
                f"`cache` to fit in memory: {images:,} images at {image_size}x{image_size} "
                f"decode to {_gb(estimate)}, over {FIT_SHARE:.0%} of the "
                f"{_gb(available)} of RAM available. Use cache=auto (memory when it fits, "
                f"else a disk cache in the run folder), cache=disk or cache=none (decode every "
                f"epoch), or a smaller image_size", cache="memory")
        return "memory", "cache=memory", figures
    if cache in ("disk", "none"):
        return (cache if cache_dir is not None or cache == "none" else "memory"), \
            f"cache={cache}", figures
    if cache != "auto":
        raise expected("`cache` to be one of ['auto', 'memory', 'disk', 'none']", cache=cache)
    if budget is None:
        budget = MEMORY_CAP if available is None else min(MEMORY_SHARE * available, MEMORY_CAP)
    figures["budget_bytes"] = int(budget)
    size = f"{images:,} images at {image_size}x{image_size} decode to {_gb(estimate)}"
    if estimate <= budget:
        return "memory", f"cache=auto: {size}, within the memory budget {_gb(budget)}", figures
    if cache_dir is not None:
        return "disk", (f"cache=auto: {size}, over the memory budget {_gb(budget)}: a disk "
                        f"cache in {cache_dir}"), figures
    return "none", (f"cache=auto: {size}, over the memory budget {_gb(budget)} and no run "
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


def _decode(encoded):
    """The pipeline's decoder: any format tf.io.decode_image reads, as RGB."""
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def _decode_rgb(path):
    """A file decoded as the pipeline decodes it."""
    return _decode(tf.io.read_file(path))


def worker_share(indices, worker, workers, seed):
    """The ``worker``-th of ``workers`` disjoint shares of ``indices`` that together cover
    them: a seeded permutation dealt round-robin (sizes differ by at most one), sorted."""
    indices = np.asarray(indices, dtype=int)
    order = np.random.default_rng([int(seed), 18]).permutation(len(indices))
    return np.sort(indices[order[worker::workers]])


def _decoded(encoded_ds, image_size):
    """(encoded, label, index) -> (uint8 image, label, index); an element that fails to
    decode is dropped (``ignore_errors``) and counted by :func:`decode_once`."""
    ds = encoded_ds.map(lambda e, y, i: (resize_uint8(_decode(e), image_size), y, i),
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


def _pipeline_splits(source, labels, class_names, recipe, cache_dir, report, encoded,
                     shard=None, budget=None, verbose=0) -> Splits:
    """The splits of a scanned source: ``labels`` of every item, ``encoded(indices)`` a
    dataset of (encoded bytes, label, index) for those items (any order)."""
    labels = np.asarray(labels, dtype="int32")
    train_idx, val_idx = stratified_split(labels, recipe.validation_split, recipe.seed)
    all_train = labels[train_idx]
    if shard is not None:
        worker, workers = shard
        shares = {}
        for split, indices in (("train", train_idx), ("val", val_idx)):
            share = worker_share(indices, worker, workers, recipe.seed)
            # Every worker must run the same number of steps (a collective waits for all):
            # a share one image short repeats its first image.
            pad = -(-len(indices) // workers) - len(share)
            shares[split] = (share, np.concatenate([share, share[:pad]]) if pad else share, pad)
        (_, train_idx, _), (_, val_idx, _) = shares["train"], shares["val"]
        report["worker_share"] = {
            "worker": worker, "workers": workers, "seed": recipe.seed,
            **{split: [source[i] for i in share] for split, (share, _, _) in shares.items()},
            "repeated": {split: int(pad) for split, (_, _, pad) in shares.items()}}
    if len(train_idx) > shuffle_buffer(recipe.image_size):
        # More images than the shuffle holds: decode (and cache) them in a seeded random
        # order, so that the buffer does not see one class at a time.
        train_idx = np.random.default_rng([recipe.seed, 20]).permutation(train_idx)
    choice, reason, figures = choose_cache(recipe.cache, len(train_idx) + len(val_idx),
                                           recipe.image_size, cache_dir, budget)
    report["cache"] = dict(choice=choice, reason=reason, **figures)
    if verbose:
        print(f"Cache: {choice} ({reason}).", flush=True)
    pending, datasets = {}, {}
    for split, indices in (("train", train_idx), ("val", val_idx)):
        indexed = _cached(_decoded(encoded(indices), recipe.image_size), choice, cache_dir,
                          split)
        pending[split] = dict(indexed=indexed, indices=indices, encoded=encoded)
        datasets[split] = _per_worker(indexed.map(lambda x, y, i: (x, y)), shard)
    splits = _splits(datasets["train"], datasets["val"], class_names, labels[train_idx],
                     labels[val_idx], report)
    splits.cache, splits.shard, splits.all_train_labels = choice, shard, all_train
    splits.pending = dict(pending, source=source, labels=labels, image_size=recipe.image_size)
    return splits


def decode_once(splits: Splits, verbose=0) -> Splits:
    """The first full pass over a folder's or TFRecords' splits: every image decoded once
    (filling the cache); files that fail to decode are skipped and counted. Updates the
    labels, the counts and ``splits.report`` (``skipped``, ``decode``); a no-op for tfds
    data and after the first call. A disk cache needs its folder to exist first."""
    if not splits.pending:
        return splits
    pending, started = splits.pending, time.perf_counter()
    source, labels, total, failed = pending["source"], pending["labels"], 0, []
    for split in ("train", "val"):
        step, indices = pending[split], pending[split]["indices"]
        total += len(indices)
        bar = keras.utils.Progbar(len(indices), unit_name="image") if (
            verbose and len(indices) >= DECODE_PROGRESS_FROM) else None
        if bar is not None:
            print(f"Decoding the {split} split once ({splits.cache} cache):", flush=True)
        kept = []
        for batch in step["indexed"].map(lambda x, y, i: i).batch(256).as_numpy_iterator():
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
        ds = indexed.map(lambda x, y, i: (x, y))
        if splits.cache != "none":
            ds = ds.apply(tf.data.experimental.assert_cardinality(len(kept)))
        setattr(splits, split, _per_worker(ds, splits.shard))
        setattr(splits, f"{split}_labels", labels[kept] if len(kept) else labels[:0])
    seconds = time.perf_counter() - started
    splits.report["skipped"] += [{"file": source[i], "reason": UNDECODABLE} for i in failed]
    splits.report["decode"] = {"images": total, "failed": len(failed),
                               "seconds": round(seconds, 2),
                               "images_per_s": round(total / max(seconds, 1e-9), 1)}
    splits.pending = {}
    if verbose:
        print(f"Decoded {total:,} images once in {seconds:.1f} s"
              + (f"; {len(failed)} failed to decode and are skipped (data_report.json)"
                 if failed else "") + ".", flush=True)
    _splits(splits.train, splits.val, splits.class_names, splits.train_labels,
            splits.val_labels, splits.report)
    return splits


def load_folder(root, recipe, cache_dir=None, shard=None, budget=None, verbose=0) -> Splits:
    """A folder of class sub-folders: scanned (:mod:`keras_vgg.finetune.scan`), split per
    class, shared out among workers (``shard``: (worker, workers)), decoded in the pipeline."""
    scan = scan_folder(root, verbose=verbose)
    files = np.array(scan.files)
    report = {
        "source": str(root),
        "skipped": [{"file": f, "reason": r} for f, r in scan.skipped],
        "converted": [{"file": f, "change": c} for f, c in scan.converted],
        "dropped_classes": [{"class": c, "reason": r} for c, r in scan.dropped_classes],
        "scan": {"files": scan.listed, "checked": scan.checked,
                 "seconds": round(scan.seconds, 4), "manifest": scan.manifest},
    }

    def encoded(indices):
        ds = tf.data.Dataset.from_tensor_slices(
            (files[indices], np.asarray(scan.labels, dtype="int32")[indices],
             np.asarray(indices, dtype="int64")))
        return ds.map(lambda p, y, i: (tf.io.read_file(p), y, i), tf.data.AUTOTUNE)

    return _pipeline_splits(list(scan.files), scan.labels, scan.class_names, recipe, cache_dir,
                            report, encoded, shard, budget, verbose)


def load_tfds(name, recipe, cache_dir=None, budget=None, verbose=0) -> Splits:
    """A tensorflow-datasets image classification set; image/label keys from its features.

    The recipe's ``data_dir`` (when set) is the folder tfds keeps prepared datasets in;
    unset, tfds uses $TFDS_DATA_DIR or ~/tensorflow_datasets. A dataset already there is
    read without a network; one that is not is downloaded and prepared (:func:`prepare_tfds`).
    """
    tfds = require_tfds()

    data_dir = os.path.expanduser(recipe.data_dir) if recipe.data_dir else None
    builder = tfds.builder(name, data_dir=data_dir)
    image_key, label_key = feature_keys(builder.info.features, recipe.image_key, recipe.label_key)
    prepare_tfds(builder, name)
    class_names = list(builder.info.features[label_key].names)

    def dataset(split_key):
        split = getattr(recipe, split_key)
        try:
            ds = builder.as_dataset(split=split, shuffle_files=False)
        except (ValueError, KeyError, tf.errors.InvalidArgumentError) as error:
            raise ValueError(
                f"Expected `{split_key}` to be a split of {name} "
                f"({sorted(builder.info.splits)}; slices like 'train[:80%]' work). "
                f"Received: {split_key}={split!r} ({error})"
            ) from error
        label_only = builder.as_dataset(split=split, shuffle_files=False,
                                        decoders={image_key: tfds.decode.SkipDecoding()})
        labels = np.fromiter(label_only.map(lambda ex: ex[label_key]).as_numpy_iterator(),
                             dtype="int32")
        ds = ds.map(lambda ex: (resize_uint8(_rgb(ex[image_key]), recipe.image_size),
                                tf.cast(ex[label_key], tf.int32)), tf.data.AUTOTUNE)
        return ds, labels

    (train, train_labels), (val, val_labels) = dataset("train_split"), dataset("val_split")
    choice, reason, figures = choose_cache(recipe.cache, len(train_labels) + len(val_labels),
                                           recipe.image_size, cache_dir, budget)
    if verbose:
        print(f"Cache: {choice} ({reason}).", flush=True)
    train, val = _cached(train, choice, cache_dir, "train"), _cached(val, choice, cache_dir, "val")
    report = {"source": f"tfds:{name}", "image_key": image_key, "label_key": label_key,
              "skipped": [], "converted": [], "dropped_classes": [],
              "cache": dict(choice=choice, reason=reason, **figures)}
    splits = _splits(train, val, class_names, train_labels, val_labels, report)
    splits.cache, splits.all_train_labels = choice, train_labels
    return splits


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

    return (find(tfds.features.Image, image_key, "image", "image_key"),
            find(tfds.features.ClassLabel, label_key, "label", "label_key"))


def load_builtin(recipe, cache_dir=None, shard=None, budget=None, verbose=0) -> Splits:
    from keras_vgg.finetune.builtin import make_shapes

    root = make_shapes(images_per_class=recipe.builtin_images_per_class)
    splits = _load_files(root, recipe, cache_dir, shard, budget, verbose)
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
    if recipe.data == "builtin":
        return load_builtin(recipe, cache_dir, shard, budget, verbose)
    if recipe.data.startswith("tfds:"):
        if recipe.tfrecords:
            raise expected("`tfrecords` unset with tfds data (tfds keeps its own TFRecords); it "
                           "writes folders", tfrecords=recipe.tfrecords, data=recipe.data)
        return load_tfds(recipe.data[len("tfds:"):], recipe, cache_dir, budget, verbose)
    return _load_files(recipe.data, recipe, cache_dir, shard, budget, verbose)


def _load_files(root, recipe, cache_dir, shard, budget, verbose) -> Splits:
    """A folder, a folder written as TFRecords (``recipe.tfrecords``), or TFRecords."""
    if tfrecords.is_tfrecords(root):
        return load_tfrecords(root, recipe, cache_dir, shard, budget, verbose)
    if recipe.tfrecords:
        scan = scan_folder(root, verbose=verbose)
        tfrecords.write_tfrecords(scan, root, recipe.tfrecords, verbose=verbose)
        splits = load_tfrecords(recipe.tfrecords, recipe, cache_dir, shard, budget, verbose)
        splits.report["source"] = str(root)
        splits.report["tfrecords"] = recipe.tfrecords
        return splits
    return load_folder(root, recipe, cache_dir, shard, budget, verbose)


def load_tfrecords(path, recipe, cache_dir=None, shard=None, budget=None, verbose=0) -> Splits:
    """A folder written by :func:`keras_vgg.finetune.tfrecords.write_tfrecords` (a local path
    or any path tf.io.gfile reads: ``gs://``, ``s3://``), split and shared out as a folder."""
    index = tfrecords.read_index(path)
    report = {"source": str(path), "skipped": list(index["skipped"]),
              "converted": list(index["converted"]), "dropped_classes": list(index["dropped"])}
    files = index["files"]
    return _pipeline_splits(files, index["labels"], index["class_names"], recipe, cache_dir,
                            report, lambda indices: tfrecords.records(path, index, indices),
                            shard, budget, verbose)


def _splits(train, val, class_names, train_labels, val_labels, report) -> Splits:
    if len(train_labels) == 0 or len(val_labels) == 0:
        raise ValueError(
            f"Expected images in both splits. Received: {len(train_labels)} for training, "
            f"{len(val_labels)} for validation (from {report['source']})."
        )
    report["classes"] = list(class_names)
    report["train_counts"] = np.bincount(train_labels, minlength=len(class_names)).tolist()
    report["val_counts"] = np.bincount(val_labels, minlength=len(class_names)).tolist()
    return Splits(train, val, list(class_names), train_labels, val_labels, report)


def augmenter(recipe) -> list:
    """Keras preprocessing layers for the recipe's augmentations (training split only).

    They run inside ``tf.data`` on every backend: each of these layers computes with
    TensorFlow when it is called in a ``tf.data`` map, whatever ``KERAS_BACKEND`` is. (A
    ``keras.Sequential`` of them does not: it computes with the backend and fails on jax
    and torch, keras-team/keras#19895; so they are called one by one.)"""
    factor, seed = recipe.augment_factor, recipe.seed
    layers = {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed),
        "rotation": lambda: keras.layers.RandomRotation(factor, seed=seed),
        "zoom": lambda: keras.layers.RandomZoom(factor, seed=seed),
        "contrast": lambda: keras.layers.RandomContrast(factor, seed=seed),
    }
    return [layers[name]() for name in recipe.augment]


def _augmented(layers):
    def augment(x, y):
        x = tf.cast(x, tf.float32)
        for layer in layers:
            x = layer(x, training=True)
        return x, y
    return augment


def train_pipeline(ds, recipe, mode, augment=True, shuffle=True):
    """Shuffled (seeded, reshuffled each epoch), batched, augmented, preprocessed: TensorFlow
    ops only, so the same pipeline feeds a model on every Keras backend."""
    ds = shuffle_batch(ds, recipe) if shuffle else ds.batch(recipe.batch_size,
                                                             drop_remainder=sharded())
    layers = augmenter(recipe) if augment else []
    if layers:
        ds = ds.map(_augmented(layers), tf.data.AUTOTUNE)
    preprocess = as_preprocessing(mode)
    return ds.map(lambda x, y: (preprocess(x), y),
                  tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(ds, recipe, mode):
    """Batched and preprocessed, in order."""
    return train_pipeline(ds, recipe, mode, augment=False, shuffle=False)


SHUFFLE_IMAGES = 4096  # the shuffle buffer, in images...
SHUFFLE_BYTES = 256 * 2**20  # ...holding at most this many decoded bytes (1,706 at 224x224)


def shuffle_buffer(image_size) -> int:
    """Images the training shuffle holds: 4096, fewer for big images (256 MB at most)."""
    return int(min(SHUFFLE_IMAGES, max(256, SHUFFLE_BYTES // (int(image_size) ** 2 * 3))))


def shuffle_batch(ds, recipe):
    """The one shuffle (seeded, reshuffled each epoch) and batching both training paths use."""
    return ds.shuffle(shuffle_buffer(recipe.image_size), seed=recipe.seed,
                      reshuffle_each_iteration=True).batch(recipe.batch_size,
                                                           drop_remainder=sharded())


def sharded() -> bool:
    """Whether a JAX ``keras.distribution`` splits batches over several devices: then every
    batch must divide evenly, and the last, partial one of an epoch is left out (a run's
    final evaluation and feature cache run on one device and see every image)."""
    if keras.backend.backend() != "jax":
        return False
    distribution = keras.distribution.distribution()
    return distribution is not None and distribution.device_mesh.devices.size > 1


def export_arrays(splits: Splits, seed=0, calibration=200, sample=1000):
    """``(representative, sample, sample_labels)`` as uint8 arrays for an export: a shuffled
    share of the training split to calibrate int8, and the validation split to check on."""
    train = [x.numpy() for x, _ in splits.train.shuffle(10_000, seed=seed).take(calibration)]
    pairs = [(x.numpy(), int(y)) for x, y in splits.val.take(sample)]
    return np.stack(train), np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])
