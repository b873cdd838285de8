"""A scanned folder written once as sharded TFRecords, and read back for training.

For big folders, or to train from a bucket: the recipe's ``tfrecords`` names a folder (a
local path, or any path ``tf.io.gfile`` reads, such as ``gs://bucket/photos`` or
``s3://...`` with tensorflow-io) where the usable images of ``data`` are written once, as
their encoded bytes (no decoding, no resizing), in a seeded shuffled order across shards of
about 64 MB, with an index (``tfrecords.json``: classes, labels, source paths, shards). A later
run of the same unchanged folder, seed and shard size reuses them; ``data`` may also name such
a folder directly, so the same recipe runs where only the TFRecords are.

A set's files are named by its generation (the start of its :func:`fingerprint`), and an
index names only its own generation's files. A rewrite writes the new shards beside the old
set (each to a temporary name, renamed into place), then moves the new index over the old one
(the one switch), then removes the old set's files: a reader sees the old set or the new one,
never a mix.

Example:
    >>> import tempfile
    >>> from keras_vgg.finetune.builtin import make_shapes
    >>> from keras_vgg.finetune.scan import scan_folder
    >>> from keras_vgg.finetune.tfrecords import WriteOptions, is_tfrecords, write_tfrecords
    >>> root, out = make_shapes(tempfile.mkdtemp(), images_per_class=3), tempfile.mkdtemp()
    >>> index = write_tfrecords(scan_folder(root), root, out)
    >>> is_tfrecords(out), len(index["labels"]), [s["count"] for s in index["shards"]]
    (True, 15, [15])
    >>> index = write_tfrecords(scan_folder(root), root, out, WriteOptions(seed=1))
    >>> index["seed"], len(index["shards"])
    (1, 1)
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from keras_vgg._helpers import expected

INDEX = "tfrecords.json"
VERSION = 1
SHARD_BYTES = 64 * 2**20  # about this many encoded bytes a shard
GENERATION_CHARS = 12  # the fingerprint's first characters name a set's files
# What this module writes: a set's shards and temporary files (another worker writing the same
# set at the same time, or a write cut short, leaves them before any index is there).
_WRITTEN = re.compile(r"images-[^/]*\.tfrecord|\.(images-[^/]*|tfrecords\.json)\.[0-9a-f]+\.tmp")
PROGRESS_FROM = 1000  # images to write before a progress bar is worth showing


def _join(folder, name) -> str:
    return f"{str(folder).rstrip('/')}/{name}"


def is_tfrecords(path) -> bool:
    """Whether ``path`` holds a TFRecords set written by :func:`write_tfrecords`."""
    try:
        return tf.io.gfile.exists(_join(path, INDEX))
    except tf.errors.OpError:
        return False


def read_index(path) -> dict:
    """The index of a TFRecords set (its files' paths made absolute)."""
    try:
        with tf.io.gfile.GFile(_join(path, INDEX)) as f:
            index = json.loads(f.read())
    except (tf.errors.OpError, ValueError) as error:
        raise expected(f"a TFRecords folder written by keras_vgg (with {INDEX})",
                       data=f"{path} ({error})") from error
    if index.get("version") != VERSION:
        raise expected(f"a TFRecords index of version {VERSION}; write it again",
                       data=f"{path} (version {index.get('version')})")
    return index


def fingerprint(scan, root, seed=0, shard_bytes=SHARD_BYTES) -> str:
    """What a TFRecords set was written from and how: the folder ``root``, every usable and
    skipped file's path, size and mtime (a changed, added or removed file changes it), the
    seed that orders the records and the shard size."""
    digest = hashlib.sha1()
    digest.update(f"{root}\0seed={int(seed)}\0shard_bytes={int(shard_bytes)}\n".encode())
    for path in sorted(list(scan.files) + [p for p, _ in scan.skipped]):
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class WriteOptions:
    """How :func:`write_tfrecords` writes a set: ``seed`` draws the records' order and
    ``shard_bytes`` sizes the shards (both part of the set's :func:`fingerprint`);
    ``workers``: threads that read the files (default: one a core); ``verbose``: 1 prints
    what is written and, from 1,000 images, a progress bar."""

    seed: int = 0
    shard_bytes: int = SHARD_BYTES
    workers: int | None = None
    verbose: int = 0


def write_tfrecords(scan, root, out, options: WriteOptions = WriteOptions()) -> dict:
    """The usable images of ``scan`` (of the folder ``root``) written under ``out`` as
    sharded TFRecords, in the order ``options.seed`` draws, with their index; returns the
    index. Nothing is written when ``out`` already holds this set (the same
    :func:`fingerprint`: an unchanged folder, the same seed and shard size); another set
    there is replaced as the module docstring says; a folder holding anything else is
    refused (``tfrecords`` names a new folder or one this function wrote)."""
    out, root = str(out), os.path.realpath(root)
    stamp = fingerprint(scan, root, options.seed, options.shard_bytes)
    old = read_index(out) if is_tfrecords(out) else None
    if old is not None and old.get("fingerprint") == stamp:
        if options.verbose:
            print(f"TFRecords: {out} holds this folder already ({len(old['labels']):,} "
                  f"images).", flush=True)
        return old
    if old is None and tf.io.gfile.exists(out) and not all(
            _WRITTEN.fullmatch(name) for name in tf.io.gfile.listdir(out)):
        raise expected("`data.tfrecords` to name a new folder, or one keras_vgg wrote "
                       "TFRecords in", **{"data.tfrecords": f"{out} (holds other files)"})
    tf.io.gfile.makedirs(out)
    generation = stamp[:GENERATION_CHARS]
    shards = _write_shards(scan, out, generation, options)
    index = {"version": VERSION, "source": root, "fingerprint": stamp,
             "generation": generation, "seed": int(options.seed),
             "shard_bytes": int(options.shard_bytes),
             "class_names": list(scan.class_names), "files": list(scan.files),
             "labels": list(scan.labels), "shards": shards,
             "skipped": [{"file": f, "reason": r} for f, r in scan.skipped],
             "converted": [{"file": f, "change": c} for f, c in scan.converted],
             "dropped": [{"class": c, "reason": r} for c, r in scan.dropped_classes]}
    tmp = _join(out, f".{INDEX}.{uuid.uuid4().hex}.tmp")
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(index))
    tf.io.gfile.rename(tmp, _join(out, INDEX), overwrite=True)  # the switch
    for stale in {s["file"] for s in (old or {}).get("shards", [])} - {s["file"] for s in shards}:
        try:
            tf.io.gfile.remove(_join(out, stale))
        except tf.errors.NotFoundError:  # removed already (another worker's write)
            pass
    return index


def _write_shards(scan, out, generation, options: WriteOptions) -> list:
    """The usable images of ``scan`` written under ``out`` in the order ``options.seed``
    draws, as shards of about ``options.shard_bytes`` named by ``generation`` (each to a
    temporary name, renamed into place); returns ``[{"file", "count"}]`` a shard."""
    files, labels = list(scan.files), list(scan.labels)
    order = np.random.default_rng([int(options.seed), 19]).permutation(len(files))
    sizes = np.array([os.path.getsize(files[i]) for i in order])
    count = max(1, int(np.ceil(sizes.sum() / options.shard_bytes)))
    bounds = np.linspace(0, len(order), count + 1).astype(int)
    bar = keras.utils.Progbar(len(files), unit_name="image") if (
        options.verbose and len(files) >= PROGRESS_FROM) else None
    if options.verbose:
        print(f"TFRecords: writing {len(files):,} images to {out} ({count} shard(s)).",
              flush=True)
    shards = []
    with concurrent.futures.ThreadPoolExecutor(options.workers or os.cpu_count() or 1) as pool:
        for n in range(count):  # new names: the old index, still in force, names none of them
            name = f"images-{generation}-{n:05d}-of-{count:05d}.tfrecord"
            tmp = _join(out, f".{name}.{uuid.uuid4().hex}.tmp")
            chunk = order[bounds[n]:bounds[n + 1]]
            with tf.io.TFRecordWriter(tmp) as writer:
                for i, data in zip(chunk, pool.map(_read, (files[i] for i in chunk))):
                    writer.write(_example(data, labels[i], i))
                    if bar is not None:
                        bar.add(1)
            tf.io.gfile.rename(tmp, _join(out, name), overwrite=True)
            shards.append({"file": name, "count": int(len(chunk))})
    return shards


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _example(data, label, index) -> bytes:
    feature = tf.train.Feature
    return tf.train.Example(features=tf.train.Features(feature={
        "image": feature(bytes_list=tf.train.BytesList(value=[data])),
        "label": feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "index": feature(int64_list=tf.train.Int64List(value=[int(index)])),
    })).SerializeToString()


_FEATURES = {"image": tf.io.FixedLenFeature([], tf.string),
             "label": tf.io.FixedLenFeature([], tf.int64),
             "index": tf.io.FixedLenFeature([], tf.int64)}


def records(path, index, indices) -> tf.data.Dataset:
    """(encoded image, int32 label, int64 index) of the records whose index is in
    ``indices``, in the order they were written (shards read in parallel, deterministic)."""
    member = np.zeros(len(index["labels"]), bool)
    member[np.asarray(indices, dtype=int)] = True
    member = tf.constant(member)
    shards = [_join(path, s["file"]) for s in index["shards"]]
    ds = tf.data.TFRecordDataset(shards, num_parallel_reads=min(len(shards), 8))
    plain = tf.autograph.experimental.do_not_convert  # as data.plain (no import cycle)
    ds = ds.map(plain(lambda r: tf.io.parse_single_example(r, _FEATURES)), tf.data.AUTOTUNE)
    ds = ds.filter(plain(lambda ex: tf.gather(member, ex["index"])))
    return ds.map(plain(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32), ex["index"])),
                  tf.data.AUTOTUNE)
