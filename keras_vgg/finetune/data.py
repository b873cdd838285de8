"""Data for recipes: tfds by name, a folder of class sub-folders, or the built-in shapes.

Every source ends as the same thing, :class:`Splits`: unbatched ``(uint8 image
resized to image_size, int label)`` datasets for train and validation, decoded
and cached once. :func:`train_pipeline` and :func:`eval_pipeline` then batch,
augment (train only) and preprocess with the weights' mode.

Folders are scanned first: a file that is not an image, or that is corrupt or
truncated, is skipped and reported; grayscale, palette and RGBA images are
converted to RGB when decoded; an empty class folder is dropped and reported.
The run fails only when fewer than two usable classes are left.

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
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vgg._extras import require
from keras_vgg.preprocessing import as_preprocessing, resize_uint8

# Formats whose failures mean a damaged file rather than an unsupported format.
DECODABLE = ("JPEG", "PNG", "GIF", "BMP", "WEBP")


@dataclass
class Scan:
    """A folder's usable images and what was left out, with the reason."""

    class_names: list
    files: list
    labels: list
    skipped: list = field(default_factory=list)  # [(path, reason)]
    converted: list = field(default_factory=list)  # [(path, "L -> RGB")]
    dropped_classes: list = field(default_factory=list)  # [(name, reason)]


@dataclass
class Splits:
    """Unbatched (uint8 HxWx3, label) train and validation datasets, ready to pipeline."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    class_names: list
    train_labels: np.ndarray
    val_labels: np.ndarray
    report: dict


def check_image(path: Path):
    """(ok, reason, mode) for one file: Pillow identifies and fully decodes it, and so does
    ``tf.io.decode_image``, the decoder the pipeline uses (it rejects some files Pillow
    accepts, such as a PNG missing its last chunk)."""
    Image = require("PIL.Image", "finetune", package="pillow")
    UnidentifiedImageError = Image.UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt, mode = image.format, image.mode
            image.load()  # a truncated file fails here
    except UnidentifiedImageError:
        return False, "not an image", None
    except (OSError, SyntaxError, ValueError) as error:
        return False, f"corrupt or truncated ({error})", None
    if fmt == "BMP" and mode in ("P", "1"):
        return False, ("BMP with a colour table: tf.io.decode_image would read its palette "
                       "indices as grey levels; save it as PNG"), None
    try:
        _decode_rgb(str(path))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        message = str(error).splitlines()[0][:120]
        if fmt in DECODABLE:
            return False, f"corrupt or truncated ({message})", None
        return False, f"{fmt} images are not readable by tf.io.decode_image", None
    return True, "", mode


def scan_folder(root) -> Scan:
    """Class names from the sub-folders of ``root`` (sorted), and every usable image."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(
            f"Expected `data` to be 'builtin', 'tfds:NAME' or a folder of class sub-folders. "
            f"Received: data={str(root)!r} (not a folder)"
        )
    scan = Scan([], [], [])
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        usable = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue  # hidden files and folders (thumbnails, .DS_Store...)
            ok, reason, mode = check_image(path)
            if not ok:
                scan.skipped.append((str(path), reason))
                continue
            usable.append(str(path))
            if mode != "RGB":
                scan.converted.append((str(path), f"{mode} -> RGB"))
        if not usable:
            scan.dropped_classes.append((folder.name, "no usable images"))
            continue
        scan.files += usable
        scan.labels += [len(scan.class_names)] * len(usable)
        scan.class_names.append(folder.name)
    if len(scan.class_names) < 2:
        found = f"usable classes {scan.class_names}" if scan.class_names else "no usable images"
        detail = f"; skipped {len(scan.skipped)} file(s)" if scan.skipped else ""
        raise ValueError(
            f"Expected a folder with at least two class sub-folders holding images. "
            f"Received: data={str(root)!r} with {found}{detail}."
        )
    return scan


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


def _decode_rgb(path):
    """The pipeline's decoder (the scan runs it too, so what the scan keeps decodes)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def _rgb(image):
    """Grayscale -> RGB, RGBA -> RGB (tfds images keep their own channel count)."""
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    return image[..., :3] if channels == 4 else image


def _cached(ds, recipe, cache_dir, split):
    """Decoded images kept after the first epoch: in memory, or in files under ``cache_dir``
    (which must exist before the first iteration)."""
    if recipe.cache == "memory" or (recipe.cache == "disk" and cache_dir is None):
        return ds.cache()
    if recipe.cache == "disk":
        return ds.cache(str(Path(cache_dir) / split))
    return ds


def load_folder(root, recipe, cache_dir=None) -> Splits:
    scan = scan_folder(root)
    train_idx, val_idx = stratified_split(scan.labels, recipe.validation_split, recipe.seed)
    files, labels = np.array(scan.files), np.array(scan.labels, dtype="int32")

    def dataset(indices, split):
        ds = tf.data.Dataset.from_tensor_slices((files[indices], labels[indices]))
        ds = ds.map(lambda p, y: (resize_uint8(_decode_rgb(p), recipe.image_size), y),
                    tf.data.AUTOTUNE)
        return _cached(ds, recipe, cache_dir, split)

    report = {
        "source": str(root),
        "skipped": [{"file": f, "reason": r} for f, r in scan.skipped],
        "converted": [{"file": f, "change": c} for f, c in scan.converted],
        "dropped_classes": [{"class": c, "reason": r} for c, r in scan.dropped_classes],
    }
    return _splits(dataset(train_idx, "train"), dataset(val_idx, "val"), scan.class_names,
                   labels[train_idx], labels[val_idx], report)


def load_tfds(name, recipe, cache_dir=None) -> Splits:
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
        return _cached(ds, recipe, cache_dir, split_key), labels

    (train, train_labels), (val, val_labels) = dataset("train_split"), dataset("val_split")
    report = {"source": f"tfds:{name}", "image_key": image_key, "label_key": label_key,
              "skipped": [], "converted": [], "dropped_classes": []}
    return _splits(train, val, class_names, train_labels, val_labels, report)


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


def load_builtin(recipe, cache_dir=None) -> Splits:
    from keras_vgg.finetune.builtin import make_shapes

    splits = load_folder(make_shapes(images_per_class=recipe.builtin_images_per_class),
                         recipe, cache_dir)
    splits.report["source"] = "builtin shapes"
    return splits


def load_data(recipe, cache_dir=None) -> Splits:
    """The recipe's data as :class:`Splits`."""
    if recipe.data == "builtin":
        return load_builtin(recipe, cache_dir)
    if recipe.data.startswith("tfds:"):
        return load_tfds(recipe.data[len("tfds:"):], recipe, cache_dir)
    return load_folder(recipe.data, recipe, cache_dir)


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


def shuffle_batch(ds, recipe):
    """The one shuffle (seeded, reshuffled each epoch) and batching both training paths use."""
    return ds.shuffle(4096, seed=recipe.seed, reshuffle_each_iteration=True).batch(
        recipe.batch_size, drop_remainder=sharded())


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
