"""Every ```python block of README.md and docs/*.md runs, offline and small, and shows what its
comments say, so an example cannot rot.

The blocks of one file run in order, in one namespace (a later block uses what an earlier one
made), in an empty working folder, with conftest's throwaway KERAS_HOME. A block of ``>>>``
lines runs through doctest. A shown value -- ``print(...)``, or a bare expression whose value is
not None -- followed by a comment (on its line, or on the comment lines right under it) must
show exactly that comment (doctest's ``...`` and whitespace rules); a comment that says
something other than the value itself is listed in PROSE with the check it gets instead.

What a block needs and does not make itself is listed, reviewed, below:
- GIVEN: what the test puts in place first (a fine-tuned run folder the README's bash lines
  would make, a photo, arrays a fragment names);
- SERVED: the published weights a block downloads, served from files the test writes (random
  weights of the right shapes; the table's hash made to match them), through the real
  ``weights="imagenet"`` path;
- NOT_RUN: blocks that still cannot run, each with its reason (today: none).
Each list must stay exactly right: an entry that names no block, or a block that needs an entry
and has none, fails.
"""

import ast
import contextlib
import dataclasses
import doctest
import hashlib
import io
import re
import shutil
import tempfile
import tokenize
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg import precision as precision_lib
from keras_vgg import weights as weights_lib

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclasses.dataclass(frozen=True)
class Block:
    doc: str  # README.md, docs/models.md
    line: int  # the line of its first code line in the file
    code: str

    def __str__(self):
        return f"{self.doc}:{self.line}"


def blocks_of(doc: str) -> list:
    text = (ROOT / doc).read_text(encoding="utf-8")
    return [Block(doc, text.count("\n", 0, m.start(1)) + 1, m.group(1))
            for m in FENCE.finditer(text)]


DOCS_WITH_BLOCKS = [doc for doc in DOCS if blocks_of(doc)]


def the_block(doc: str, snippet: str) -> Block:
    """The one block of ``doc`` holding ``snippet`` (an entry of the lists below)."""
    found = [b for b in blocks_of(doc) if snippet in b.code]
    assert len(found) == 1, f"{doc}: {len(found)} python blocks hold {snippet!r}, expected 1"
    return found[0]


# --- what the test puts in place --------------------------------------------------------

# The run the README's and docs' bash lines make with `keras-vgg finetune` (the main job,
# about 140 s) is conftest's session-wide tiny run: the same recipe (VGG11-BN on the built-in
# shapes at 32x32), small and short (one epoch: the examples show what a run folder gives, not
# how good its model is), trained once for every file that reads it.


def _refuse(*args, **kwargs):
    raise AssertionError(f"a docs example tried to download: get_file{args}")


def a_run(folder):
    """A fine-tuned run folder at ``folder`` (a copy of the tiny run)."""
    def put(namespace, request):
        shutil.copytree(request.getfixturevalue("tiny_run"), folder)
    put.__doc__ = f"a fine-tuned run at {folder}"
    return put


def a_photo(name):
    def put(namespace, request):
        from PIL import Image

        from keras_vgg.finetune.builtin import render

        Image.fromarray(render("triangle", np.random.default_rng(0))).save(name)
    put.__doc__ = f"a photo, {name}"
    return put


def an_array(name, expression):
    def put(namespace, request):
        exec(f"{name} = {expression}", namespace)
    put.__doc__ = f"{name} = {expression}"
    return put


IMAGES = "__import__('numpy').random.default_rng(0).integers(0, 256, (6, 48, 48, 3), 'uint8')"
GENERATOR = ("__import__('keras').Sequential([__import__('keras').Input((32, 32, 3)), "
             "__import__('keras').layers.Conv2D(3, 3, padding='same', activation='sigmoid')])")

# (doc, a snippet of the block) -> (what is put in place before it, why)
GIVEN = {
    ("README.md", 'export_run("runs/shapes", "exported/"'): (
        [a_run("runs/shapes"), a_photo("photo.png")],
        "the run the bash block above trains (keras-vgg finetune --run-dir runs/shapes; the "
        "next block loads it too), and a photo"),
    ("docs/export.md", 'keras_vgg.load_model("runs/shapes")'): (
        [a_run("runs/shapes"), a_photo("photo.png")],
        "the run of the page's `keras-vgg finetune --run-dir runs/shapes`, and a photo"),
    ("docs/features.md", "content = PerceptualLoss()"): (
        [an_array("model", GENERATOR)], "`model`: the reader's image-to-image model"),
    ("docs/features.md", 'load_model("runs/builtin")'): (
        [a_run("runs/builtin"), an_array("images", IMAGES)],
        "the main job's run folder (`keras-vgg finetune`), and the reader's `images`"),
}

# (doc, a snippet of the block) -> the published files it downloads: (variant, include_top,
# weights name), as keras_vgg.weights.find_weights takes them.
SERVED = {
    ("docs/features.md", "content = PerceptualLoss()"): [
        ("vgg16", False, "imagenet"), ("vgg19", False, "imagenet")],
    ("docs/weights.md", 'keras_vgg.VGG16(weights="imagenet")'): [
        ("vgg16", True, "imagenet"), ("vgg11_bn", True, "imagenet"), ("vgg_m", False, "imagenet")],
}

# (doc, a snippet of the block) -> why it cannot run here. Reviewed: keep it empty.
NOT_RUN = {}


# --- comments that are not the value itself ------------------------------------------------

def _same_widths(shown, namespace):
    assert shown == str(keras_vgg.plan_widths(namespace["model"], flops=0.25))


def _a_detected_precision(shown, namespace):
    """This machine's own answer; the comment is what a CPU with the flags it names gets."""
    assert shown == str(precision_lib.detect_precision())
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(precision_lib.ENVIRONMENT, raising=False)
        patch.setattr(precision_lib, "cpu_flags", lambda: {"amx_bf16", "avx512_bf16"})
        patch.setattr(precision_lib, "gpu_capability", lambda: None)
        patch.setattr(keras.backend, "backend", lambda: "tensorflow")
        assert str(precision_lib.detect_precision()) == "bfloat16 (CPU with amx_bf16, avx512_bf16)"


def _heatmaps(shown, namespace):
    heatmaps, classes, scores, layer = shown
    n = len(namespace["images"])
    assert heatmaps.shape == (n, 32, 32) and classes.shape == (n,) and len(scores) == n
    assert 0 <= heatmaps.min() and heatmaps.max() <= 1
    assert isinstance(layer, str)


def _decoded_offline(shown, namespace):
    names = {name for _, name in keras_vgg.labels.imagenet_classes()}
    assert [len(row) for row in shown] == [5, 5]
    assert all(name in names for row in shown for _, name, _ in row)


# (doc, comment) -> (the check of the value shown, why the comment is not the value)
PROSE = {
    ("README.md", "1 or 2, runs/try/best.keras"): (
        lambda shown, ns: shown in ("1 runs/try/best.keras", "2 runs/try/best.keras"),
        "either epoch can be the best of a two-epoch toy run"),
    ("docs/compress.md", "recorded in the model and its .keras file"): (
        _same_widths, "the widths planned above"),
    ("docs/precision.md", "bfloat16 (CPU with amx_bf16, avx512_bf16)"): (
        _a_detected_precision, "what `auto` detects depends on the machine"),
    ("docs/models.md", "(6, 6, 256): shapes/params without building"): (
        lambda shown, ns: shown == (6, 6, 256), "the value, then what it shows"),
    ("docs/features.md", "(N, 32, 32) in [0, 1], top classes, ..."): (
        _heatmaps, "shapes and a range for N images"),
    ("docs/weights.md", "offline: the class index ships with us"): (
        _decoded_offline, "says why it runs offline; the value is 2 rows of 5 ImageNet classes"),
}


# --- running a block ---------------------------------------------------------------------------

def comments_by_line(code: str) -> dict:
    """{line: (comment text, whether the line holds only the comment)}, lines from 1."""
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            only = not token.line[:token.start[1]].strip()
            found[token.start[0]] = (token.string[1:].strip(), only)
    return found


def expected_comment(stmt, comments):
    """The comment naming what ``stmt`` shows: on its last line, else the comment lines
    right under it; None without one."""
    text, only = comments.get(stmt.end_lineno, (None, True))
    if not only:
        return text
    lines, line = [], stmt.end_lineno + 1
    while line in comments and comments[line][1]:
        lines.append(comments[line][0])
        line += 1
    return "\n".join(lines) or None


def is_print(stmt):
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "print")


def run_block(block: Block, namespace: dict, checked: set):
    filename = str(ROOT / block.doc)
    if block.code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(block.code, namespace, str(block), filename,
                                                   block.line - 1)
        report = io.StringIO()
        result = doctest.DocTestRunner(optionflags=FLAGS).run(test, out=report.write,
                                                              clear_globs=False)
        namespace.update(test.globs)
        assert result.failed == 0, f"{block}:\n{report.getvalue()}"
        return
    tree = ast.parse(block.code, filename)
    comments = comments_by_line(block.code)
    for stmt in tree.body:
        comment = expected_comment(stmt, comments) if isinstance(stmt, ast.Expr) else None
        line = block.line + stmt.lineno - 1
        ast.increment_lineno(stmt, block.line - 1)
        if isinstance(stmt, ast.Expr) and not is_print(stmt):
            value = eval(compile(ast.Expression(stmt.value), filename, "eval"), namespace)
            shown = value
            text = None if value is None else repr(value)
        else:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(ast.Module([stmt], []), filename, "exec"), namespace)
            shown = text = printed.getvalue().rstrip("\n")
        if comment is None or text is None:
            continue
        key = (block.doc, comment)
        if key in PROSE:
            check, _ = PROSE[key]
            assert check(shown, namespace) in (None, True), (
                f"{block.doc}:{line} shows {text!r}, which its comment ({comment!r}) rules out")
            checked.add(key)
            continue
        assert doctest.OutputChecker().check_output(comment + "\n", text + "\n", FLAGS), (
            f"{block.doc}:{line} shows\n{text}\nbut its comment says\n{comment}")


@contextlib.contextmanager
def served(monkeypatch, folder: Path, wanted):
    """keras.utils.get_file gives a file written here for each record of ``wanted``, and the
    table publishes that file's hash; any other download still fails."""
    files, published = {}, weights_lib.WEIGHTS
    table = list(published)
    for variant, include_top, name in wanted:
        record = weights_lib.find_weights(variant, include_top, name)
        path = write_weights(record, include_top, folder)
        files[record.file_name] = str(path)
        if record.file_hash is not None:
            algorithm = "md5" if record.source == "keras" else "sha256"
            digest = hashlib.new(algorithm, path.read_bytes()).hexdigest()
            table[table.index(record)] = dataclasses.replace(
                record, file_hash=digest[:len(record.file_hash)])
    asked = []

    def get_file(fname, origin, **kwargs):
        asked.append(fname)
        if fname not in files:
            _refuse(fname, origin)
        return files[fname]

    monkeypatch.setattr(weights_lib, "WEIGHTS", tuple(table))
    monkeypatch.setattr(keras.utils, "get_file", get_file)
    try:
        yield
        assert sorted(set(asked)) == sorted(files), "the block downloads what SERVED lists"
    finally:
        monkeypatch.setattr(weights_lib, "WEIGHTS", published)
        monkeypatch.setattr(keras.utils, "get_file", _refuse)
        shutil.rmtree(folder, ignore_errors=True)


def served_folder(tmp_path) -> Path:
    """Where served files are written: a folder in RAM (/dev/shm) where it has room for them
    (weights.md's three files and the library's converted copies: about 2 GB), else on disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 6 << 30:
        return Path(tempfile.mkdtemp(prefix="keras_vgg_docs_", dir=shm))
    return tmp_path / "served"


def write_weights(record, include_top: bool, folder: Path) -> Path:
    """A file of ``record``'s format and shapes, random weights: Keras's .h5 (as
    keras.applications saves it), torchvision's .pth, MatConvNet's .mat (for a headless model
    without the classifier MatConvNet's files also hold: 95M parameters nothing reads)."""
    from test_convert import matconvnet_layers, save_matconvnet, save_state_dict
    from test_convert import torchvision_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / record.file_name
    if record.source == "keras":
        builder = {"vgg16": keras.applications.VGG16, "vgg19": keras.applications.VGG19}
        source = builder[record.variant](weights=None, include_top=record.has_top)
        source.save(path)
        del source
    elif record.source == "torchvision":
        save_state_dict(path, torchvision_state_dict(record.variant, classes=1000))
    else:
        layers = matconvnet_layers(record.variant, record.input_size, classes=1000)
        if not include_top:
            layers = layers[:[layer["name"] for layer in layers].index("fc6")]
        save_matconvnet(path, layers, np.array([[[123.68, 116.779, 103.939]]]),
                        [name for _, name in keras_vgg.labels.imagenet_classes()])
    keras.backend.clear_session()
    return path


# --- the tests -------------------------------------------------------------------------------

@pytest.mark.slow  # three toy runs, five TFLite conversions, full-size VGGs
@pytest.mark.parametrize("doc", DOCS_WITH_BLOCKS)
def test_doc_examples_run_and_show_what_they_say(doc, tmp_path, monkeypatch, request):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace = {"__name__": "__main__"}
    checked = set()
    given = {the_block(*key): steps for key, (steps, _) in GIVEN.items() if key[0] == doc}
    serve = {the_block(*key): wanted for key, wanted in SERVED.items() if key[0] == doc}
    skipped = {the_block(*key) for key in NOT_RUN if key[0] == doc}
    for block in blocks_of(doc):
        if block in skipped:
            continue
        for step in given.get(block, []):
            step(namespace, request)
        with served(monkeypatch, served_folder(tmp_path), serve[block]) if block in serve \
                else contextlib.nullcontext():
            run_block(block, namespace, checked)
    assert checked == {key for key in PROSE if key[0] == doc}, "every PROSE entry is used"


def test_the_lists_name_blocks_that_exist():
    for key in [*GIVEN, *SERVED, *NOT_RUN]:
        the_block(*key)
    assert NOT_RUN == {}  # reviewed: every block runs


def test_the_docs_hold_python_blocks():
    """The finder sees the blocks (a fence it misread would leave a file untested)."""
    counted = {doc: len(blocks_of(doc)) for doc in DOCS}
    fences = {doc: (ROOT / doc).read_text(encoding="utf-8").count("```python") for doc in DOCS}
    assert counted == fences
    assert "README.md" in DOCS_WITH_BLOCKS


@pytest.mark.parametrize("code, shows_what_it_says", [
    ("print(1 + 1)  # 2\n", True),
    ("print(1 + 1)  # 3\n", False),
    ("x = 2\nprint({'a': x})\n# {'a': 2}\n", True),
    ("print({'a': 2})\n# {'a': 3}\n", False),
    ("print(list(range(9)))  # [0, 1, ...]\n", True),
    ("sorted([2, 1])  # [1, 2]\n", True),
    ("sorted([2, 1])  # [2, 1]\n", False),
    ("print(1)\n\n# a comment on what follows, not a shown value\ny = 1\n", True),
    (">>> 1 + 1\n2\n", True),
    (">>> 1 + 1\n3\n", False),
])
def test_the_check_fails_a_comment_that_is_not_what_is_shown(code, shows_what_it_says):
    block = Block("README.md", 1, code)
    if shows_what_it_says:
        run_block(block, {}, set())
    else:
        with pytest.raises(AssertionError):
            run_block(block, {}, set())
