"""The weights table, fetching (hash, cache, conversion once), preprocessing and class names.

Downloads are real ``keras.utils.get_file`` calls on ``file://`` URLs of files written here;
anything else still fails loudly (conftest's ``no_downloads``).
"""

import dataclasses
import hashlib
import os

import keras
import numpy as np
import pytest
import scipy.io
from keras.src.utils.file_utils import get_file as real_get_file  # before conftest patches it

import keras_vgg
from keras_vgg import build_vgg
from keras_vgg import weights as weights_lib
from keras_vgg.convert import ConversionError, convert, read_metadata
from keras_vgg.labels import decode_predictions, imagenet_classes
from keras_vgg.preprocessing import Preprocessing, preprocess_input

SIZE = (32, 32, 3)


@pytest.fixture
def local_downloads(monkeypatch):
    """get_file works for file:// URLs only; returns the list of origins it was asked for."""
    origins = []

    def get_file(fname, origin, **kwargs):
        assert origin.startswith("file://"), f"a test tried to download {origin}"
        origins.append(origin)
        return real_get_file(fname, origin, **kwargs)

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    return origins


def publish(monkeypatch, variant, source, path, file_hash="auto"):
    """Make the table's record for (variant, source) point at a local file."""
    record = weights_lib.find_weights(variant, include_top=True, name=source)
    if file_hash == "auto":
        file_hash = hashlib.sha256(open(path, "rb").read()).hexdigest()[:8]
    url = "file://" + os.path.abspath(path)
    replaced = dataclasses.replace(record, url=url, file_hash=file_hash)
    table = tuple(replaced if r == record else r for r in weights_lib.WEIGHTS)
    monkeypatch.setattr(weights_lib, "WEIGHTS", table)
    return replaced


def cache_dir():
    return os.path.join(os.environ["KERAS_HOME"], "models")  # conftest's throwaway Keras home


def torch_state(variant, seed=0):
    """A torchvision-layout state dict (features only, which a headless model needs), with
    torchvision's module indices (conv, relu; a pool after each block)."""
    rng = np.random.default_rng(seed)
    model = build_vgg(variant, include_top=False, input_shape=SIZE)
    state, index = {}, 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel.shape
            fan_in = kernel[0] * kernel[1] * kernel[2]
            state[f"features.{index}.weight"] = (
                rng.normal(0, np.sqrt(2 / fan_in), (kernel[3], kernel[2], kernel[0], kernel[1]))
            ).astype("float32")
            state[f"features.{index}.bias"] = rng.normal(0, 0.1, kernel[3]).astype("float32")
            index += 2
        elif isinstance(layer, keras.layers.MaxPooling2D):
            index += 1
    return state


def write_pth(path, state):
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    return path


def write_mat(path, variant, size, seed=0, lrn_alpha=1e-4):
    """A MatConvNet SimpleNN file (no fc layers) for ``variant`` at ``size``."""
    rng = np.random.default_rng(seed)
    model = build_vgg(variant, include_top=False, input_shape=(size, size, 3))
    layers = []
    for name, spec in keras_vgg.configs.layer_names(keras_vgg.get_config(variant)):
        if isinstance(spec, keras_vgg.configs.Conv):
            shape = model.get_layer(name).kernel.shape
            layers.append({
                "name": name, "type": "conv",
                "weights": np.array([rng.normal(0, 0.05, shape).astype("float32"),
                                     rng.normal(0, 0.1, (1, shape[3])).astype("float32")],
                                    dtype=object).reshape(1, 2),
                "stride": np.array([spec.stride] * 2, "float64"),
                "pad": np.array([spec.pad] * 4, "float64"),
            })
            layers.append({"name": name + "_relu", "type": "relu"})
        elif isinstance(spec, keras_vgg.configs.LRN):
            param = [2 * spec.depth_radius + 1, spec.bias, lrn_alpha, spec.beta]
            layers.append({"name": name, "type": "lrn", "param": np.array(param)})
        else:
            layers.append({"name": name, "type": "pool", "method": "max",
                           "pool": np.array([spec.size] * 2, "float64"),
                           "stride": np.array([spec.stride] * 2, "float64")})
    cells = np.empty((1, len(layers)), dtype=object)
    for i, layer in enumerate(layers):
        cells[0, i] = layer
    meta = {"normalization": {"averageImage": np.array([[[120.0, 115.0, 100.0]]], "float32")},
            "classes": {"description": np.array([["cat", "dog"]], dtype=object)}}
    scipy.io.savemat(path, {"layers": cells, "meta": meta})
    return path


def leftovers():
    """Everything in the Keras cache's models folder."""
    return sorted(os.listdir(cache_dir())) if os.path.isdir(cache_dir()) else []


# ---------------------------------------------------------------------------------------
# The table


def test_every_published_file_is_in_the_table():
    assert weights_lib.available_weights() == {
        "vgg16": ["keras", "torchvision", "matconvnet"],
        "vgg19": ["keras", "torchvision", "matconvnet"],
        "vgg11": ["torchvision"], "vgg11_bn": ["torchvision"], "vgg13": ["torchvision"],
        "vgg13_bn": ["torchvision"], "vgg16_bn": ["torchvision"], "vgg19_bn": ["torchvision"],
        "vgg_f": ["matconvnet"], "vgg_m": ["matconvnet"], "vgg_s": ["matconvnet"],
        "vgg_m_2048": ["matconvnet"], "vgg_m_1024": ["matconvnet"], "vgg_m_128": ["matconvnet"],
    }


def test_records_say_their_preprocessing_hash_and_licence():
    for record in weights_lib.WEIGHTS:
        assert record.url.startswith("https://") and record.input_size == 224
        assert record.preprocessing == {"keras": "caffe", "torchvision": "torch",
                                        "matconvnet": "mean_image"}[record.source]
        assert record.licence
        if record.source == "torchvision":  # the name carries the sha256 prefix
            assert record.file_name == f"{record.variant}-{record.file_hash}.pth"
            assert 69.0 <= record.top1 <= 74.3 and 88.6 <= record.top5 <= 91.9
        if record.source == "keras":
            assert len(record.file_hash) == 32
        if record.source == "matconvnet":
            assert record.file_hash is None and record.file_name.startswith("imagenet-vgg-")


def test_imagenet_means_the_first_publisher_and_a_name_picks_one():
    assert weights_lib.find_weights("vgg16", include_top=True).source == "keras"
    assert weights_lib.find_weights("vgg16", False).file_name.endswith("_notop.h5")
    assert weights_lib.find_weights("vgg16", True, "torchvision").file_name == "vgg16-397923af.pth"
    assert weights_lib.find_weights("vgg11_bn", False).source == "torchvision"
    assert weights_lib.find_weights("vgg_m_2048", True).file_name == "imagenet-vgg-m-2048.mat"
    assert weights_lib.find_weights("vgg16", True, "matconvnet").file_name == (
        "imagenet-vgg-verydeep-16.mat")


# ---------------------------------------------------------------------------------------
# Fetch: hash, conversion once, nothing left behind on failure


def test_torchvision_file_is_fetched_converted_once_and_cached(monkeypatch, tmp_path,
                                                                 local_downloads):
    state = torch_state("vgg11")
    publish(monkeypatch, "vgg11", "torchvision", write_pth(tmp_path / "vgg11-x.pth", state))
    first = build_vgg("vgg11", include_top=False, weights="imagenet", input_shape=SIZE)
    np.testing.assert_array_equal(first.get_layer("block1_conv1").kernel.numpy(),
                                  state["features.0.weight"].transpose(2, 3, 1, 0))
    assert first.preprocessing.mode == "torch"
    assert "vgg11-x.keras_vgg_notop.weights.h5" in leftovers()

    def no_conversion(*args):
        raise AssertionError("converted twice")

    monkeypatch.setattr(weights_lib, "read_source", no_conversion)
    second = build_vgg("vgg11", include_top=False, weights="torchvision", input_shape=(48, 48, 3))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert second.preprocessing.mode == "torch"
    assert len(local_downloads) == 2  # get_file found its cached copy the second time


def test_hash_mismatch_never_loads_and_leaves_no_file(monkeypatch, tmp_path, local_downloads):
    path = write_pth(tmp_path / "vgg13-y.pth", torch_state("vgg13"))
    publish(monkeypatch, "vgg13", "torchvision", path, file_hash="00000000")
    before = leftovers()
    with pytest.raises(ValueError, match=r"vgg13-y\.pth does not have its published sha256 "
                                         r"\(00000000\.\.\..*nothing was loaded"):
        build_vgg("vgg13", include_top=False, weights="imagenet", input_shape=SIZE)
    assert leftovers() == before


def test_truncated_download_is_an_error_and_leaves_no_file(monkeypatch, tmp_path,
                                                           local_downloads):
    path = write_mat(tmp_path / "imagenet-vgg-m-cut.mat", "vgg_m", 64)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    publish(monkeypatch, "vgg_m", "matconvnet", path, file_hash=None)
    before = leftovers()
    with pytest.raises(ValueError, match="truncated or corrupted"):
        build_vgg("vgg_m", include_top=False, weights="imagenet", input_shape=(64, 64, 3))
    assert leftovers() == before


def test_wrong_variant_download_is_an_error_and_leaves_no_file(monkeypatch, tmp_path,
                                                               local_downloads):
    """VGG-M and VGG-S weights have the same shapes; the strides tell them apart."""
    path = write_mat(tmp_path / "imagenet-vgg-s-really-m.mat", "vgg_m", 64)
    publish(monkeypatch, "vgg_s", "matconvnet", path, file_hash=None)
    before = leftovers()
    with pytest.raises(ConversionError, match=r"Layer block2_conv1: the model uses stride 1 and "
                                              r"pad 0, the file's \(block2_conv1\) stride "
                                              r"\(2, 2\) and pad \(1, 1, 1, 1\)"):
        build_vgg("vgg_s", include_top=False, weights="imagenet", input_shape=(64, 64, 3))
    assert leftovers() == before


def test_offline_download_says_where_to_put_the_file(monkeypatch, tmp_path, local_downloads):
    """Keras's own get_file fails (a file:// URL that does not exist, as a host that cannot be
    reached): the error names the file, its URL, the cache path to fill by hand and a path."""
    record = weights_lib.find_weights("vgg16", include_top=False, name="keras")
    missing = "file://" + str(tmp_path / record.file_name)
    table = tuple(dataclasses.replace(r, url=missing) if r == record else r
                  for r in weights_lib.WEIGHTS)
    monkeypatch.setattr(weights_lib, "WEIGHTS", table)
    expected_cache = os.path.join(cache_dir(), record.file_name)
    with pytest.raises(ValueError) as error:
        build_vgg("vgg16", include_top=False, weights="imagenet", input_shape=SIZE)
    message = str(error.value)
    for part in (f"Could not download {record.file_name} for vgg16", missing, expected_cache,
                 "pass its path as `weights`", "Received: weights='imagenet'"):
        assert part in message
    assert not os.path.exists(expected_cache)


def test_matconvnet_lrn_parameters_must_match(tmp_path):
    path = write_mat(tmp_path / "odd-lrn.mat", "vgg_m", 64, lrn_alpha=5e-4)  # Caffe's alpha*N
    with pytest.raises(ConversionError, match=r"Layer block1_lrn: the model's LRN \[N kappa alpha "
                                              r"beta\] is \[5, 2.0, 0.0001, 0.75\], the file's "
                                              r"\(block1_lrn\) \[5.0, 2.0, 0.0005, 0.75\]"):
        build_vgg("vgg_m", include_top=False, weights=str(path), input_shape=(64, 64, 3))


def test_failed_load_keeps_the_models_weights(tmp_path):
    model = build_vgg("vgg11", include_top=False, input_shape=SIZE)
    before = model.get_weights()
    state = torch_state("vgg11")
    state["features.18.weight"] = state["features.18.weight"][:, :256]  # last conv: wrong shape
    np.savez(tmp_path / "bad.npz", **state)
    with pytest.raises(ConversionError, match=r"Layer block5_conv2: the model's kernel has shape "
                                              r"\(3, 3, 512, 512\), the file's \(features\.18\) "
                                              r"\(3, 3, 256, 512\)"):
        weights_lib.load_weights(model, tmp_path / "bad.npz", "vgg11", include_top=False)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_converted_keras_file_keeps_its_variant_preprocessing_and_classes(tmp_path):
    mat = write_mat(tmp_path / "m.mat", "vgg_m", 64)
    out = convert(mat, "vgg_m", tmp_path / "m.weights.h5", include_top=False)
    info = read_metadata(out)
    assert info["variant"] == "vgg_m" and info["class_names"] == ["cat", "dog"]
    assert info["preprocessing"].mode == "mean_image"
    np.testing.assert_allclose(info["preprocessing"].mean, [120.0, 115.0, 100.0])
    model = build_vgg("vgg_m", include_top=False, weights=out, input_shape=(64, 64, 3))
    assert model.class_names == ["cat", "dog"] and model.preprocessing.mode == "mean_image"
    with pytest.raises(ValueError, match="is for vgg_m, not vgg_s"):
        build_vgg("vgg_s", include_top=False, weights=out, input_shape=(64, 64, 3))


@pytest.mark.backend
def test_a_keras_file_as_weights_brings_its_record(tmp_path):
    """A VGGModel's .keras file used as `weights` gives the new model its preprocessing and
    class names, refuses another variant, and counts for preprocessing='auto' in a recipe."""
    from keras_vgg.finetune.recipe import Recipe
    from keras_vgg.saving import read_keras_record

    source = build_vgg("vgg11", input_shape=SIZE, classes=3, adaptive_pool=1)
    source.preprocessing, source.class_names = "tf", ["cat", "dog", "fox"]
    source.save(tmp_path / "m.keras")
    assert read_keras_record(tmp_path / "m.keras") == {
        "variant": "vgg11", "preprocessing": Preprocessing("tf"),
        "class_names": ["cat", "dog", "fox"], "widths": None}
    model = build_vgg("vgg11", weights=str(tmp_path / "m.keras"), input_shape=SIZE, classes=3,
                      adaptive_pool=1)
    assert (model.preprocessing.mode, model.class_names) == ("tf", ["cat", "dog", "fox"])
    for a, b in zip(source.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="is for vgg11, not vgg13"):
        build_vgg("vgg13", weights=str(tmp_path / "m.keras"), input_shape=SIZE, classes=3,
                  adaptive_pool=1)
    Recipe().but({"model.weights": str(tmp_path / "m.keras"), "model.preprocessing": "auto"})
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain.save(tmp_path / "plain.keras")
    assert read_keras_record(tmp_path / "plain.keras") is None
    with pytest.raises(ValueError, match="preprocessing"):
        Recipe().but({"model.weights": str(tmp_path / "plain.keras"),
                      "model.preprocessing": "auto"})


def test_pth_without_torch_says_what_to_do(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch")
        return real_import(name, *args, **kwargs)

    (tmp_path / "w.pth").write_bytes(b"0")
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ValueError, match=r"needs PyTorch \(pip install torch\)\. Without torch, "
                                         r"save the state dict as \.safetensors or \.npz"):
        build_vgg("vgg11", include_top=False, weights=str(tmp_path / "w.pth"))


# ---------------------------------------------------------------------------------------
# Preprocessing travels with the weights


def test_mean_image_mode_subtracts_a_pixel_or_a_resized_image():
    x = np.full((1, 4, 4, 3), 100.0, "float32")
    np.testing.assert_allclose(preprocess_input(x, "mean_image", mean=[10, 20, 30])[0, 0, 0],
                               [90, 80, 70])
    image = np.zeros((2, 2, 3), "float32") + [1.0, 2.0, 3.0]
    out = preprocess_input(x, "mean_image", mean=image)  # 2x2 mean resized to 4x4
    assert out.shape == x.shape
    np.testing.assert_allclose(out[0, 3, 3], [99, 98, 97])
    assert float(x[0, 0, 0, 0]) == 100.0  # input untouched


@pytest.mark.parametrize("mean, message", [
    (None, r"`mean` \(RGB, shape \(3,\) or \(height, width, 3\)\) with mode='mean_image'"),
    ([1.0, 2.0], r"Received: mean with shape \(2,\)"),
])
def test_mean_image_mode_needs_a_mean(mean, message):
    with pytest.raises(ValueError, match=message):
        preprocess_input(np.zeros((1, 2, 2, 3)), "mean_image", mean=mean)


@pytest.mark.backend
def test_model_knows_its_preprocessing_also_when_nested(tmp_path):
    np.savez(tmp_path / "w.npz", **torch_state("vgg11"))
    base = build_vgg("vgg11", include_top=False, weights=str(tmp_path / "w.npz"),
                     input_shape=SIZE, pooling="avg")
    inputs = keras.Input(SIZE)
    wrapped = keras.Model(inputs, keras.layers.Dense(2)(base(inputs)))
    x = np.random.default_rng(0).uniform(0, 255, (2,) + SIZE).astype("float32")
    expected = preprocess_input(x, "torch")
    np.testing.assert_array_equal(preprocess_input(x, model=base), expected)
    np.testing.assert_array_equal(preprocess_input(x, model=wrapped), expected)
    with pytest.raises(ValueError, match="does not record its preprocessing"):
        preprocess_input(x, model=build_vgg("vgg11", include_top=False, input_shape=SIZE))


def test_preprocessing_describes_itself():
    assert Preprocessing("torch").describe() == "torch"
    assert Preprocessing("mean_image", np.ones((2, 2, 3))).describe() == (
        "mean_image (RGB mean [1.0, 1.0, 1.0])")


# ---------------------------------------------------------------------------------------
# Class names offline


def test_imagenet_class_index_ships_with_the_package():
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert classes[0] == ("n01440764", "tench") and classes[999] == ("n15075141", "toilet tissue")
    assert [wnid for wnid, _ in classes] == sorted(wnid for wnid, _ in classes)


@pytest.mark.backend
def test_decode_predictions_imagenet_and_file_class_names(tmp_path):
    scores = np.zeros((2, 1000), "float32")
    scores[0, [1, 2]] = [0.7, 0.2]
    scores[1, 999] = 1.0
    decoded = decode_predictions(scores, top=2)
    assert decoded[0] == [("n01443537", "goldfish", pytest.approx(0.7)),
                          ("n01484850", "great white shark", pytest.approx(0.2))]
    assert decoded[1][0][:2] == ("n15075141", "toilet tissue")
    model = build_vgg("vgg_m", include_top=False, input_shape=(64, 64, 3),
                      weights=write_mat(tmp_path / "m.mat", "vgg_m", 64))
    assert decode_predictions(np.array([[0.1, 0.9]]), top=1, model=model) == [
        [("1", "dog", pytest.approx(0.9))]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(preds=np.zeros((1, 10))), "Expected `class_names`.*10 classes"),
    (dict(preds=np.zeros((1, 2)), class_names=["a"]), "one name per column"),
    (dict(preds=np.zeros(5)), r"shape \(samples, classes\)"),
    (dict(preds=np.zeros((1, 1000)), top=0), "`top` between 1 and 1000"),
])
def test_decode_predictions_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        decode_predictions(**kwargs)


# ---------------------------------------------------------------------------------------
# The command line


def test_cli_weights_lists_every_file(capsys):
    from keras_vgg.cli import main

    assert main(["weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(weights_lib.WEIGHTS) + 1 + 2 + len(weights_lib.WEIGHTS)
    urls = lines[-len(weights_lib.WEIGHTS):]
    assert [line.split() for line in urls] == [[r.file_name, r.url] for r in weights_lib.WEIGHTS]
    assert "~/.keras/models/" in lines[-len(weights_lib.WEIGHTS) - 1]
    assert lines[6].split()[:6] == ["vgg11", "torchvision", "vgg11-8a719046.pth", "yes", "torch",
                                    "69.0%"]


def test_cli_convert_writes_a_keras_file_and_refuses_to_overwrite(tmp_path, capsys):
    from keras_vgg.cli import main

    np.savez(tmp_path / "vgg11.npz", **torch_state("vgg11"))
    out = tmp_path / "vgg11.weights.h5"
    args = ["convert", str(tmp_path / "vgg11.npz"), "--model", "vgg11", "--no-top", "-o", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().out == (
        f"Wrote {out} for vgg11 from vgg11.npz; preprocessing: torch\n")
    model = build_vgg("vgg11", include_top=False, weights=str(out), input_shape=SIZE)
    assert model.preprocessing.mode == "torch"
    before = out.read_bytes()
    assert main(args) == 2
    assert "Expected `output` (-o/--output) not to exist" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(args[:-2] + ["-o", str(tmp_path / "x.h5")]) == 2
    assert "Expected `output` (-o/--output) to end in .weights.h5. Received: output=" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "vgg11.npz"), "--model", "vgg13", "--no-top",
                 "-o", str(tmp_path / "y.weights.h5")]) == 2
    assert "The file has 8 conv layers, vgg13 has 10" in capsys.readouterr().err
    assert not (tmp_path / "y.weights.h5").exists()
