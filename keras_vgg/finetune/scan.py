"""The folder scan: a cheap check of every file, on every core, remembered in a manifest.

A folder of class sub-folders is listed (names, sizes, mtimes: one ``stat`` a file), and each
file gets a cheap check of its header and structure in a thread pool: Pillow identifies it
and reads its header (format, mode, size) without decoding pixels, and a PNG's chunks are
checked against their CRCs (``verify``). The full decode happens once, later, in the input
pipeline (``keras_vgg.finetune.data``), where a file that still fails, such as a JPEG cut
short after a valid header, is skipped and counted.

The result is kept in a manifest (a JSON file under ``$KERAS_HOME/keras_vgg/scans/``, one per
folder) keyed by each file's path, size and mtime: a resume or a second run of an unchanged
folder lists it and checks nothing; a changed or added file is checked again, a removed one
dropped.

Example:
    >>> import tempfile
    >>> from keras_vgg.finetune.builtin import make_shapes
    >>> from keras_vgg.finetune.scan import scan_folder
    >>> scan = scan_folder(make_shapes(tempfile.mkdtemp(), images_per_class=3))
    >>> scan.class_names, len(scan.files), scan.skipped, scan.checked
    (['circle', 'cross', 'square', 'stripes', 'triangle'], 15, [], 15)
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras

from keras_vgg._extras import require

# What tf.io.decode_image reads; other formats are skipped with their name.
DECODABLE = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
MANIFEST_VERSION = 1
PROGRESS_FROM = 2000  # files to check before a progress bar is worth showing


@dataclass
class Scan:
    """A folder's usable images and what was left out, with the reason."""

    class_names: list
    files: list
    labels: list
    skipped: list = field(default_factory=list)  # [(path, reason)]
    converted: list = field(default_factory=list)  # [(path, "L -> RGB")]
    dropped_classes: list = field(default_factory=list)  # [(name, reason)]
    listed: int = 0  # files found (hidden ones left out)
    checked: int = 0  # files checked in this scan (the rest came from the manifest)
    seconds: float = 0.0
    manifest: str | None = None
    sizes: list = field(default_factory=list)  # [(width, height)] per usable file


def check_image(path):
    """(ok, reason, mode) for one file, from its header and structure, decoding no pixels.

    Pillow identifies the file and reads its header; a PNG's chunks are checked against their
    CRCs (a truncated PNG, or one missing its last chunk, fails here). A JPEG cut short after
    its header passes: the pipeline's decode catches it, once, and skips it."""
    return _check(path)[:3]


def _check(path):
    """(ok, reason, mode, width, height)."""
    Image = require("PIL.Image", "finetune", package="pillow")
    try:
        with Image.open(path) as image:
            fmt, mode, (width, height) = image.format, image.mode, image.size
            if fmt == "PNG":
                image.verify()  # chunk CRCs up to IEND: no inflating, no pixels
    except Image.UnidentifiedImageError:
        return False, "not an image", None, 0, 0
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        return False, f"corrupt or truncated ({error})", None, 0, 0
    if fmt not in DECODABLE:
        return False, f"{fmt} images are not readable by tf.io.decode_image", None, 0, 0
    if fmt == "BMP" and mode in ("P", "1"):
        return False, ("BMP with a colour table: tf.io.decode_image would read its palette "
                       "indices as grey levels; save it as PNG"), None, 0, 0
    return True, "", mode, width, height


def list_folder(root):
    """{class folder name: [(path, size, mtime_ns)]} of every non-hidden file, sorted;
    hidden files and folders (a leading dot) are left out at every level."""
    classes = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        files = []
        for folder, dirs, names in os.walk(entry.path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.startswith("."):
                    continue
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue  # a dangling link
                files.append((path, stat.st_size, stat.st_mtime_ns))
        classes[entry.name] = sorted(files, key=lambda item: item[0].split(os.sep))
    return classes


def manifest_path(root, manifest_dir=None) -> Path:
    """Where the manifest of ``root`` lives: ``$KERAS_HOME/keras_vgg/scans/`` unless
    ``manifest_dir`` is given, under a name from the folder's absolute path."""
    if manifest_dir is None:
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        manifest_dir = Path(home) / "keras_vgg" / "scans"
    absolute = os.path.realpath(root)
    digest = hashlib.sha1(absolute.encode()).hexdigest()[:16]
    return Path(manifest_dir) / f"{Path(absolute).name or 'root'}-{digest}.json"


def _read_manifest(path, root) -> dict:
    """{path: (size, mtime_ns, ok, reason, mode, width, height)} from an earlier scan, or {}."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") != MANIFEST_VERSION or data.get("root") != os.path.realpath(root):
        return {}
    return {row[0]: tuple(row[1:]) for row in data.get("files", [])}


def _write_manifest(path, root, rows):
    """Written to a temporary name beside it and renamed: never half a manifest."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": MANIFEST_VERSION, "root": os.path.realpath(root),
                       "files": rows}, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        return None  # a read-only home: the scan still stands, it is only not remembered
    return str(path)


def check_files(paths, workers=None, verbose=0):
    """``_check`` of every path in a thread pool (``workers``: default every core), in order;
    a progress bar when ``verbose`` and the files are many."""
    results = [None] * len(paths)
    if not paths:
        return results
    workers = workers or os.cpu_count() or 1
    bar = keras.utils.Progbar(len(paths), unit_name="file") if (
        verbose and len(paths) >= PROGRESS_FROM) else None
    chunk = max(1, min(256, len(paths) // (workers * 4) or 1))

    def run(start):
        return start, [_check(p) for p in paths[start:start + chunk]]

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for start, checked in pool.map(run, range(0, len(paths), chunk)):
            results[start:start + len(checked)] = checked
            if bar is not None:
                bar.add(len(checked))
    return results


def _sort_into(scan, listing, fresh, known) -> list:
    """Each class's files sorted into ``scan`` (usable, skipped, converted; a class with no
    usable file dropped) by what this scan found (``fresh``) or the manifest kept
    (``known``); returns the manifest's rows."""
    rows = []
    for name, files in listing.items():
        usable = []
        for path, size, mtime in files:
            ok, reason, mode, width, height = fresh[path] if path in fresh else known[path][2:]
            rows.append([path, size, mtime, ok, reason, mode, width, height])
            if not ok:
                scan.skipped.append((path, reason))
                continue
            usable.append(path)
            scan.sizes.append((width, height))
            if mode != "RGB":
                scan.converted.append((path, f"{mode} -> RGB"))
        if not usable:
            scan.dropped_classes.append((name, "no usable images"))
            continue
        scan.files += usable
        scan.labels += [len(scan.class_names)] * len(usable)
        scan.class_names.append(name)
    return rows


def scan_folder(root, manifest=True, manifest_dir=None, workers=None, verbose=0) -> Scan:
    """Class names from the sub-folders of ``root`` (sorted), and every usable image.

    Args:
        root: a folder with one sub-folder of images per class.
        manifest: keep the result (see the module docstring) and reuse what an earlier scan
            found for files whose size and mtime are unchanged.
        manifest_dir: where manifests live (default ``$KERAS_HOME/keras_vgg/scans``).
        workers: threads for the checks (default: every core).
        verbose: 1 prints a progress bar over many files and a line saying what was reused.
    """
    started = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise ValueError(
            f"Expected `data` to be 'builtin', 'tfds:NAME' or a folder of class sub-folders. "
            f"Received: data={str(root)!r} (not a folder)"
        )
    listing = list_folder(root)
    where = manifest_path(root, manifest_dir) if manifest else None
    known = _read_manifest(where, root) if manifest else {}
    every = [item for files in listing.values() for item in files]
    todo = [path for path, size, mtime in every if known.get(path, (None, None))[:2]
            != (size, mtime)]
    fresh = dict(zip(todo, check_files(todo, workers, verbose)))
    scan = Scan([], [], [], listed=len(every), checked=len(todo))
    rows = _sort_into(scan, listing, fresh, known)
    if manifest and (todo or len(known) != len(every)):
        scan.manifest = _write_manifest(where, root, rows)
    elif manifest:
        scan.manifest = str(where)
    scan.seconds = time.perf_counter() - started
    if verbose:
        reused = len(every) - len(todo)
        print(f"Scan: {len(every):,} files in {scan.seconds:.1f} s ({len(todo):,} checked, "
              f"{reused:,} unchanged since the last scan); {len(scan.files):,} usable, "
              f"{len(scan.skipped):,} skipped.", flush=True)
    if len(scan.class_names) < 2:
        found = f"usable classes {scan.class_names}" if scan.class_names else "no usable images"
        detail = f"; skipped {len(scan.skipped)} file(s)" if scan.skipped else ""
        raise ValueError(
            f"Expected a folder with at least two class sub-folders holding images. "
            f"Received: data={str(root)!r} with {found}{detail}."
        )
    return scan
