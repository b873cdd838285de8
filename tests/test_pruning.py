"""Structured filter pruning (keras_vgg.pruning): widths planned for a target, the narrower
model rebuilt with the weights cut, equal to the original where nothing (or only zeroed
filters) went; saved, loaded, converted and exported like any other; clear errors."""

import numpy as np
import pytest

import keras
import keras_vgg
from keras_vgg.finetune.recipe import Recipe
from keras_vgg.finetune.model import build_finetune_model
from keras_vgg.pruning import conv_names, filter_scores, model_cost, plan_widths, prune

pytestmark = pytest.mark.backend

VGG11_WIDTHS = (64, 128, 256, 256, 512, 512, 512, 512)


def images(n=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype("float32")


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def with_random_bn(model, seed=0):
    """Every BatchNormalization gets random gamma, beta and statistics (not the identity)."""
    rng = np.random.default_rng(seed)
    for layer in keras_vgg.pruning._leaves(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               for w in layer.get_weights()])
    return model


def finetuned(head, variant="vgg11_bn"):
    recipe = Recipe().but({"model.name": variant, "model.image_size": 32, "model.head": head,
                           "model.head_units": 0})
    model = build_finetune_model(recipe, 3, ["a", "b", "c"])
    model.preprocessing = "torch"
    return with_random_bn(model)


def test_a_flops_target_keeps_the_same_share_of_every_conv():
    model = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    widths = plan_widths(model, flops=0.3)
    assert widths == (35, 70, 139, 139, 279, 279, 279, 279)
    assert model_cost(model, widths).flops / model_cost(model).flops <= 0.3
    # one filter more in every conv would pass the target: the largest share that meets it
    assert model_cost(model, [w + 1 for w in widths]).flops / model_cost(model).flops > 0.3


@pytest.mark.filterwarnings("ignore:vgg11 with include_top=True")
def test_cost_counts_what_keras_counts():
    model = keras_vgg.VGG11(include_top=True, input_shape=(32, 32, 3), classes=10)
    table = keras_vgg.configs.describe("vgg11", (32, 32, 3), classes=10)
    assert model_cost(model).params == model.count_params() == table.params == 28_144_010
    assert model_cost(model).flops == round(table.gflops * 1e9)
    small = prune(model, params=0.7)  # fc1 and fc2 hold 67% of it: they keep their units
    assert model_cost(small).params == small.count_params()
    assert 0.69 < small.count_params() / model.count_params() <= 0.7


@pytest.mark.parametrize("head", ["avg", "flatten", "fc"])
def test_keeping_every_filter_changes_nothing(head):
    model = finetuned(head)
    same = prune(model, widths=VGG11_WIDTHS)
    assert same.widths is None and same.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(outputs(same, images()), outputs(model, images()))


@pytest.mark.parametrize("variant,head", [("vgg11_bn", "flatten"), ("vgg11", "avg"),
                                          ("vgg11_bn", "fc")])
def test_pruned_model_equals_the_original_with_those_filters_zeroed(variant, head):
    """Zeroing a filter (its kernel and bias; its BN scale and offset) makes its ReLU output
    0, which is what removing it does: the pruned model computes what the zeroed one does."""
    model = finetuned(head, variant)
    small = prune(model, flops=0.4)
    assert small.widths == small.get_layer("base").widths != VGG11_WIDTHS
    scores = filter_scores(model)
    leaves = list(keras_vgg.pruning._leaves(model))
    for name, width in zip(conv_names(model), small.widths):
        gone = np.argsort(-scores[name], kind="stable")[width:]
        conv = next(layer for layer in leaves if layer.name == name)
        kernel, bias = conv.get_weights()
        kernel[..., gone], bias[gone] = 0, 0
        conv.set_weights([kernel, bias])
        bn = next((layer for layer in leaves if layer.name == f"{name}_bn"), None)
        if bn is not None:
            gamma, beta, mean, variance = bn.get_weights()
            gamma[gone], beta[gone] = 0, 0
            bn.set_weights([gamma, beta, mean, variance])
    np.testing.assert_allclose(outputs(small, images()), outputs(model, images()),
                               atol=1e-6)


def test_filters_ranked_by_l1_norm_or_bn_scale():
    plain = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3))
    kernel, bias = plain.get_layer("block1_conv1").get_weights()
    kernel[..., :] = 0.01
    kernel[..., [5, 9]] = 1.0  # the two filters with the largest L1 norm
    plain.get_layer("block1_conv1").set_weights([kernel, bias])
    assert filter_scores(plain)["block1_conv1"].argsort()[-2:].tolist() == [5, 9]
    bn = with_random_bn(keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3),
                                        batch_norm=True))
    gamma = bn.get_layer("block1_conv1_bn").get_weights()[0]
    np.testing.assert_array_equal(filter_scores(bn)["block1_conv1"], np.abs(gamma))
    assert not np.array_equal(filter_scores(bn, "l1")["block1_conv1"], np.abs(gamma))
    with pytest.raises(ValueError, match=r"criterion='bn_scale'.*Received: criterion"):
        filter_scores(plain, "bn_scale")


def test_pruned_model_saves_loads_and_names_its_widths(tmp_path):
    model = finetuned("avg")
    small = prune(model, flops=0.3)
    small.save(tmp_path / "small.keras")
    loaded = keras_vgg.load_model(tmp_path / "small.keras")
    assert loaded.widths == small.widths and loaded.class_names == ["a", "b", "c"]
    assert loaded.preprocessing.mode == "torch"
    np.testing.assert_allclose(outputs(loaded, images()), outputs(small, images()), atol=1e-6)


def test_build_vgg_rebuilds_a_pruned_base_and_refuses_it_at_full_width(tmp_path):
    base = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    small = prune(base, flops=0.3)
    small.save_weights(tmp_path / "small.weights.h5")
    small.save(tmp_path / "small.keras")
    again = keras_vgg.build_vgg("vgg11", include_top=False, input_shape=(32, 32, 3),
                                pooling="avg", widths=small.widths,
                                weights=str(tmp_path / "small.weights.h5"))
    np.testing.assert_allclose(outputs(again, images()), outputs(small, images()), atol=1e-6)
    with pytest.raises(ValueError, match=r"pruned vgg11 \(conv widths \[35, 70.*"
                                         r"Received: weights='.*small.keras'"):
        keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), weights=str(
            tmp_path / "small.keras"))
    with pytest.raises(ValueError, match=r"does not fit .*block1_conv1.*Received: weights="):
        keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), weights=str(
            tmp_path / "small.weights.h5"))
    with pytest.raises(ValueError, match=r"`widths=None` with `weights='imagenet'`"):
        keras_vgg.build_vgg("vgg11", weights="imagenet", widths=small.widths)
    with pytest.raises(ValueError, match=r"8 positive ints.*Received: widths=\(1, 2\)"):
        keras_vgg.build_vgg("vgg11", include_top=False, widths=(1, 2))


def test_a_pruned_torchvision_state_dict_converts(tmp_path):
    """A network pruned elsewhere (torchvision layout, fewer filters) loads with widths=."""
    from test_convert import torchvision_features, torchvision_state_dict

    widths = (8, 16, 24, 24, 40, 40, 40, 40)
    state = torchvision_state_dict("vgg11")
    cin, n = 3, 0
    for key in sorted((k for k in state if k.startswith("features.")),
                      key=lambda k: int(k.split(".")[1])):
        if key.endswith(".weight"):
            state[key] = state[key][:widths[n], :cin]
        else:
            state[key] = state[key][:widths[n]]
            cin, n = widths[n], n + 1
    state = {k: v for k, v in state.items() if k.startswith("features.")}
    np.savez(tmp_path / "pruned.npz", **state)
    output = keras_vgg.convert.convert(tmp_path / "pruned.npz", "vgg11",
                                       str(tmp_path / "pruned.weights.h5"), include_top=False,
                                       input_shape=(32, 32, 3), widths=widths)
    model = keras_vgg.build_vgg("vgg11", include_top=False, input_shape=(32, 32, 3),
                                widths=widths, weights=output)
    x = images()
    expected = torchvision_features(state, "vgg11", x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(outputs(model, x), expected.transpose(0, 2, 3, 1), atol=1e-4)
    with pytest.raises(ValueError, match=r"pruned vgg11.*Received: weights="):
        keras_vgg.build_vgg("vgg11", include_top=False, input_shape=(32, 32, 3),
                            weights=output)


def test_bad_targets_and_models_are_clear_errors():
    model = keras_vgg.VGG11(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    with pytest.raises(ValueError, match=r"`flops` of at least 0\.0\d+: .*no filter.*"
                                         r"Received: flops=0\.0001"):
        prune(model, flops=0.0001)
    with pytest.raises(ValueError, match=r"fraction to keep, in \(0, 1\].*Received: flops=30"):
        prune(model, flops=30)
    with pytest.raises(ValueError, match=r"one of `flops` or `params`.*Received: flops=0\.3, "
                                         r"params=0\.3"):
        prune(model, flops=0.3, params=0.3)
    with pytest.raises(ValueError, match=r"8 ints, one per conv.*Received: widths=\(0,"):
        prune(model, widths=(0, 1, 1, 1, 1, 1, 1, 1))
    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)],
                             name="not_vgg")
    with pytest.raises(ValueError, match=r"keras_vgg model .*Received: model='not_vgg'"):
        prune(other, flops=0.5)
    open_size = keras_vgg.VGG11(include_top=False, pooling="avg")
    with pytest.raises(ValueError, match=r"fixed input size"):
        prune(open_size, flops=0.5)
    assert prune(open_size, widths=(8,) * 8).widths == (8,) * 8


def test_a_pruned_model_exports_and_agrees(tmp_path):
    pytest.importorskip("ai_edge_litert")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on TensorFlow")
    from keras_vgg.export import export

    small = prune(finetuned("avg"), flops=0.3)
    rng = np.random.default_rng(0)
    sample = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    report = export(small, tmp_path / "bundle", ["tflite"], ["none", "int8"],
                    representative_data=sample, sample=sample, verbose=False)
    assert (report["params"], report["flops"], report["widths"]) == (
        small.count_params(), model_cost(small).flops, list(small.widths))
    rows = {row["quantize"]: row for row in report["exports"]}
    assert rows["none"]["max_abs_diff"] < 1e-4 and rows["none"]["top1_agreement"] == 1.0
    assert rows["int8"]["size_bytes"] < rows["none"]["size_bytes"] / 3
