"""report.html: a tiny real run's page holds its exact figures, its misclassified test images
(capped) and an export table, every picture inlined; headless Chromium renders it."""

import html
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from keras_vgg.cli import main
from keras_vgg.finetune import Recipe, finetune
from keras_vgg.finetune import html_report
from keras_vgg.finetune.report import chance_line
from keras_vgg.stats import Accuracy, accuracy, paired_difference

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser",
                                                    "google-chrome") if shutil.which(name)),
                None)


def tiny(changes=None):
    """32x32, 10 images per class (20 held out for test), one head epoch: most test
    images are misclassified. ``changes``: dotted keys to values on top."""
    values = {"name": "tiny", "data.source": "builtin", "model.name": "vgg11",
              "model.image_size": 32, "data.builtin_images_per_class": 10,
              "data.test_split": 0.35, "data.batch_size": 8, "data.augment": [],
              "phases": [{"epochs": 1, "lr": 1e-3, "freeze": "all"}], "tensorboard": False,
              "early_stopping_patience": 0, "reduce_lr_patience": 0}
    return Recipe().but({**values, **(changes or {})})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("html_report") / "run"
    finetune(tiny(), run_dir=run, verbose=0)
    return run


class Links(HTMLParser):
    """Every <img>'s src and every other tag's src/href in a page."""

    def __init__(self, page):
        super().__init__()
        self.images, self.links = [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "src" and tag == "img":
                self.images.append(value)
            elif name in ("src", "href"):
                self.links.append(value)


def test_the_run_writes_its_report_with_exact_figures_and_mistakes(tiny_run):
    page = (tiny_run / "report.html").read_text()
    final = json.loads((tiny_run / "metrics.json").read_text())["final"]
    test = accuracy(final["test"]["correct"], final["test"]["count"])
    assert test.count == 20 and final["test"] == test.to_json()
    assert f"Test accuracy <b>{html.escape(str(test))}</b>" in page
    validation = accuracy(final["validation"]["correct"], final["validation"]["count"])
    assert f"Validation (it chose the epoch): {html.escape(str(validation))}" in page
    assert "Only 20 test images: the 95% interval spans" in page  # too few to tell
    if final["chance"]["within_chance"]:  # one head epoch from scratch: likely a guess
        assert f'<p class="note">{html.escape(chance_line(final))}</p>' in page
    wrong = test.count - test.correct
    assert wrong > 0  # one head epoch from scratch: images to show
    shown = min(wrong, html_report.SHOWN)
    which = "all are" if shown == wrong else f"the first {shown} are"
    assert f"{wrong} of 20 test images are misclassified; {which} shown" in page
    assert page.count('<div class="card">') == shown
    found = Links(page)
    assert len(found.images) == 2 + 2 * shown  # curves, confusion matrix; image + Grad-CAM
    assert all(src.startswith("data:image/png;base64,") for src in found.images)
    assert found.links == []  # no stylesheet, script or link to fetch
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "<h2>Export" not in page  # the run exported nothing
    assert not list(tiny_run.glob("*.tmp"))  # renamed into place


def test_the_runs_page_is_the_one_written_again_from_its_folder(tiny_run, tmp_path):
    """The run hands its own evaluation (best.keras and its test probabilities) to the page;
    written again from the folder alone (best.keras loaded, the test split scored again),
    the page is the same but for the minute it was written."""
    import re
    import shutil

    again = tmp_path / "run"
    shutil.copytree(tiny_run, again)
    (again / "report.html").unlink()
    html_report.write_html_report(again)

    def page(run):
        text = (run / "report.html").read_text().replace(str(run), "RUN")
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d \S+", "WHEN", text)

    assert page(again) == page(tiny_run)


def test_report_command_caps_the_images_and_shows_an_export_table(tiny_run, tmp_path,
                                                                  monkeypatch, capsys):
    labels = [0] * 10
    row = {"file": "model<int8>.tflite", "quantize": "int8", "size_bytes": 500_000,
           "top1_agreement": 0.9, "accuracy": 0.8, "latency_ms": 0.5,
           "paired_difference": paired_difference(labels, [0] * 9 + [1],
                                                  [0] * 8 + [1, 1]).to_json()}
    export = tmp_path / "exported"
    export.mkdir()
    (export / "export_report.json").write_text(json.dumps({
        "keras": {"latency_ms": 1.25, "accuracy": 0.9,
                  "accuracy_with_ci": accuracy(9, 10).to_json()},
        "exports": [row], "sample": {"images": 10, "source": "given"},
        "image_size": [32, 32], "machine": {"cores": 2}}))
    monkeypatch.setattr(html_report, "SHOWN", 3)
    assert main(["report", str(tiny_run), "--export", str(export)]) == 0
    assert capsys.readouterr().out == f"Wrote {tiny_run / 'report.html'}\n"
    page = (tiny_run / "report.html").read_text()
    test = Accuracy.from_json(json.loads((tiny_run / "metrics.json").read_text())
                              ["final"]["test"])  # its count and correct
    assert f"{test.count - test.correct} of 20 test images are misclassified; the first 3" \
        in page
    assert page.count('<div class="card">') == 3
    assert f"<h2>Export ({html.escape(str(export / 'export_report.json'))})</h2>" in page
    assert "<td>model&lt;int8&gt;.tflite</td>" in page and "model<int8>" not in page
    assert ("model&lt;int8&gt;.tflite vs Keras: +10.0 points (95% CI -20.2 to +40.0) on 10 "
            "images") in page
    assert main(["report", str(tmp_path / "no_run")]) == 2


def test_a_run_without_a_test_split_says_so(tmp_path):
    finetune(tiny({"data.test_split": 0.0}), run_dir=tmp_path / "run", verbose=0)
    page = (tmp_path / "run" / "report.html").read_text()
    assert "No test split: the only figure is the validation split's" in page
    assert "Test accuracy <b>" not in page
    assert "<h2>Misclassified validation images</h2>" in page


def test_headless_chromium_renders_the_page(tiny_run, tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium): the page's "
                    "content is checked by the other tests, not its rendering")
    from PIL import Image

    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1280,2000", (tiny_run / "report.html").as_uri()],
                   check=True, timeout=120, capture_output=True)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 100  # text, plots and pictures, not a blank page
