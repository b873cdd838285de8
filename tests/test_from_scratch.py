"""`--weights none` on a recipe made for pretrained weights (issue 28): no head-only phase on a
frozen random base, every block trained, settings a CPU can train from scratch, said on the
console and by --dry-run; a run within the interval of chance says so; bad files are named."""

import io
import json
from pathlib import Path

import numpy as np
import pytest

from keras_vgg import cli
from keras_vgg.finetune import Recipe, finetune, load_recipe
from keras_vgg.finetune.builtin import make_shapes
from keras_vgg.finetune.config import FROM_SCRATCH, from_scratch_note
from keras_vgg.finetune.recipe import Phase
from keras_vgg.finetune.data import UNDECODABLE
from keras_vgg.finetune.report import chance, format_run, skipped_files
from keras_vgg.stats import accuracy

NOTE = ("From scratch (model.weights=none): the folder recipe is made for pretrained weights, "
        "so this run trains every block from random weights, with no head-only phase: "
        'model.name="vgg11_bn" model.image_size=64 data.batch_size=16 phases.0.epochs=15 '
        'phases.0.lr=0.001 phases.0.freeze="none" (set any of these keys to choose otherwise).')


def at(values, key):
    """The value at dotted ``key`` in nested ``values``."""
    for part in key.split("."):
        values = values[int(part)] if isinstance(values, list) else values[part]
    return values


def test_weights_none_skips_the_head_only_phase_and_trains_every_block():
    scratch = load_recipe("folder", ["data.source=photos", "model.weights=none"])
    assert scratch.model.weights is None
    assert {key: at(scratch.to_dict(), key) for key in FROM_SCRATCH} == {
        "model.name": "vgg11_bn", "model.image_size": 64, "data.batch_size": 16,
        "phases": [{"epochs": 15, "lr": 1e-3, "freeze": "none", "lora_rank": 0}]}
    assert from_scratch_note("folder", ["data.source=photos", "model.weights=none"]) == NOTE


def test_keys_the_user_gives_are_kept_and_left_out_of_the_note():
    given = ["model.weights=none", "model.name=vgg16", "model.image_size=96",
             "phases.0.epochs=30"]
    recipe = load_recipe("folder", given)
    assert (recipe.model.name, recipe.model.image_size, recipe.phases) == (
        "vgg16", 96, [Phase(epochs=30, lr=1e-3, freeze="none")])
    assert from_scratch_note("folder", given).endswith(
        'no head-only phase: data.batch_size=16 phases.0.lr=0.001 phases.0.freeze="none" '
        "(set any of these keys to choose otherwise).")


def test_nothing_changes_with_pretrained_weights_or_a_from_scratch_recipe():
    assert from_scratch_note("folder", ["data.source=photos"]) == ""
    assert from_scratch_note("builtin", ["model.weights=none"]) == ""
    assert load_recipe("builtin", ["model.weights=none"]) == load_recipe("builtin")
    assert load_recipe("folder").phases[0].epochs == 5


def test_dry_run_shows_the_from_scratch_plan(capsys, tmp_path):
    assert cli.main(["finetune", "--dry-run", "--data", str(tmp_path), "--weights", "none"]) == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert (len(plan["phases"]), plan["phases"][0]["freeze"], plan["model"]["name"]) == (
        1, "none", "vgg11_bn")
    assert captured.err.splitlines()[0] == NOTE


# -- a run that learns nothing says so; its bad files are named ------------------------------


def _photos_with_bad_files(root: Path) -> tuple[Path, tuple[Path, Path]]:
    shapes = make_shapes(root, images_per_class=6)
    (shapes / "circle" / "notes.png").write_text("not a picture")
    jpeg = shapes / "cross" / "cut.jpg"
    from PIL import Image

    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype="uint8")
    Image.fromarray(noise).save(buffer, "JPEG")  # a few KB: half of it holds the header
    jpeg.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # the header passes
    return shapes, (shapes / "circle" / "notes.png", jpeg)


@pytest.fixture(scope="module")
def run_that_learns_nothing(tmp_path_factory):
    root = tmp_path_factory.mktemp("chance")
    photos, bad = _photos_with_bad_files(root / "photos")
    recipe = Recipe.from_dict({
        "name": "chance",
        "data": {"source": str(photos), "batch_size": 8, "augment": [], "test_split": 0.34},
        "model": {"name": "vgg11", "image_size": 32},
        "phases": [{"epochs": 1, "lr": 1e-9, "freeze": "none"}], "tensorboard": False,
        "early_stopping_patience": 0, "reduce_lr_patience": 0})
    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        result = finetune(recipe, run_dir=root / "run", verbose=2)
    return result, bad, out.getvalue()


def test_a_run_within_the_interval_of_chance_says_so(run_that_learns_nothing):
    result, _, _ = run_that_learns_nothing
    final = result.metrics["final"]
    assert final["chance"] == {"rate": 0.2, "within_chance": True}
    assert json.loads((result.run_dir / "metrics.json").read_text())["final"]["chance"] == {
        "rate": 0.2, "within_chance": True}
    lines = format_run(result).splitlines()
    assert lines[1] == (
        f"Test accuracy {final['test']['accuracy']:.1%} is within the interval of chance "
        "(20.0% for 5 classes): the model has learnt nothing; start from pretrained weights "
        "(--weights imagenet), or from scratch give it more images per class and more epochs "
        "(phases.N.epochs), a batch-norm model at a small size (model.name=vgg11_bn "
        "model.image_size=64), "
        "and check that the class folders really differ.")


def test_an_accuracy_above_chance_is_not_flagged():
    assert chance(accuracy(24, 24), 3) == {"rate": 0.333333, "within_chance": False}
    assert chance(accuracy(8, 24), 3) == {"rate": 0.333333, "within_chance": True}


def test_the_console_names_the_skipped_files(run_that_learns_nothing):
    result, (not_an_image, cut), out = run_that_learns_nothing
    assert "Decoded 31 images once in " in out
    assert out.count("; 1 failed to decode and is skipped: ") == 1
    assert f"and is skipped: {cut} (data_report.json)." in out
    data = next(line for line in format_run(result).splitlines() if line.startswith("Data: "))
    assert data == (f"Data: skipped 2 files: {not_an_image} (not an image), {cut} "
                    f"({UNDECODABLE}) (see data_report.json)")


def test_at_most_five_skipped_files_are_named():
    rows = [{"file": f"f{i}.jpg", "reason": "empty"} for i in range(7)]
    assert skipped_files(rows) == ("skipped 7 files: f0.jpg (empty), f1.jpg (empty), "
                                   "f2.jpg (empty), f3.jpg (empty), f4.jpg (empty) and 2 more")
    assert skipped_files(rows[:1]) == "skipped 1 file: f0.jpg (empty)"
    assert skipped_files([]) == ""


def _photo_folder(root: Path, per_class=40) -> Path:
    """A folder like a user's, without a download: 3 classes of smooth colour scenes (each
    class its own palette, blurred noise), at mixed sizes, as JPEGs."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    palettes = {"desert": (200, 160, 90), "forest": (40, 110, 40), "sea": (30, 80, 170)}
    for name, colour in palettes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            w, h = (int(n) for n in rng.integers(120, 420, size=2))
            pixels = rng.normal(colour, 45, size=(h // 8 + 1, w // 8 + 1, 3))
            image = Image.fromarray(pixels.clip(0, 255).astype("uint8")).resize((w, h))
            image.filter(ImageFilter.GaussianBlur(2)).save(root / name / f"{i:03d}.jpg")
    return root


@pytest.mark.slow
def test_the_readmes_from_scratch_command_learns(tmp_path, monkeypatch, capsys):
    """`keras-vgg finetune --data photos/ --weights none` on a small folder of photo-like images
    (40 per class) ends clearly above chance: the interval's low end above 1/3."""
    monkeypatch.chdir(tmp_path)
    photos = _photo_folder(tmp_path / "photos")
    assert cli.main(["finetune", "--data", str(photos), "--weights", "none",
                     "tensorboard=false"]) == 0
    final = json.loads((tmp_path / "runs" / "folder" / "metrics.json").read_text())["final"]
    assert final["chance"] == {"rate": 0.333333, "within_chance": False}
    assert final["test"]["ci95"][0] > 1 / 3
    assert capsys.readouterr().out.splitlines()[0] == NOTE
