"""Published weights: one record per file, and loading ``weights=`` into a model.

Three publishers cover the family between them: Keras (VGG16/VGG19, Caffe-converted, "caffe"
preprocessing), torchvision (VGG11/13/16/19 and their BN forms, "torch" preprocessing) and
MatConvNet (VGG-F/M/S, M-2048/1024/128 and verydeep-16/19, "mean_image" preprocessing).
``weights="imagenet"`` takes the first record of a variant in :data:`WEIGHTS`; a publisher's
name (``"keras"``, ``"torchvision"``, ``"matconvnet"``) picks that one. Non-Keras files are
converted on first use and cached as a Keras ``.weights.h5`` beside the download.

Example:
    >>> from keras_vgg.weights import available_weights
    >>> available_weights()["vgg16"]
    ['keras', 'torchvision', 'matconvnet']
    >>> available_weights()["vgg_s"]
    ['matconvnet']
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import keras

from keras_vgg._helpers import format_table
from keras_vgg.convert import SOURCE_SUFFIXES, assign, read_metadata, read_source, save_converted
from keras_vgg.preprocessing import Preprocessing
from keras_vgg.saving import read_keras_record

_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_TORCHVISION = "https://download.pytorch.org/models/"
_MATCONVNET = "https://www.vlfeat.org/matconvnet/models/"
SOURCES = ("keras", "torchvision", "matconvnet")
PREPROCESSING = {"keras": "caffe", "torchvision": "torch", "matconvnet": "mean_image"}
LICENCES = {
    "keras": "CC BY 4.0 (VGG, Oxford)",
    "torchvision": "BSD-3-Clause (torchvision)",
    "matconvnet": "not stated by MatConvNet",
}


@dataclass(frozen=True)
class WeightsRecord:
    """One published weights file and what it implies."""

    variant: str
    has_top: bool  # the file holds the classifier (it serves include_top=False too)
    source: str  # "keras", "torchvision" or "matconvnet"
    url: str
    file_hash: str | None  # keras: md5; torchvision: sha256 prefix (in the name); None: unpublished
    num_params: int  # trainable parameters of the model the file fills (as its publisher counts)
    input_size: int = 224
    top1: float | None = None  # published ImageNet val accuracy, %
    top5: float | None = None

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def preprocessing(self) -> str:
        return PREPROCESSING[self.source]

    @property
    def licence(self) -> str:
        return LICENCES[self.source]

    def check_hash(self, path: str) -> None:
        """Raise (and delete the file) unless ``path`` has the published hash: Keras publishes
        md5s, torchvision the first 8 hex digits of the sha256 (in the file name)."""
        if self.file_hash is None:
            return
        algorithm = "md5" if self.source == "keras" else "sha256"
        digest = hashlib.new(algorithm)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        if not digest.hexdigest().startswith(self.file_hash):
            os.remove(path)
            raise ValueError(
                f"{self.file_name} does not have its published {algorithm} ({self.file_hash}...; "
                f"the download gave {digest.hexdigest()[:16]}...): it is corrupted or truncated. "
                "It was deleted and nothing was loaded; run again to download it afresh."
            )


def _torchvision(variant, digest, num_params, top1, top5):
    url = f"{_TORCHVISION}{variant}-{digest}.pth"
    return WeightsRecord(variant, True, "torchvision", url, digest, num_params, 224, top1, top5)


def _matconvnet(variant, file_stem, num_params):
    url = f"{_MATCONVNET}imagenet-{file_stem}.mat"
    return WeightsRecord(variant, True, "matconvnet", url, None, num_params)


WEIGHTS: tuple[WeightsRecord, ...] = (
    WeightsRecord("vgg16", True, "keras", _KERAS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                  "64373286793e3c8b2b4e3219cbf3544b", 138_357_544, 224, 71.3, 90.1),
    WeightsRecord("vgg16", False, "keras",
                  _KERAS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  "6d6bbae143d832006294945121d1f1fc", 14_714_688),
    WeightsRecord("vgg19", True, "keras", _KERAS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                  "cbe5617147190e668d6c5d5026f83318", 143_667_240, 224, 71.3, 90.0),
    WeightsRecord("vgg19", False, "keras",
                  _KERAS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  "253f8cb515780f3b799900260a226db6", 20_024_384),
    # torchvision.models.vgg: url (sha256 prefix in the name), num_params, acc@1, acc@5.
    _torchvision("vgg11", "8a719046", 132_863_336, 69.020, 88.628),
    _torchvision("vgg11_bn", "6002323d", 132_868_840, 70.370, 89.810),
    _torchvision("vgg13", "19584684", 133_047_848, 69.928, 89.246),
    _torchvision("vgg13_bn", "abd245e5", 133_053_736, 71.586, 90.374),
    _torchvision("vgg16", "397923af", 138_357_544, 71.592, 90.382),
    _torchvision("vgg16_bn", "6c64b313", 138_365_992, 73.360, 91.516),
    _torchvision("vgg19", "dcbb9e9d", 143_667_240, 72.376, 90.876),
    _torchvision("vgg19_bn", "c79401a0", 143_678_248, 74.218, 91.842),
    # MatConvNet's imports of the Caffe/VGG releases; it publishes no checksums.
    _matconvnet("vgg_f", "vgg-f", 60_834_536),
    _matconvnet("vgg_m", "vgg-m", 102_908_520),
    _matconvnet("vgg_s", "vgg-s", 102_908_520),
    _matconvnet("vgg_m_2048", "vgg-m-2048", 92_469_864),
    _matconvnet("vgg_m_1024", "vgg-m-1024", 87_250_536),
    _matconvnet("vgg_m_128", "vgg-m-128", 82_683_624),
    _matconvnet("vgg16", "vgg-verydeep-16", 138_357_544),
    _matconvnet("vgg19", "vgg-verydeep-19", 143_667_240),
)
NAMES = ("imagenet",) + SOURCES  # what `weights=` accepts besides None and a path


def available_weights() -> dict[str, list[str]]:
    """``{variant: [publishers]}``; the first publisher is what ``weights="imagenet"`` loads."""
    table: dict[str, list[str]] = {}
    for record in WEIGHTS:
        sources = table.setdefault(record.variant, [])
        if record.source not in sources:
            sources.append(record.source)
    return table


def find_weights(variant: str, include_top: bool, name: str = "imagenet") -> WeightsRecord:
    """The record ``weights=name`` means for ``variant``: a file without the top serves a
    headless model only; a file with it serves both (its classifier then left out)."""
    candidates = [
        r for r in WEIGHTS
        if r.variant == variant and name in ("imagenet", r.source) and (r.has_top or not include_top)
    ]
    if not candidates:
        published = available_weights().get(variant)
        raise ValueError(
            f"No published weights {name!r} for {variant}. Expected `weights` None, a file path"
            + (f", or one of {['imagenet'] + published}" if published else
               f" (published weights exist for {sorted(available_weights())})")
            + f". Received: weights={name!r}"
        )
    # A file made for exactly this form (the notop file for a headless model) first.
    candidates.sort(key=lambda r: (SOURCES.index(r.source), r.has_top != include_top))
    return candidates[0]


def _converted_path(record: WeightsRecord, downloaded: str, include_top: bool) -> str:
    stem = record.file_name.rsplit(".", 1)[0]
    return os.path.join(os.path.dirname(downloaded),
                        f"{stem}.keras_vgg{'' if include_top else '_notop'}.weights.h5")


def cache_path(record: WeightsRecord) -> str:
    """Where ``keras.utils.get_file`` keeps ``record``'s file (``~/.keras/models/...``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models", record.file_name)


def fetch(record: WeightsRecord, weights: str = "imagenet") -> str:
    """Download (once, into the Keras cache) and hash-check a published file. Offline, a
    ValueError says where to put the file by hand (or that a path works too)."""
    try:
        path = keras.utils.get_file(record.file_name, record.url, cache_subdir="models")
    except Exception as error:  # Keras raises a bare Exception("URL fetch failure on ...")
        if "URL fetch failure" not in str(error):
            raise
        reason = str(error).rsplit(" -- ", 1)[-1]  # "[Errno -2] Name or service not known"
        raise ValueError(
            f"Could not download {record.file_name} for {record.variant} ({reason}). Without a "
            f"network, download {record.url} elsewhere and put it at {cache_path(record)}, "
            f"or pass its path as `weights` (keras-vgg finetune --weights PATH). Received: "
            f"weights={weights!r}"
        ) from None
    record.check_hash(path)
    return path


def load_weights(model: keras.Model, weights, variant: str, include_top: bool) -> None:
    """Load ``weights`` (a name in :data:`NAMES` or a path) into ``model``; on success the
    model records what its inputs need (``model.preprocessing``) and, where the file names
    them, its classes (``model.class_names``). On failure the model keeps its weights."""
    if weights in NAMES:
        record = find_weights(variant, include_top, weights)
        downloaded = fetch(record, weights)
        if record.source == "keras":
            _load_keras_file(model, downloaded, variant, include_top)
            model.preprocessing = Preprocessing(record.preprocessing)
            return
        converted = _converted_path(record, downloaded, include_top)
        if os.path.exists(converted):
            _load_keras_file(model, converted, variant, include_top)
            return
        try:
            assign(model, read_source(downloaded), variant)
        except ValueError:  # unreadable or not this variant: do not keep the bad download
            os.remove(downloaded)
            raise
        save_converted(model, converted, variant, downloaded)
        return
    path = os.fspath(weights)
    if path.lower().endswith(SOURCE_SUFFIXES):
        assign(model, read_source(path), variant)
    else:
        _load_keras_file(model, path, variant, include_top)


def file_record(path) -> dict | None:
    """What a Keras weights file says of its weights (``variant``, ``preprocessing``,
    ``class_names``): a converted ``.weights.h5``'s metadata or a ``.keras`` file's VGGModel
    record; None for a plain weights file."""
    path = os.fspath(path)
    if path.lower().endswith(".keras"):
        return read_keras_record(path)
    return read_metadata(path) if path.lower().endswith(".h5") else None


def _load_keras_file(model, path, variant, include_top):
    metadata = file_record(path)
    if metadata is not None and metadata["variant"] not in (None, variant):
        raise ValueError(
            f"The weights file is for {metadata['variant']}, not {variant} (same shapes "
            f"do not make the same network). Received: weights={path!r}"
        )
    _check_widths(model, metadata, path)
    before = model.get_weights()
    try:
        model.load_weights(path)
    except (OSError, ValueError) as error:
        model.set_weights(before)  # Keras may have filled some layers before it failed
        if isinstance(error, OSError):
            raise ValueError(
                f"Could not read the weights file ({error}). Expected a complete Keras weights "
                f"file. Received: weights={path!r}"
            ) from error
        raise ValueError(
            f"The weights file does not fit {model.name} ({variant}, include_top={include_top}): "
            f"{_short_reason(str(error))}. Received: weights={path!r}"
        ) from error
    if metadata is not None:
        model.preprocessing = metadata["preprocessing"]
        model.class_names = metadata["class_names"]


def _check_widths(model, metadata, path):
    """A pruned model's file into a model of other widths: an error saying how to load it."""
    ours = getattr(model, "widths", None)
    theirs = None if metadata is None else metadata.get("widths")
    if metadata is None or (tuple(ours or ()) == tuple(theirs or ())):
        return
    variant = metadata["variant"]
    if theirs is not None:
        raise ValueError(
            f"The weights file holds a pruned {variant} (conv widths {list(theirs)}), not the "
            f"widths of this model ({'the full ones' if ours is None else list(ours)}). Expected "
            f"keras_vgg.load_model({os.fspath(path)!r}), or build_vgg({variant!r}, "
            f"widths={list(theirs)}, weights=...). Received: weights={os.fspath(path)!r}")
    raise ValueError(
        f"The weights file holds a full-width {variant}; this model is pruned to conv widths "
        f"{list(ours)}. Expected a file of a model with those widths. "
        f"Received: weights={os.fspath(path)!r}")


def _short_reason(message: str) -> str:
    """Keras's load error without the dump of variable values: layer name and both shapes."""
    layer = re.search(r"object <\w+ name=([\w.-]+)", message)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", message)
    if layer and shapes:
        return f"layer {layer.group(1)} has shape {shapes.group(1)}, the file {shapes.group(2)}"
    return message.split("\n")[0][:300]


def weights_table() -> str:
    """One line per published file (``keras-vgg weights``): variant, publisher, file,
    preprocessing, accuracy, licence; then each file's URL.

    Example:
        >>> print(weights_table().splitlines()[0].split())
        ['model', 'weights=', 'file', 'top', 'preprocessing', 'top-1', 'top-5', 'licence']
    """
    header = ("model", "weights=", "file", "top", "preprocessing", "top-1", "top-5", "licence")
    rows = [(r.variant, r.source, r.file_name, "yes" if r.has_top else "no", r.preprocessing,
             "-" if r.top1 is None else f"{r.top1:.1f}%",
             "-" if r.top5 is None else f"{r.top5:.1f}%", r.licence) for r in WEIGHTS]
    urls = ["URLs (offline: download elsewhere into ~/.keras/models/, or pass the file's path "
            "as weights):"] + [f"  {r.file_name}  {r.url}" for r in WEIGHTS]
    return "\n".join([format_table(header, rows),
                      "weights='imagenet' loads a variant's first line. top-1/top-5: as "
                      "published (ImageNet val, as the publisher reports it); '-': not "
                      "published.", ""] + urls)
