"""``report.html``: a run folder in one page, to open in any browser.

One self-contained file (pictures inlined as ``data:`` URIs, inline CSS, no script, nothing
fetched): the recipe and data, the test figures with their count and 95% interval (and the
validation's), the training curves, the confusion matrix, the misclassified test images (at
most :data:`SHOWN`, with how many there are in all), each beside its Grad-CAM overlay with
its true class and top-3 classes, and the export table when the run has an export report.
A run writes it at its end; ``keras-vgg report RUN`` writes it again for an existing run.

Example (the figures section of a page):
    >>> from keras_vgg.finetune.html_report import figures_html
    >>> final = {"test": {"correct": 97, "count": 100},
    ...          "validation": {"correct": 20, "count": 20}}
    >>> print(figures_html(final))  # doctest: +ELLIPSIS
    <h2>Test figures</h2>
    <p class="figure">Test accuracy <b>97.0% (97/100 images; 95% CI 91.5%-99.0%)</b></p>
    <p class="note">Only 100 test images: the 95% interval spans 7.4 points, too wide...</p>
    <p>Validation (it chose the epoch): 100.0% (20/20 images; 95% CI 83.9%-100.0%)</p>
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_vgg._extras import require
from keras_vgg.batch_norm import inference_model
from keras_vgg.export.formats import REPORT
from keras_vgg.finetune import data as data_lib
from keras_vgg.finetune import distribute
from keras_vgg.finetune.phase import inference_precision
from keras_vgg.finetune.report import chance_line
from keras_vgg.finetune.run_folder import read_recipe
from keras_vgg.gradcam import grad_cam, overlay
from keras_vgg.run_folder import METRICS, RunFolder
from keras_vgg.saving import load_model, record_of
from keras_vgg.stats import Accuracy, PairedDifference, accuracy

HTML = "report.html"  # the page's name in a run folder
SHOWN = 24  # the most misclassified images the page shows
SIDE = 128  # pixels of each image and overlay on the page
TOP = 3  # classes shown per misclassified image
WIDE = 0.05  # an interval wider than this (5 points) is called wide


@dataclass
class Mistake:
    """One misclassified image: its position in the split, its true class, its top classes
    and scores (the first the predicted one, which the overlay explains), as PNG data URIs."""

    index: int
    true: str
    classes: list
    scores: list
    image: str
    overlay: str


@dataclass
class Mistakes:
    """The misclassified images of ``split``: ``total`` of ``count``, the first ``shown``."""

    split: str
    count: int
    total: int
    shown: list = field(default_factory=list)
    layer: str = ""
    share: bool = False  # a worker's share only (the data is sharded)


@dataclass(frozen=True)
class Scored:
    """What a run's evaluation already computed, handed to its report: ``model`` (best.keras,
    loaded) and its class probabilities on ``split`` ("test" or "val", this worker's share
    as the pipeline gives it), so the report neither loads nor predicts again."""

    model: object
    split: str
    probabilities: np.ndarray


def write_html_report(run_dir, export_report=None, splits=None, recipe=None,
                      scored: Scored | None = None) -> Path:
    """Writes ``run_dir/report.html`` (beside and renamed into place) and returns its path.

    Args:
        run_dir: a run folder holding metrics.json and best.keras.
        export_report: an export_report.json to show (``keras-vgg export RUN -o DIR`` writes
            DIR/export_report.json); default the run's own ``export/``, when it has one.
        splits, recipe: the run's loaded data and recipe (a run passes its own); default
            recipe.json's, loaded again.
        scored: the run's own evaluation of best.keras (a run passes its own); default
            best.keras loaded and scored again.
    """
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if not folder.metrics.is_file():
        raise ValueError(f"Expected a finished run folder holding {METRICS}. Received: "
                         f"run_dir={str(run_dir)!r}")
    metrics = json.loads(folder.metrics.read_text())
    if recipe is None:
        recipe = read_recipe(folder)
    exported = _export_report(run_dir, export_report)
    mistakes = find_mistakes(run_dir, recipe, splits, scored=scored)
    page = render(run_dir, recipe, metrics, mistakes, exported)
    path, tmp = run_dir / HTML, run_dir / f".{HTML}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _export_report(run_dir, given):
    """(path, report) of the export report to show, or None when there is none."""
    path = Path(given) if given is not None else run_dir / "export" / REPORT
    if path.is_dir():
        path = path / REPORT
    if not path.is_file():
        if given is not None:
            raise ValueError(f"Expected an export folder or its {REPORT}. Received: "
                             f"export_report={str(given)!r}")
        return None
    return path, json.loads(path.read_text())


def find_mistakes(run_dir, recipe, splits=None, shown=None,
                  scored: Scored | None = None) -> Mistakes:
    """The misclassified images of the test split (else the validation split) as the run
    scored them (best.keras in the run's inference precision, the same pipeline; ``scored``:
    that evaluation, reused), the first ``shown`` (default :data:`SHOWN`) with their
    Grad-CAM overlays."""
    shown = SHOWN if shown is None else shown
    if splits is None:
        splits = data_lib.decode_once(data_lib.load_data(recipe))
    split = "test" if splits.test is not None else "val"
    labels = splits.counted(split)
    if scored is not None and scored.split == split:
        model, probabilities = scored.model, scored.probabilities[:len(labels)]
    else:
        model = load_model(run_dir, compile=False)
        probabilities = _scored(model, recipe, splits, split)[:len(labels)]
    mode = record_of(model)["preprocessing"]
    wrong = np.flatnonzero(probabilities.argmax(-1) != labels)
    found = Mistakes(split, len(labels), len(wrong), share=splits.shard is not None)
    picked = wrong[:shown]
    if not len(picked):
        return found
    pixels = _pixels(getattr(splits, split), picked)
    cam = grad_cam(model, pixels, classes=probabilities[picked].argmax(-1),
                   preprocessing=mode)
    names = splits.class_names
    for i, image, heatmap in zip(picked, pixels, cam.heatmaps):
        top = np.argsort(-probabilities[i], kind="stable")[:TOP]
        found.shown.append(Mistake(int(i), names[labels[i]], [names[j] for j in top],
                                   [float(probabilities[i][j]) for j in top],
                                   png_uri(image), png_uri(overlay(image, heatmap))))
    found.layer = cam.layer
    return found


def _scored(model, recipe, splits, split) -> np.ndarray:
    """``model``'s class probabilities on ``split``, as the run's evaluation computes them."""
    fast = inference_model(model, inference_precision(recipe))  # as evaluate_run
    mode = record_of(model)["preprocessing"]
    with distribute.one_device():  # every image, as the run's evaluation sees them
        return fast.predict(data_lib.eval_pipeline(getattr(splits, split), recipe, mode),
                            verbose=0)


def _pixels(ds, indices) -> np.ndarray:
    """The uint8 images at ``indices`` (sorted) of an unbatched split."""
    batches = ds.take(int(indices[-1]) + 1).map(data_lib.plain(lambda x, *_: x)).batch(256)
    return np.concatenate(list(batches.as_numpy_iterator()))[np.asarray(indices)]


def png_uri(pixels, side=SIDE) -> str:
    """uint8 RGB pixels as a PNG ``data:`` URI, scaled so the longer side is ``side``."""
    Image = require("PIL.Image", "finetune", package="pillow")
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    scale = side / max(image.size)
    image = image.resize((max(1, round(image.width * scale)),
                          max(1, round(image.height * scale))), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_uri(path) -> str | None:
    """A PNG file as a ``data:`` URI, None when it is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _e(value) -> str:
    return html.escape(str(value), quote=True)


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1d2430; background: #f4f6f9; margin: 0; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
section { background: #fff; border: 1px solid #dde3ea; border-radius: 8px;
          padding: 6px 22px 18px; margin: 18px 0; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 16px 0 10px; }
.meta { color: #566173; margin: 0; } .meta b { color: #1d2430; font-weight: 600; }
.figure { font-size: 20px; margin: 6px 0; }
.note { background: #fff6e0; border-left: 4px solid #e5a50a; padding: 6px 10px; }
table { border-collapse: collapse; margin: 6px 0; font-size: 14px; }
th, td { padding: 4px 12px; border-bottom: 1px solid #e4e8ee; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f3f7; }
img.plot { max-width: 100%; height: auto; }
.row { display: flex; flex-wrap: wrap; gap: 0 18px; }
.row > section { flex: 1 1 440px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
        gap: 14px; }
.card { border: 1px solid #dde3ea; border-radius: 6px; padding: 10px; }
.card img { width: 128px; height: 128px; image-rendering: auto; margin-right: 6px; }
.card p { margin: 4px 0; font-size: 14px; }
.bar { display: inline-block; height: 9px; background: #4a7bd0; vertical-align: middle;
       margin-right: 6px; }
.bar.wrong { background: #d0534a; } .bar.right { background: #2e9b50; }
.true { color: #217a3c; font-weight: 600; } .pred { color: #b3322a; font-weight: 600; }
ul.notes { padding-left: 20px; } ul.notes li { margin: 3px 0; }
"""


def render(run_dir, recipe, metrics, mistakes, exported) -> str:
    """The whole page."""
    final = metrics["final"]
    figures = (f"{figures_html(final)}\n{per_class_html(metrics, final)}",
               _picture_html("Confusion matrix", run_dir / "confusion_matrix.png",
                             f"rows: true class, columns: predicted ({final['reported']} "
                             "split)"))
    trained = sum(1 for phase in recipe.phases if phase.epochs)
    dashed = " (dashed lines: where a phase starts)" if trained > 1 else ""
    sections = [_section(header_html(run_dir, recipe, metrics)),
                "<div class=\"row\">\n" + "\n".join(map(_section, figures)) + "\n</div>",
                _section(_picture_html("Training curves", run_dir / "history.png",
                                       "loss and accuracy per epoch, training and "
                                       "validation" + dashed)),
                _section(mistakes_html(mistakes))]
    if exported is not None:
        sections.append(_section(export_html(*exported, run_dir)))
    body = "\n".join(sections)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(recipe.name)}: run report</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def _section(part) -> str:
    return f"<section>\n{part}\n</section>"


def header_html(run_dir, recipe, metrics) -> str:
    """The run's name, recipe, model, data and date."""
    final = metrics["final"]
    data_file = RunFolder(run_dir).data_report
    data = json.loads(data_file.read_text()) if data_file.is_file() else {}
    counts = ", ".join(f"{sum(data[f'{s}_counts']):,} {name}" for s, name in
                       (("train", "train"), ("val", "validation"), ("test", "test"))
                       if f"{s}_counts" in data)
    written = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    rows = [("Run", f"{run_dir.resolve()}"),
            ("Recipe", f"{recipe.name}, seed {recipe.seed}"),
            ("Model", f"{recipe.model.name} ({recipe.model.head} head), weights "
                      f"{recipe.model.weights or 'none (from scratch)'}, {recipe.model.image_size}x"
                      f"{recipe.model.image_size}, trained in {final.get('trained_in', '?')}, "
                      f"evaluated in {final.get('evaluated_in', '?')}"),
            ("Data", f"{data.get('source', recipe.data.source)}: "
                     f"{len(final['class_names'])} classes" + (f"; {counts} images"
                                                               if counts else "")),
            ("Training", f"{final['epochs_run']} epochs, best.keras from epoch "
                         f"{final['best_epoch']}, {metrics.get('seconds', 0):.0f} s"),
            ("Written", written)]
    lines = "\n".join(f"<p class=\"meta\"><b>{_e(k)}:</b> {_e(v)}</p>" for k, v in rows)
    return f"<h1>Run report: {_e(recipe.name)}</h1>\n{lines}"


def figures_html(final) -> str:
    """The test figure with its count and interval (or why there is none), and the
    validation's."""
    validation = _figure(final["validation"])
    lines = ["<h2>Test figures</h2>"]
    if final.get("test"):
        test = _figure(final["test"])
        lines.append(f"<p class=\"figure\">Test accuracy <b>{_e(test)}</b></p>")
        if test.high - test.low > WIDE:
            lines.append(f"<p class=\"note\">Only {test.count:,} test images: the 95% "
                         f"interval spans {(test.high - test.low) * 100:.1f} points, too "
                         "wide to tell close models apart (hold out more images: "
                         "data.test_split or data.test_data).</p>")
    else:
        lines.append("<p class=\"note\">No test split: the only figure is the validation "
                     "split's, and the same images chose the epoch, so it is biased upwards "
                     "(set data.test_split or data.test_data).</p>")
    if final.get("chance", {}).get("within_chance"):
        lines.append(f"<p class=\"note\">{_e(chance_line(final))}</p>")
    lines.append(f"<p>Validation (it chose the epoch): {_e(validation)}</p>")
    return "\n".join(lines)


def _figure(record) -> Accuracy:
    """A metrics.json figure, its interval computed afresh (as the run's summary prints it;
    the file rounds it to 6 places)."""
    return accuracy(record["correct"], record["count"])


def per_class_html(metrics, final) -> str:
    """Precision, recall, F1 and support per class on the reported split."""
    header = "".join(f"<th class=\"n\">{h}</th>" for h in ("precision", "recall", "F1",
                                                             "images"))
    rows = "\n".join(
        f"<tr><td>{_e(name)}</td><td class=\"n\">{f['precision']:.1%}</td>"
        f"<td class=\"n\">{f['recall']:.1%}</td><td class=\"n\">{f['f1']:.3f}</td>"
        f"<td class=\"n\">{f['support']:,}</td></tr>"
        for name, f in metrics["per_class"].items())
    return (f"<h2>Per class ({_e(final['reported'])} split)</h2>\n"
            f"<table>\n<tr><th>class</th>{header}</tr>\n{rows}\n</table>")


def _picture_html(title, path, caption) -> str:
    uri = file_uri(path)
    if uri is None:
        return f"<h2>{_e(title)}</h2>\n<p class=\"note\">{_e(path.name)} is missing.</p>"
    return (f"<h2>{_e(title)}</h2>\n<img class=\"plot\" src=\"{uri}\" alt=\"{_e(title)}\">\n"
            f"<p class=\"meta\">{_e(caption)}</p>")


def mistakes_html(mistakes: Mistakes) -> str:
    """The misclassified images as cards: image, overlay, true class, top classes."""
    name = "test" if mistakes.split == "test" else "validation"
    title = f"<h2>Misclassified {name} images</h2>"
    if mistakes.total == 0:
        return f"{title}\n<p>None: all {mistakes.count:,} {name} images are right.</p>"
    share = " (this worker's share of the data)" if mistakes.share else ""
    which = "all are" if len(mistakes.shown) == mistakes.total else \
        f"the first {len(mistakes.shown)} are"
    intro = (f"<p>{mistakes.total:,} of {mistakes.count:,} {name} images are misclassified"
             f"{share}; {which} shown, in the split's order. "
             f"Each image is beside its Grad-CAM (at {_e(mistakes.layer)}) of the predicted "
             "class.</p>")
    cards = "\n".join(_card(m) for m in mistakes.shown)
    return f"{title}\n{intro}\n<div class=\"grid\">\n{cards}\n</div>"


def _card(m: Mistake) -> str:
    scores = "".join(
        f"<p><span class=\"bar{_bar(i, c == m.true)}\" style=\"width:{score * 90:.0f}px\">"
        f"</span>{_e(c)} {score:.1%}</p>"
        for i, (c, score) in enumerate(zip(m.classes, m.scores)))
    return (f"<div class=\"card\"><img src=\"{m.image}\" alt=\"image {m.index}\">"
            f"<img src=\"{m.overlay}\" alt=\"Grad-CAM of {_e(m.classes[0])}\">\n"
            f"<p>#{m.index}: true <span class=\"true\">{_e(m.true)}</span>, predicted "
            f"<span class=\"pred\">{_e(m.classes[0])}</span></p>\n{scores}</div>")


def _bar(rank, true) -> str:
    """A score bar's colour: green for the true class, red for the (wrong) predicted one."""
    return " right" if true else " wrong" if rank == 0 else ""


def export_html(path, report, run_dir) -> str:
    """The export report's table and notes."""
    header = ("file", "mode", "size MB", "top-1 agree", "accuracy", "ms/image")
    keras_row = report["keras"]
    rows = [("keras", "", "", "", _pct(keras_row.get("accuracy")),
             f"{keras_row['latency_ms']:.2f}")]
    for r in report["exports"]:
        mode = r["quantize"] or r.get("precision", "float32")  # SavedModel: no quantize
        rows.append((r["file"], "float32" if mode == "none" else mode,
                     f"{r['size_bytes'] / 1e6:.2f}", _pct(r.get("top1_agreement")),
                     _pct(r.get("accuracy")), f"{r['latency_ms']:.2f}"))
    head = "".join(f"<th{NUMBER if i > 1 else ''}>{_e(h)}</th>" for i, h in enumerate(header))
    body = "\n".join("<tr>" + "".join(f"<td{NUMBER if i > 1 else ''}>{_e(c)}</td>"
                                      for i, c in enumerate(row)) + "</tr>" for row in rows)
    sample = report["sample"]
    notes = [f"Checked on {sample['images']:,} {sample['source']} images at "
             f"{report['image_size'][0]}x{report['image_size'][1]}; latency is the median "
             f"per image (batch 1) on {report['machine']['cores']} CPU cores."]
    if "accuracy_with_ci" in keras_row:
        notes.append(f"Keras on the sample: {Accuracy.from_json(keras_row['accuracy_with_ci'])}.")
    notes += [f"{r['file']} vs Keras: {PairedDifference.from_json(r['paired_difference'])}."
              for r in report["exports"] if "paired_difference" in r]
    where = os.path.relpath(path, run_dir) if path.is_relative_to(run_dir) else str(path)
    items = "\n".join(f"<li>{_e(n)}</li>" for n in notes)
    return (f"<h2>Export ({_e(where)})</h2>\n<table>\n<tr>{head}</tr>\n{body}\n</table>\n"
            f"<ul class=\"notes\">\n{items}\n</ul>")


NUMBER = ' class="n"'  # a right-aligned table cell


def _pct(value) -> str:
    return "" if value is None else f"{value:.1%}"
