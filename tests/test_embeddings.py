"""Embeddings for retrieval: neighbours of the built-in shapes, batching, the .npz file,
``keras-vgg embed`` and ``keras-vgg nearest``.

The tests marked ``backend`` also run under jax and torch in CI.
"""

import os
import sys

import numpy as np
import pytest

import keras_vgg
from keras_vgg import VGG11
from keras_vgg.cli import main
from keras_vgg.embeddings import Embeddings, embed, nearest
from keras_vgg.inference.embed import embed_files, nearest_files
from keras_vgg.finetune.builtin import make_shapes
from shapes_classifier import trained_shapes_classifier


def pixels(n=5, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_nearest_neighbours_of_the_shapes_share_their_class(builtin_run):
    """The shapes classifier's VGG (the main job's best.keras, nested: embeddings come from
    its base), the default layer (block5_pool, average-pooled): for each of the 100 held-out
    images, is its nearest other image of the same shape? Measured: 97% (chance: 19%), with
    the main job's model as with a classifier trained for this test alone. Asserted: >= 80%."""
    model, images, labels = trained_shapes_classifier(builtin_run)
    vectors = embed(model, images, batch_size=32, verbose=0)
    indices, _ = nearest(vectors, vectors, k=2)
    assert (indices[:, 0] == np.arange(len(images))).all()  # each image is its own nearest
    agreement = (labels[indices[:, 1]] == labels).mean()
    print(f"nearest other image of the same class: {agreement:.0%}")
    assert agreement >= 0.8


@pytest.mark.backend
def test_embeddings_are_unit_vectors_the_same_in_any_batch_size(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # the bar shows on a terminal
    model = VGG11(include_top=False, input_shape=(32, 32, 3))
    images = pixels()
    whole = embed(model, images, batch_size=5, precision="float32", preprocessing="caffe",
                  verbose=0)
    batched = embed(model, list(images), batch_size=2, precision="float32",
                    preprocessing="caffe", verbose=1)
    assert whole.shape == (5, 512) and whole.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(batched, whole, atol=1e-5)
    assert "5/5" in capsys.readouterr().out  # the progress bar
    one = embed(model, images[2], precision="float32", preprocessing="caffe", verbose=0)
    np.testing.assert_allclose(one, whole[2:3], atol=1e-5)  # one image (H, W, 3)
    fc2 = embed(VGG11(input_shape=(32, 32, 3), classes=3, adaptive_pool=1), images,
                layer="fc2", preprocessing="caffe", precision="float32", verbose=0)
    assert fc2.shape == (5, 4096)


def test_fast_precision_gives_the_same_neighbours():
    """bfloat16 (what ``auto`` picks on CPUs with AMX) against float32: cosine >= 0.99."""
    model = VGG11(include_top=False, input_shape=(32, 32, 3))
    images = pixels(seed=1)
    exact = embed(model, images, precision="float32", preprocessing="caffe", verbose=0)
    fast = embed(model, images, precision="bfloat16", preprocessing="caffe", verbose=0)
    assert (np.sum(exact * fast, axis=1) >= 0.99).all()


@pytest.mark.backend
def test_nearest_is_cosine_best_first():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]])
    indices, scores = nearest(vectors, [2.0, 0.1], k=3)
    assert indices.tolist() == [[0, 2, 1]]
    expected = [np.dot([2.0, 0.1], v) / np.linalg.norm([2.0, 0.1]) / np.linalg.norm(v)
                for v in vectors[[0, 2, 1]]]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"Expected `k` to be an int in \[1, 4\]. Received: k=5"):
        nearest(vectors, [1.0, 0.0], k=5)
    with pytest.raises(ValueError, match=r"Expected `queries` of shape \(C,\) or \(Q, C\) with C=2"):
        nearest(vectors, [1.0, 0.0, 0.0])


@pytest.mark.backend
def test_bad_input_names_the_argument_and_what_was_received():
    model = VGG11(include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(ValueError) as error:
        embed(model, pixels(), layer="block6_pool", preprocessing="caffe", verbose=0)
    assert ("Expected `layer` to name a layer of vgg11, one of ['block1_conv1', 'block1_pool', "
            in str(error.value) and "Received: layer='block6_pool'" in str(error.value))
    with pytest.raises(ValueError, match=r"Received: images=an array of shape \(32, 32\)"):
        embed(model, [np.zeros((32, 32))], preprocessing="caffe", verbose=0)
    too_bright = pixels().astype("int32")
    too_bright[0, 0, 0, 0] = 300
    with pytest.raises(ValueError, match=r"Received: images=values in \[0, 300\]"):
        embed(model, too_bright, preprocessing="caffe", verbose=0)
    with pytest.raises(ValueError, match="Expected `batch_size` to be an int >= 1"):
        embed(model, pixels(), batch_size=0, preprocessing="caffe", verbose=0)
    with pytest.raises(ValueError, match="does not record its preprocessing"):
        embed(model, pixels(), verbose=0)


@pytest.fixture
def shapes_and_model(tmp_path):
    """Ten built-in shape PNGs (64x64) and a small headless VGG saved as .keras."""
    folder = make_shapes(tmp_path / "shapes", images_per_class=2)
    model = VGG11(include_top=False, input_shape=(32, 32, 3))
    model.preprocessing = "torch"
    path = tmp_path / "vgg11.keras"
    model.save(path)
    return folder, path


def test_embed_and_nearest_commands(shapes_and_model, tmp_path, capsys, monkeypatch):
    folder, model = shapes_and_model
    out = tmp_path / "embeddings.npz"
    assert main(["embed", str(model), str(folder), "-o", str(out), "--batch-size", "4"]) == 0
    assert "Wrote" in capsys.readouterr().out
    saved = Embeddings.load(out)
    assert saved.vectors.shape == (10, 512) and saved.layer == "block5_pool"
    assert saved.model == str(model) and saved.names[0].endswith("circle/circle_0000.png")
    query = saved.names[3]
    assert main(["nearest", str(out), query, "-k", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{query}: ") and line.count(".png ") == 3
    assert line.split(": ", 1)[1].count(query) == 0  # not its own neighbour
    # the same file named relative to the working folder is found in the file too
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(query)
    assert main(["nearest", str(out), relative, "-k", "9"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{relative}: ") and query not in line and line.count(".png ") == 9
    # a query not in the file is embedded by the model the file records
    outside = tmp_path / "outside.png"
    outside.write_bytes((folder / "square" / "square_0001.png").read_bytes())
    assert main(["nearest", str(out), str(outside), "-k", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith(
        f"{folder / 'square' / 'square_0001.png'} 1.000")
    # an existing file stays as it is without --overwrite
    assert main(["embed", str(model), str(folder), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_embed_writes_nothing_when_anything_is_wrong(shapes_and_model, tmp_path, capsys):
    folder, model = shapes_and_model
    out = tmp_path / "embeddings.npz"
    assert main(["embed", str(model), str(folder), "-o", str(out), "--layer", "fc1"]) == 2
    assert "Expected `layer` to name a layer of vgg11" in capsys.readouterr().err
    (folder / "circle" / "zz_broken.png").write_bytes(b"not a png")  # alone: an error
    assert main(["embed", str(model), str(folder / "circle" / "zz_broken.png"),
                 "-o", str(out)]) == 2
    assert "Could not read" in capsys.readouterr().err
    assert main(["embed", "no_such_model", str(folder), "-o", str(out)]) == 2
    assert ("Expected `model` to be a .keras file, a run folder or a variant name"
            in capsys.readouterr().err)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_model_in_memory_is_not_looked_up_by_its_name(shapes_and_model, tmp_path):
    """A file embedded from a model in memory records no model: a query outside it needs
    ``model=`` (not the ImageNet variant its name happens to be)."""
    folder, path = shapes_and_model
    model = keras_vgg.load_model(path)
    saved = embed_files(model, folder, tmp_path / "e.npz", verbose=0)
    assert saved.model == ""
    outside = tmp_path / "outside.png"
    outside.write_bytes((folder / "cross" / "cross_0000.png").read_bytes())
    with pytest.raises(ValueError, match="Expected `model` to embed the queries not in"):
        nearest_files(tmp_path / "e.npz", [str(outside)], k=1)
    [found] = nearest_files(tmp_path / "e.npz", [str(outside)], k=10, model=model)
    assert found.names[0] == str(folder / "cross" / "cross_0000.png") and len(found.names) == 10
    assert found.scores[0] == pytest.approx(1.0, abs=1e-3)


def test_a_variant_name_is_built_with_imagenet_weights(monkeypatch, tmp_path):
    """``embed vgg16 ...`` builds the headless variant with ImageNet weights at 224x224 (here
    the builder is watched, so nothing downloads)."""
    import keras_vgg.inference.embed as module

    asked = []

    def build(name, **kwargs):
        asked.append((name, kwargs))
        model = VGG11(include_top=False, input_shape=(32, 32, 3))
        model.preprocessing = "caffe"
        return model

    monkeypatch.setattr(module, "build_vgg", build)
    folder = tmp_path / "images"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(pixels(1)[0]).save(folder / "a.png")
    saved = embed_files("vgg16", folder, verbose=0)
    assert asked == [("vgg16", {"include_top": False, "weights": "imagenet",
                                "input_shape": (224, 224, 3)})]
    assert saved.model == "vgg16" and saved.vectors.shape == (1, 512)
