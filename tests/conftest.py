"""Shared fixtures: nothing downloads, and each test starts with a fresh Keras session."""

import atexit
import contextlib
import functools
import gc
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The built-in dataset (and anything else a test caches) goes to a throwaway Keras home.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="keras_vgg_tests_")
atexit.register(shutil.rmtree, os.environ["KERAS_HOME"], ignore_errors=True)
# tfds' default data dir (read when tensorflow_datasets is imported): nothing a test prepares
# lands in ~/tensorflow_datasets, and nothing already there is read.
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="keras_vgg_tests_tfds_")
atexit.register(shutil.rmtree, os.environ["TFDS_DATA_DIR"], ignore_errors=True)

import keras_vgg  # noqa: E402,F401  (first: TensorFlow loads as a user's would, oneDNN on)
import keras  # noqa: E402
import pytest  # noqa: E402


def _refuse_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to download: get_file{args}")

    monkeypatch.setattr(keras.utils, "get_file", refuse)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", refuse)
    return refuse


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any call of keras.utils.get_file fails loudly: tests never touch the network."""
    return _refuse_downloads(monkeypatch)


@pytest.fixture(scope="session")
def builtin_run(tmp_path_factory):
    """The README's main command, run once: ``(run folder, what it printed)``.

    Several tests read this one trained model (its accuracy, its exports).
    """
    from keras_vgg.cli import main

    root = tmp_path_factory.mktemp("main_command")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        _refuse_downloads(patch)
        patch.chdir(root)
        assert main(["finetune"]) == 0
    keras.backend.clear_session()
    return root / "runs" / "builtin", printed.getvalue()


# The tiny run that the compress, sensitivity and distill tests read (never write): 8 images
# per class of the built-in shapes (4 train, 1 validation, 3 test), batches of 8, 1 epoch.
TINY_RUN_RECIPE = ["phases.0.epochs=1", "data.builtin_images_per_class=8", "tensorboard=false",
                   "data.batch_size=8"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A fine-tuned VGG11-BN run of ``TINY_RUN_RECIPE``, trained once for the session."""
    from keras_vgg.finetune import finetune, load_recipe

    run = tmp_path_factory.mktemp("compress") / "run"
    finetune(load_recipe("builtin", TINY_RUN_RECIPE), run_dir=run, verbose=0)
    keras.backend.clear_session()
    return run


# A full garbage collection every this many tests. keras.backend.clear_session() runs one
# after each test by default: it scanned the whole heap (module fixtures' models, bundles,
# datasets) every time, 2-5 s a test even where the test built nothing. Measured on the
# README's test command at 536f959 (2 cores, with other jobs on the machine): teardowns took
# 1,954 s of line 1's 4,686 s. Python's own collector still runs between these.
COLLECT_EVERY = 50
_finished = iter(range(1, 10**9))


@pytest.fixture(autouse=True)
def fresh_session():
    """Each test starts from Keras's blank global state (layer names, the dtype policy...)."""
    yield
    keras.backend.clear_session(free_memory=False)
    if next(_finished) % COLLECT_EVERY == 0:
        gc.collect()


# --- where a slow test's time went: computing, or waiting --------------------------------

# In CI a line-1 test that takes 6 s alone has taken 25-80 s; beside each slow test's wall
# time, its process's CPU time (every thread's) says whether it computed (CPU near or above
# the wall time) or waited for the cores, a lock or a child (CPU far below). It waited: the
# other line's processes had the cores (docs/development.md, 2026-12-07).
SLOW_S = 20.0
_timed = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import time

    wall, cpu = time.perf_counter(), time.process_time()
    yield
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if wall >= SLOW_S:
        _timed.append((wall, cpu, item.nodeid))


def pytest_terminal_summary(terminalreporter):
    if _timed:
        terminalreporter.write_line(f"tests over {SLOW_S:.0f} s (setup, call and teardown): "
                                    "wall s, this process's CPU s (all threads), test")
        for wall, cpu, nodeid in sorted(_timed, reverse=True):
            terminalreporter.write_line(f"{wall:7.1f} {cpu:7.1f}  {nodeid}")


# --- no network, and a real tfds dataset -------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """No name resolves but the loopback ones: every connection to another host fails at
    once, as on a machine without a network, whether or not this one has one. Returns the
    list of the host names asked for, in order."""
    import socket

    real, asked = socket.getaddrinfo, []

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in (None, "localhost", "127.0.0.1", "::1"):
            return real(host, *args, **kwargs)
        asked.append(name)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


TINY_TFDS_NAME = "keras_vgg_tiny_images"  # the tfds name of the builder below
TINY_TFDS_CLASSES = ["apple", "banana", "cherry"]
TINY_TFDS_COUNTS = {"train": [4, 3, 2], "test": [2, 1, 1]}  # images per class and split
TINY_TFDS_IMAGE = (16, 16)


def tiny_tfds_colour(split, label, index):
    """The solid RGB colour of image ``index`` of class ``label`` in ``split``: red says the
    class, green the index, blue the split."""
    return (40 + 80 * label, 10 + 20 * index, 200 if split == "train" else 100)


@functools.lru_cache(maxsize=None)
def tiny_tfds_builder():
    """The tfds builder class of ``keras_vgg_tiny_images`` (defined, and so registered with
    tfds, once per process). Its ``SOURCE`` is a zip of ``SPLIT/CLASS/N.png`` files, which
    ``_split_generators`` fetches with tfds' download manager (a local file is copied)."""
    import tensorflow_datasets as tfds

    class KerasVggTinyImages(tfds.core.GeneratorBasedBuilder):
        """Tiny solid-colour PNGs: 3 classes, a train and a test split."""

        VERSION = tfds.core.Version("1.0.0")
        SOURCE = None  # set by the tiny_tfds fixtures

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=TINY_TFDS_CLASSES),
                    "file_name": tfds.features.Text(),
                }),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            root = dl_manager.download_and_extract(str(self.SOURCE))
            return {split: self._generate_examples(root / split) for split in TINY_TFDS_COUNTS}

        def _generate_examples(self, folder):
            for path in sorted(folder.glob("*/*.png")):
                key = f"{folder.name}/{path.parent.name}/{path.name}"
                yield key, {"image": path, "label": path.parent.name, "file_name": key}

    return KerasVggTinyImages


@dataclass
class TinyTfds:
    """A real tfds dataset: ``name`` for ``data.source="tfds:NAME"``, and ``data_dir``, the
    folder to give the recipe as its ``data.data_dir``
    (``Recipe().but({"data.data_dir": str(tiny.data_dir), ...})``)."""

    name: str
    data_dir: Path
    classes: list
    counts: dict  # {"train": [per class], "test": [...]}
    image_size: tuple  # (width, height) of every image
    colour: object  # tiny_tfds_colour


@pytest.fixture(scope="session")
def _tiny_tfds_source(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny_tfds_source")
    for split, counts in TINY_TFDS_COUNTS.items():
        for label, (name, n) in enumerate(zip(TINY_TFDS_CLASSES, counts)):
            for index in range(n):
                path = root / "images" / split / name / f"{index}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                colour = tiny_tfds_colour(split, label, index)
                Image.new("RGB", TINY_TFDS_IMAGE, colour).save(path)
    archive = shutil.make_archive(str(root / "tiny_images"), "zip", root / "images")
    tiny_tfds_builder().SOURCE = Path(archive)
    return Path(archive)


def _tiny(data_dir):
    return TinyTfds(TINY_TFDS_NAME, data_dir, list(TINY_TFDS_CLASSES),
                    {k: list(v) for k, v in TINY_TFDS_COUNTS.items()}, TINY_TFDS_IMAGE,
                    tiny_tfds_colour)


@pytest.fixture
def tiny_tfds(tmp_path, _tiny_tfds_source):
    """The tiny tfds dataset, not yet prepared: its ``data_dir`` is a fresh folder, so the
    first load runs tfds' real ``download_and_prepare`` (about a second) into it."""
    return _tiny(tmp_path / "tensorflow_datasets")


@pytest.fixture(scope="session")
def tiny_tfds_prepared(tmp_path_factory, _tiny_tfds_source):
    """The tiny tfds dataset, prepared once for the session: tests only read it."""
    import tensorflow_datasets as tfds

    data_dir = tmp_path_factory.mktemp("tiny_tfds_prepared")
    tfds.builder(TINY_TFDS_NAME, data_dir=str(data_dir)).download_and_prepare()
    return _tiny(data_dir)
