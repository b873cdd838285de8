"""Distillation in compress (issue 31 item 1, keras_vgg.finetune.distillation): the pruned
student learns from the unpruned model through Keras's Distiller, by default; --no-distill
fine-tunes on the labels alone; the report says which; the saved model stays a plain VGG; a
killed distilled compress resumes to the weights of one never killed; bad input is named and
writes nothing; and compress runs on every backend (the ``backend`` test)."""

import json
import sys

import keras
import numpy as np
import pytest

import keras_vgg
from keras_vgg.cli import main
from keras_vgg.finetune import compress, finetune, load_recipe
from keras_vgg.finetune.compress import EXPORTS_ELSEWHERE, compared
from keras_vgg.finetune.compress_report import format_compress_report
from keras_vgg.finetune.distillation import (DistillSettings, Teacher, WeightedCrossEntropy,
                                             _KeptChannels, _SoftmaxLogits, label_loss,
                                             tapped)
from keras_vgg.finetune.model import build_finetune_model
from keras_vgg.finetune.recipe import Recipe
from keras_vgg.pruning import prune, vgg_base
from keras_vgg.vgg_model import VGGModel
from tests.test_compress import KillInFit, LastWeights

ARGS = dict(flops=0.3, epochs=2, quantize=["none"], verbose=0, max_drop=100)  # 15 images
BLOCKS = ["block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool"]
ON = {"on": True, "temperature": 3.0, "label_weight": 0.5, "logits_weight": 1.0,
      "feature_weight": 1.0, "features": BLOCKS}


@pytest.fixture(scope="module")
def distilled(tiny_run, tmp_path_factory):
    """``(out, report, last)``: the tiny run compressed with the defaults (distilled), never
    interrupted; ``last``: the fit's weights at the end of its last epoch."""
    out = tmp_path_factory.mktemp("distilled") / "small"
    last = LastWeights()
    report = compress(tiny_run, out, callbacks=[last], **ARGS)
    keras.backend.clear_session()
    return out, report, last.fits


def test_distillation_is_on_by_default_and_the_model_saved_is_a_plain_vgg(
        tiny_run, distilled, tmp_path):
    out, report, _ = distilled
    assert report["distillation"] == ON
    settings = json.loads((out / "state.json").read_text())["settings"]
    assert settings["distill"] == {"temperature": 3.0, "feature_weight": 1.0,
                                   "label_weight": 0.5}
    header = (out / "step1" / "training_log.csv").read_text().splitlines()[0].split(",")
    assert {"distillation_loss", "student_loss", "val_accuracy"} <= set(header)
    labels_only = compress(tiny_run, tmp_path / "labels", distill=False, **ARGS)
    assert labels_only["distillation"] == {"on": False}
    # labels only is recorded as a compress before distillation recorded it (no key)
    assert "distill" not in json.loads((tmp_path / "labels" / "state.json").read_text()
                                       )["settings"]
    assert "distillation_loss" not in (tmp_path / "labels" / "step1" / "training_log.csv"
                                       ).read_text().splitlines()[0]
    assert "Fine-tuned on the labels alone (no distillation)." in format_compress_report(
        labels_only)
    assert "Distilled from the unpruned model: loss = 0.5 x labels + 0.5 x (the class " \
        "scores at temperature 3, weight 1; 1 on the block outputs block1_pool" in " ".join(
            format_compress_report(report).split())
    small, plain = (keras.saving.load_model(path / "best.keras", safe_mode=True)
                    for path in (out, tmp_path / "labels"))
    assert type(small) is VGGModel and small.widths == tuple(report["widths"]["after"])
    assert [layer.name for layer in small.layers] == [layer.name for layer in plain.layers]
    assert [w.path for w in small.weights] == [w.path for w in plain.weights]
    assert small.get_layer("base").widths == tuple(report["widths"]["after"])
    assert not any(np.array_equal(a, b) for a, b in zip(
        small.get_layer("head").get_weights(), plain.get_layer("head").get_weights()))
    # the two compresses of one run, paired image by image on its 15 test images
    assert compared(out, tmp_path / "labels").count == 15
    assert report["before_minus_after"]["first"] == labels_only["before_minus_after"]["first"]


def test_a_killed_distilled_compress_resumes_to_the_weights_of_one_never_killed(
        tiny_run, distilled, tmp_path):
    """Killed at batch 1 of epoch 1: the resumed compress restores the Distiller's epoch-0
    backup (student, teacher, optimizer) and ends, to the bit, as the one never killed."""
    out = tmp_path / "small"
    with pytest.raises(KeyboardInterrupt):
        compress(tiny_run, out, callbacks=[KillInFit(fit=1, epoch=1, batch=1)], **ARGS)
    with pytest.raises(ValueError, match=r"keeps its settings"):
        compress(tiny_run, out, resume=True, distill=False, **ARGS)
    with pytest.raises(ValueError, match=r"keeps its settings"):
        compress(tiny_run, out, resume=True, temperature=4.0, **ARGS)
    last = LastWeights()
    report = compress(tiny_run, out, resume=True, callbacks=[last], **ARGS)
    reference, expected, uninterrupted = distilled
    log = (out / "step1" / "training_log.csv").read_text().splitlines()
    assert log == (reference / "step1" / "training_log.csv").read_text().splitlines()
    (resumed,) = last.fits
    assert len(resumed) == len(uninterrupted[0])
    for a, b in zip(resumed, uninterrupted[0]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(keras_vgg.load_model(out / "best.keras").weights,
                    keras_vgg.load_model(reference / "best.keras").weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    for key in ("accuracy", "before_minus_after", "distillation"):
        assert report[key] == expected[key], key


def test_each_student_block_output_is_compared_with_the_teacher_channels_it_came_from():
    """Two pruning steps: block 1's output of the twice-pruned student, before any training,
    is the teacher's block 1 output at the channels followed back through both steps (a
    pruned conv's filters are the teacher's own); the feature loss there is 0."""
    keras.utils.set_random_seed(0)
    recipe = Recipe().but({"model.name": "vgg11", "model.image_size": 32})
    teacher = build_finetune_model(recipe, num_classes=3)
    first = prune(teacher, widths=(40, 80, 160, 160, 320, 320, 320, 320))
    second = prune(first, widths=(20, 40, 80, 80, 160, 160, 160, 160))
    settings = DistillSettings(temperature=3.0, feature_weight=1.0)
    step = Teacher.of(teacher, settings).after(teacher, first.widths).after(first, second.widths)
    taps = step.taps()
    assert list(taps) == BLOCKS and [len(taps[b]) for b in BLOCKS] == [20, 40, 80, 160, 160]
    assert set(taps["block1_pool"]) < set(range(64)) and len(set(taps["block1_pool"])) == 20
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    theirs = tapped(teacher, ["block1_pool"])(images)["block1_pool"]
    ours = tapped(second, ["block1_pool"])(images)["block1_pool"]
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs)[..., taps["block1_pool"]],
                               rtol=1e-5, atol=1e-6)
    loss = _KeptChannels("block1_pool", taps["block1_pool"]).compute_loss(theirs, ours)
    assert float(loss) < 1e-9
    distiller = step.distiller(second, {0: 1.0, 1: 2.0, 2: 0.5})
    assert distiller.student is second and distiller.teacher is teacher
    assert distiller.distillation_loss_weights == [1.0] + [0.2] * 5


def test_the_student_runs_once_a_step_and_its_batch_norm_updates_once():
    """Keras's Distiller runs the student for its predictions and again for its block
    outputs; ours keeps the block outputs of the one pass. One train step traces the
    student's forward once, and its BN moving means move as one plain training step moves
    them (a second pass would update them twice)."""
    keras.utils.set_random_seed(0)
    recipe = Recipe().but({"model.name": "vgg11_bn", "model.image_size": 32})
    teacher = build_finetune_model(recipe, num_classes=3)
    student, plain = prune(teacher, flops=0.5), prune(teacher, flops=0.5)
    step = Teacher.of(teacher, DistillSettings(temperature=3.0, feature_weight=1.0)).after(
        teacher, student.widths)
    distiller = step.distiller(student, None)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=label_loss(None))
    plain.compile(optimizer=keras.optimizers.SGD(0.0), loss=label_loss(None))
    extractor, passes = distiller._student_feature_extractor, []
    forward = extractor.call
    extractor.call = lambda *args, **kwargs: passes.append(1) or forward(*args, **kwargs)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    labels = np.array([0, 1, 2, 0])
    distiller.train_on_batch(images, labels)
    plain.train_on_batch(images, labels)
    assert len(passes) == 1  # the tapped student: one pass in the traced step
    for name in ("block1_conv1_bn", "block5_conv2_bn"):
        ours, once = (vgg_base(m).get_layer(name) for m in (student, plain))
        assert not np.allclose(np.asarray(ours.moving_mean), 0)
        np.testing.assert_allclose(np.asarray(ours.moving_mean), np.asarray(once.moving_mean),
                                   rtol=1e-5, atol=1e-6)


def test_the_losses_are_what_their_docstrings_say():
    """Exact figures on hand-made outputs: the softened scores' KL x T^2, the block output's
    relative error at the kept channels, and the class-weighted labels as fit weighs them."""
    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], "float32")
    student = np.array([[0.4, 0.4, 0.2], [0.3, 0.3, 0.4]], "float32")
    t = 2.0

    def soft(p):
        z = np.log(p) / t
        return np.exp(z) / np.exp(z).sum(-1, keepdims=True)

    kl = (soft(teacher) * np.log(soft(teacher) / soft(student))).sum(-1).mean() * t * t
    assert float(_SoftmaxLogits(t).compute_loss(teacher, student)) == pytest.approx(kl, 1e-5)
    assert float(_SoftmaxLogits(t).compute_loss(teacher, teacher)) == pytest.approx(0, abs=1e-6)
    block = np.array([1, 2, 3, 4], "float32").reshape(1, 1, 1, 4)
    kept = _KeptChannels("block1_pool", [1, 3])  # teacher channels 2 and 4 against (2, 2)
    assert float(kept.compute_loss(block, np.full((1, 1, 1, 2), 2.0, "float32"))) == \
        pytest.approx((0 + 4) / 2 / ((4 + 16) / 2), 1e-5)
    labels = np.array([0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], "float32")
    weighted = WeightedCrossEntropy({0: 0.75, 1: 1.5})(labels, probabilities)
    fits = keras.losses.SparseCategoricalCrossentropy()(
        labels, probabilities, sample_weight=np.array([0.75, 1.5, 1.5]))
    assert float(weighted) == pytest.approx(float(fits), 1e-6)
    assert float(weighted) == pytest.approx(
        -(0.75 * np.log(0.9) + 1.5 * np.log(0.8) + 1.5 * np.log(0.4)) / 3, 1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"distill": "yes"}, r"Expected `distill` to be True or False. Received: distill='yes'"),
    ({"temperature": 0}, r"`temperature` to be a positive number .*Received: temperature=0$"),
    ({"temperature": -1.5}, r"Received: temperature=-1.5$"),
    ({"temperature": True}, r"Received: temperature=True$"),
    ({"temperature": float("nan")}, r"Received: temperature=nan$"),
])
def test_bad_distillation_arguments_are_named_and_write_nothing(tiny_run, tmp_path, kwargs,
                                                                message):
    with pytest.raises(ValueError, match=message):
        compress(tiny_run, tmp_path / "never", flops=0.5, **kwargs)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("override,message", [
    ("compress.temperature=0", r"Expected `compress.temperature` > 0. Received: "
                               r"compress.temperature=0"),
    ("compress.temperature=-2", r"compress.temperature=-2"),
    ("compress.feature_weight=-1", r"Expected `compress.feature_weight` >= 0. Received: "
                                   r"compress.feature_weight=-1"),
    ("compress.distill=sometimes", r"Expected `compress.distill` to be bool. Received: "
                                   r"compress.distill='sometimes'"),
])
def test_bad_distillation_keys_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_recipe("builtin", [override])
    recipe = load_recipe("builtin", ["compress.distill=false", "compress.temperature=4"])
    assert (recipe.compress.distill, recipe.compress.temperature) == (False, 4)
    assert Recipe().compress.distill is True and Recipe().compress.feature_weight == 1.0


def test_the_command_line_maps_no_distill_and_temperature(tiny_run, tmp_path, capsys,
                                                          monkeypatch):
    module = sys.modules["keras_vgg.finetune.compress"]  # the package's name is the function
    calls = []
    monkeypatch.setattr(module, "compress", lambda *args, **kwargs: calls.append(kwargs))
    for flags, expected in (([], (None, None)), (["--no-distill"], (False, None)),
                            (["--temperature", "5"], (None, 5.0))):
        assert main(["compress", str(tiny_run), "--flops", "0.3", *flags]) == 0
        assert (calls[-1]["distill"], calls[-1]["temperature"]) == expected
    monkeypatch.undo()
    out = tmp_path / "never"
    assert main(["compress", str(tiny_run), "--flops", "0.3", "--temperature", "0",
                 "-o", str(out)]) == 2
    assert "Received: temperature=0.0" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    words = " ".join(capsys.readouterr().out.split())
    assert "--no-distill fine-tune the pruned model on the labels alone" in words
    assert "compress.temperature, 3.0 unless its recipe says" in words


def assert_exports_on_this_backend(report, out):
    """The float32 TFLite file on TensorFlow; elsewhere none, and the report says how to
    export ``out``'s best.keras."""
    if keras.backend.backend() == "tensorflow":
        assert [row["quantize"] for row in report["exports"]] == ["none"]
        assert report["exports_skipped"] is None
    else:
        assert report["exports"] == [] and not (out / "export").exists()
        assert report["exports_skipped"] == EXPORTS_ELSEWHERE.format(
            backend=keras.backend.backend(), model=out / "best.keras")


@pytest.mark.backend
def test_compress_distils_on_this_backend(tmp_path):
    """Prune, distil one epoch, compare, on every backend; the TFLite files only on
    TensorFlow (elsewhere the report says how to export)."""
    from tests.test_backends import tiny

    run = finetune(tiny({"phases.1.epochs": 0}), run_dir=tmp_path / "run", verbose=0).run_dir
    report = compress(run, tmp_path / "small", flops=0.3, epochs=1, quantize=["none"],
                      verbose=0)
    assert report["distillation"] == ON
    assert report["flops"]["after"] <= 0.3 * report["flops"]["before"]
    small = keras.saving.load_model(tmp_path / "small" / "best.keras", safe_mode=True)
    assert type(small) is VGGModel
    assert_exports_on_this_backend(report, tmp_path / "small")


def test_the_benchmark_pairs_the_distilled_and_the_labels_only_pruned_models():
    """benchmarks/compress.py: a row and a sentence for the same pruning fine-tuned on the
    labels alone minus distilled (here 3 images right only when distilled, 1 only without)."""
    from tests.test_benchmarks_report import compress_report, compress_section, paired

    report = compress_report()
    report["labels_only_minus_distilled"] = paired(1050, only_first=1, only_second=3,
                                                   both_wrong=4)
    section = compress_section(report)
    assert "| test accuracy, pruned: labels only / distilled | 99.3% | 99.5% | +0.2 pts (95% " \
        "CI -0.3 to +0.8) |" in section.body.splitlines()
    assert ("The pruned model fine-tuned on the labels alone (--no-distill) minus the distilled "
            "one: -0.2 points (95% CI -0.8 to +0.3) on 1,050 images; 4 changed answer (1 right "
            "only before, 3 right only after).") in " ".join(section.body.split())
    assert "labels only" not in compress_section(compress_report()).body
