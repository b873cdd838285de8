"""Converters: torchvision/timm state dicts and MatConvNet .mat files give the source's outputs.

Each test writes a file in the source's own layout with random weights, loads it through
keras_vgg and compares the Keras model with a NumPy forward pass of that layout written
here, independent of keras_vgg's code: NCHW for PyTorch (flatten in (C, H, W) order,
AdaptiveAvgPool2d's windows), MatConvNet's HWC SimpleNN (convs with [top bottom left right]
pads, pools whose padding never wins, fc layers as convs).
"""

import numpy as np
import pytest
import scipy.io

import keras
import keras_vgg
from keras_vgg import build_vgg
from keras_vgg.convert import ConversionError, convert, read_matconvnet, read_state_dict

TOL = 1e-4  # on max |keras - reference|, relative to max(1, max |reference|)
BATCH = 2
TORCHVISION_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
}
# MatConvNet SimpleNN per block: ("conv", kernel, stride, pad, filters) (+ ReLU), ("lrn",),
# ("pool", size, stride). Chatfield et al. 2014 as released; fc6-fc8 are added by the writer.
_CONV3 = ("conv", 3, 1, 1)
MATCONVNET_ARCHS = {
    "vgg_f": [[("conv", 11, 4, 0, 64), ("lrn",), ("pool", 3, 2)],
              [("conv", 5, 1, 2, 256), ("lrn",), ("pool", 3, 2)],
              [_CONV3 + (256,)], [_CONV3 + (256,)], [_CONV3 + (256,), ("pool", 3, 2)]],
    "vgg_m": [[("conv", 7, 2, 0, 96), ("lrn",), ("pool", 3, 2)],
              [("conv", 5, 2, 1, 256), ("lrn",), ("pool", 3, 2)],
              [_CONV3 + (512,)], [_CONV3 + (512,)], [_CONV3 + (512,), ("pool", 3, 2)]],
    "vgg_s": [[("conv", 7, 2, 0, 96), ("lrn",), ("pool", 3, 3)],
              [("conv", 5, 1, 0, 256), ("pool", 2, 2)],
              [_CONV3 + (512,)], [_CONV3 + (512,)], [_CONV3 + (512,), ("pool", 3, 3)]],
}
DESCRIPTIONS = [
    "tench, Tinca tinca", "goldfish, Carassius auratus",
    "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
    "tiger shark, Galeocerdo cuvieri", "hammerhead, hammerhead shark",
    "electric ray, crampfish, numbfish, torpedo", "stingray", "cock", "hen",
    "ostrich, Struthio camelus",
]


# ----------------------------------------------------------------------------------------
# Checks and inputs


def assert_close(actual, expected, tol=TOL):
    """Max |actual - expected| <= tol * max(1, max |expected|), with expected of a sane scale."""
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert 0.1 < scale < 1e4, f"reference output of scale {scale}: badly scaled weights"
    error = float(np.abs(actual - expected).max())
    assert error <= tol * max(1.0, scale), f"max |diff| {error:.3g}, reference scale {scale:.3g}"


def keras_out(model, x):
    """The model's inference output on a NumPy batch, as NumPy."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def normal_images(size, seed=0):
    """A batch of NHWC float32 inputs as torch preprocessing leaves them (about N(0, 1))."""
    return np.random.default_rng(seed).standard_normal((BATCH, size, size, 3), dtype=np.float32)


def pixel_images(size, seed=0):
    """A batch of NHWC RGB float32 images with values in [0, 255]."""
    return np.random.default_rng(seed).uniform(0, 255, (BATCH, size, size, 3)).astype(np.float32)


def he(rng, shape, fan_in):
    """float32 He-uniform weights, U(-a, a), a = sqrt(6 / fan_in): ReLU activations stay O(1)."""
    weights = rng.random(shape, dtype=np.float32)
    weights -= np.float32(0.5)
    weights *= np.float32(2 * np.sqrt(6.0 / fan_in))
    return weights


def truncate(path):
    """Cut a file to half its bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ----------------------------------------------------------------------------------------
# PyTorch layouts: writers and the NCHW reference


def torchvision_state_dict(variant, classes=10, hidden=4096, seed=0):
    """A torchvision VGG state dict (`features.{i}.*`, `classifier.{0,3,6}.*`) of random arrays."""
    rng = np.random.default_rng(seed)
    state, i, cin = {}, 0, 3
    for v in TORCHVISION_CFGS[variant.removesuffix("_bn")]:
        if v == "M":
            i += 1
            continue
        state[f"features.{i}.weight"] = he(rng, (v, cin, 3, 3), cin * 9)
        state[f"features.{i}.bias"] = rng.normal(0, 0.1, v).astype(np.float32)
        if variant.endswith("_bn"):
            i += 1
            state[f"features.{i}.weight"] = rng.uniform(0.5, 1.5, v).astype(np.float32)
            state[f"features.{i}.bias"] = rng.normal(0, 0.2, v).astype(np.float32)
            state[f"features.{i}.running_mean"] = rng.normal(0, 0.2, v).astype(np.float32)
            state[f"features.{i}.running_var"] = rng.uniform(0.5, 2.0, v).astype(np.float32)
            state[f"features.{i}.num_batches_tracked"] = np.array(1000, dtype=np.int64)
        i += 2  # the conv (or BN) and its ReLU
        cin = v
    fc_shapes = ((hidden, 512 * 7 * 7), (hidden, hidden), (classes, hidden))
    for k, (n_out, n_in) in zip((0, 3, 6), fc_shapes):
        state[f"classifier.{k}.weight"] = he(rng, (n_out, n_in), n_in)
        state[f"classifier.{k}.bias"] = rng.normal(0, 0.1, n_out).astype(np.float32)
    return state


def timm_state_dict(torchvision_state):
    """The same weights in timm's layout: pre_logits.fc1/fc2 as Conv2d (7x7, 1x1), head.fc."""
    state = {k: v for k, v in torchvision_state.items() if k.startswith("features.")}
    fc1, fc2 = torchvision_state["classifier.0.weight"], torchvision_state["classifier.3.weight"]
    state["pre_logits.fc1.weight"] = fc1.reshape(len(fc1), 512, 7, 7)
    state["pre_logits.fc1.bias"] = torchvision_state["classifier.0.bias"]
    state["pre_logits.fc2.weight"] = fc2.reshape(len(fc2), len(fc1), 1, 1)
    state["pre_logits.fc2.bias"] = torchvision_state["classifier.3.bias"]
    state["head.fc.weight"] = torchvision_state["classifier.6.weight"]
    state["head.fc.bias"] = torchvision_state["classifier.6.bias"]
    return state


def save_state_dict(path, state):
    """Write `state` by suffix: torch.save of tensors (.pth, needs torch), safetensors, np.savez."""
    if path.suffix == ".pth":
        torch = pytest.importorskip("torch")
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    elif path.suffix == ".safetensors":
        import safetensors.numpy

        safetensors.numpy.save_file(state, str(path))
    else:
        np.savez(path, **state)
    return path


def conv2d_nchw(x, weight, bias, pad):
    """PyTorch's Conv2d (stride 1, zero pad `pad`): x (N, C, H, W), weight (O, C, kh, kw)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    o, c, kh, kw = weight.shape
    ho, wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    cols = np.stack([x[:, :, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)], axis=2)
    cols = cols.reshape(len(x), c * kh * kw, ho, wo)  # (C, kh, kw) order, as weight.reshape(O, -1)
    out = np.tensordot(weight.reshape(o, -1).astype(np.float64), cols, axes=([1], [1]))
    return out.transpose(1, 0, 2, 3) + bias[None, :, None, None]


def max_pool_2x2_nchw(x):
    """PyTorch's MaxPool2d(2, 2) (floor mode) on NCHW."""
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def adaptive_avg_pool_nchw(x, out=7):
    """PyTorch's AdaptiveAvgPool2d(out): window i is [floor(i*in/out), ceil((i+1)*in/out))."""
    h, w = x.shape[2:]
    rows = [(i * h // out, -(-(i + 1) * h // out)) for i in range(out)]
    cols = [(j * w // out, -(-(j + 1) * w // out)) for j in range(out)]
    return np.stack([np.stack([x[:, :, r0:r1, c0:c1].mean(axis=(2, 3)) for c0, c1 in cols], -1)
                     for r0, r1 in rows], -2)


def torchvision_features(state, variant, x):
    """torchvision VGG.features on NCHW input in float64: conv [+ BN eval, eps 1e-5], ReLU, pool."""
    x, i = x.astype(np.float64), 0
    for v in TORCHVISION_CFGS[variant.removesuffix("_bn")]:
        if v == "M":
            x, i = max_pool_2x2_nchw(x), i + 1
            continue
        x = conv2d_nchw(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], pad=1)
        if variant.endswith("_bn"):
            i += 1
            bn = {k: state[f"features.{i}.{k}"].astype(np.float64)[None, :, None, None]
                  for k in ("weight", "bias", "running_mean", "running_var")}
            x = (x - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-5)
            x = x * bn["weight"] + bn["bias"]
        x, i = np.maximum(x, 0), i + 2
    return x


def torchvision_forward(state, variant, x):
    """torchvision VGG.forward (eval): features, avgpool to 7x7, flatten (C, H, W), classifier."""
    x = adaptive_avg_pool_nchw(torchvision_features(state, variant, x)).reshape(len(x), -1)
    for k in (0, 3, 6):
        x = x @ state[f"classifier.{k}.weight"].T.astype(np.float64) + state[f"classifier.{k}.bias"]
        x = np.maximum(x, 0) if k != 6 else x
    return x


def timm_forward(state, x):
    """timm's VGG11: features, ConvMlp (adaptive pool up to 7x7, conv 7x7, conv 1x1), head."""
    x = adaptive_avg_pool_nchw(torchvision_features(state, "vgg11", x))
    for fc in ("pre_logits.fc1", "pre_logits.fc2"):
        x = np.maximum(conv2d_nchw(x, state[f"{fc}.weight"], state[f"{fc}.bias"], pad=0), 0)
    x = x.mean(axis=(2, 3))  # head: global average pool, then fc
    return x @ state["head.fc.weight"].T.astype(np.float64) + state["head.fc.bias"]


def nchw(x):
    """NHWC -> NCHW."""
    return x.transpose(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------
# MatConvNet: writer and the HWC reference


def _row(*values):
    """A 1xN double row, as MATLAB stores numeric vectors."""
    return np.array([values], dtype=np.float64)


def _cell(items):
    """A 1xN MATLAB cell array."""
    cell = np.empty((1, len(items)), dtype=object)
    for k, item in enumerate(items):
        cell[0, k] = item
    return cell


def matconvnet_layers(variant, size, classes=10, seed=0):
    """SimpleNN layers (dicts, as vl_simplenn_tidy saves them), random weights for size x size."""
    rng = np.random.default_rng(seed)
    layers, h, c = [], size, 3

    def conv(name, k, stride, pad, filters, fan_in):
        layers.append({
            "name": name, "type": "conv",
            "weights": _cell([he(rng, (k, k, c, filters), fan_in),
                              rng.normal(0, 1, (1, filters)).astype(np.float32)]),
            "size": _row(k, k, c, filters), "stride": _row(stride, stride),
            "pad": _row(pad, pad, pad, pad), "dilate": _row(1, 1),
        })

    for b, block in enumerate(MATCONVNET_ARCHS[variant], start=1):
        for layer in block:
            if layer[0] == "conv":
                _, k, stride, pad, filters = layer
                conv(f"conv{b}", k, stride, pad, filters, k * k * c)
                layers.append({"name": f"relu{b}", "type": "relu", "leak": 0.0})
                h, c = (h + 2 * pad - k) // stride + 1, filters
            elif layer[0] == "lrn":
                layers.append({"name": f"norm{b}", "type": "lrn", "param": _row(5, 2, 1e-4, 0.75)})
            else:  # bottom/right pad of stride - 1: Caffe's ceil-mode output size
                _, p, s = layer
                layers.append({"name": f"pool{b}", "type": "pool", "method": "max",
                               "pool": _row(p, p), "stride": _row(s, s),
                               "pad": _row(0, s - 1, 0, s - 1)})
                h = (h + s - 1 - p) // s + 1
    for n, units in ((6, 4096), (7, 4096), (8, classes)):
        k = h if n == 6 else 1
        conv(f"fc{n}", k, 1, 0, units, k * k * c)
        if n != 8:
            layers.append({"name": f"relu{n}", "type": "relu", "leak": 0.0})
        c = units
    layers.append({"name": "prob", "type": "softmax"})
    return layers


def save_matconvnet(path, layers, average_image, descriptions=DESCRIPTIONS):
    """Save `layers` and `meta` with scipy.io.savemat, laid out as MatConvNet >= beta-17 files."""
    meta = {
        "normalization": {"averageImage": average_image.astype(np.float32),
                          "imageSize": _row(224, 224, 3), "interpolation": "bilinear",
                          "keepAspect": 1.0, "border": _row(32, 32)},
        "classes": {"name": _cell([f"n{k:08d}" for k in range(len(descriptions))]),
                    "description": _cell(descriptions)},
    }
    scipy.io.savemat(path, {"layers": _cell(layers), "meta": meta})
    return path


def conv2d_hwc(x, filters, biases, stride, pad):
    """vl_nnconv, NHWC: filters (kh, kw, Cin, Cout), stride [sy sx], pad [top bottom left right]."""
    (sy, sx), (top, bottom, left, right) = stride.ravel().astype(int), pad.ravel().astype(int)
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw, cin, cout = filters.shape
    ho, wo = (x.shape[1] - kh) // sy + 1, (x.shape[2] - kw) // sx + 1
    cols = np.stack([x[:, i:i + sy * (ho - 1) + 1:sy, j:j + sx * (wo - 1) + 1:sx, :]
                     for i in range(kh) for j in range(kw)], axis=3)  # (N, ho, wo, kh*kw, C)
    out = cols.reshape(len(x), ho, wo, -1) @ filters.reshape(-1, cout).astype(np.float64)
    return out + biases.ravel()


def max_pool_hwc(x, pool, stride, pad):
    """vl_nnpool max on NHWC: padded cells are -inf, so they never win."""
    (ph, pw), (sy, sx) = pool.ravel().astype(int), stride.ravel().astype(int)
    top, bottom, left, right = pad.ravel().astype(int)
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    ho, wo = (x.shape[1] - ph) // sy + 1, (x.shape[2] - pw) // sx + 1
    return np.max([x[:, i:i + sy * (ho - 1) + 1:sy, j:j + sx * (wo - 1) + 1:sx, :]
                   for i in range(ph) for j in range(pw)], axis=0)


def lrn_hwc(x, param):
    """vl_nnnormalize: x / (kappa + alpha * sum of x^2 over channels k-2..k+2, clipped) ^ beta."""
    n, kappa, alpha, beta = param.ravel()
    half = int(n - 1) // 2
    squared = np.pad(x ** 2, ((0, 0), (0, 0), (0, 0), (half, half)))
    window = sum(squared[..., q:q + x.shape[-1]] for q in range(int(n)))
    return x / (kappa + alpha * window) ** beta


def matconvnet_forward(layers, x, stop="prob"):
    """vl_simplenn on NHWC input in float64, up to (not including) the layer named `stop`."""
    x = x.astype(np.float64)
    for layer in layers:
        if layer["name"] == stop:
            break
        kind = layer["type"]
        if kind == "conv":
            filters, biases = layer["weights"][0]
            x = conv2d_hwc(x, filters, biases, layer["stride"], layer["pad"])
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "lrn":
            x = lrn_hwc(x, layer["param"])
        elif kind == "pool":
            x = max_pool_hwc(x, layer["pool"], layer["stride"], layer["pad"])
        else:
            raise AssertionError(f"no reference for layer type {kind}")
    return x


# ----------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def state_dict_file(tmp_path_factory):
    """`write(variant, suffix) -> (state, path)`: a state dict, 64-wide classifier, written once."""
    written = {}

    def write(variant, suffix):
        if (variant, suffix) not in written:
            state = torchvision_state_dict(variant, hidden=64)
            path = tmp_path_factory.mktemp("state_dicts") / f"{variant}{suffix}"
            written[variant, suffix] = state, save_state_dict(path, state)
        return written[variant, suffix]

    return write


@pytest.fixture(scope="module")
def vgg11_top(tmp_path_factory):
    """`(state, path)`: a full-size torchvision vgg11 state dict (fc1 25088 -> 4096, 10 classes)."""
    state = torchvision_state_dict("vgg11", hidden=4096, seed=1)
    return state, save_state_dict(tmp_path_factory.mktemp("vgg11_top") / "vgg11.safetensors", state)


# ----------------------------------------------------------------------------------------
# PyTorch state dicts


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".npz"])
def test_read_state_dict_returns_the_saved_arrays(state_dict_file, suffix):
    state, path = state_dict_file("vgg11_bn", suffix)
    read = read_state_dict(path)
    assert sorted(read) == sorted(state)
    for key, value in state.items():
        assert np.shape(read[key]) == value.shape, key
        np.testing.assert_array_equal(read[key], value, err_msg=key)


@pytest.mark.backend
@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".npz"])
@pytest.mark.parametrize("variant", ["vgg11", "vgg11_bn"])
def test_headless_torchvision_features_equal_numpy_reference(state_dict_file, variant, suffix):
    state, path = state_dict_file(variant, suffix)
    model = build_vgg(variant, weights=path, include_top=False, input_shape=(32, 32, 3))
    x = normal_images(32)
    expected = torchvision_features(state, variant, nchw(x)).transpose(0, 2, 3, 1)
    assert expected.shape == (BATCH, 1, 1, 512)
    assert_close(keras_out(model, x), expected)
    assert model.preprocessing.mode == "torch"
    assert model.class_names is None


# Each include_top model with fc1 25088 -> 4096 costs seconds to build and load, so the two
# adaptive-pool cases are split between the layouts: uneven windows for torchvision, the 1x1
# map replicated to 7x7 for timm.


@pytest.mark.backend
def test_torchvision_logits_at_64_through_adaptive_pool_equal_reference(vgg11_top):
    # The 2x2 feature map -> 7x7: windows [floor(i*2/7), ceil((i+1)*2/7)), row 3 averages both.
    state, path = vgg11_top
    model = build_vgg("vgg11", weights=path, input_shape=(64, 64, 3), classes=10,
                      classifier_activation=None, adaptive_pool=7)
    assert model.get_layer("block5_pool").output.shape[1:] == (2, 2, 512)
    assert model.get_layer("avgpool").output.shape[1:] == (7, 7, 512)
    x = normal_images(64)
    assert_close(keras_out(model, x), torchvision_forward(state, "vgg11", nchw(x)))
    assert model.preprocessing.mode == "torch"
    assert model.class_names is None


@pytest.mark.backend
def test_timm_logits_at_32_through_adaptive_pool_equal_reference(vgg11_top, tmp_path):
    # The 1x1 feature map is replicated to 7x7 (timm's ConvMlp pools small maps up to 7x7).
    state = timm_state_dict(vgg11_top[0])
    path = save_state_dict(tmp_path / "vgg11.tv_in1k.safetensors", state)
    model = build_vgg("vgg11", weights=path, input_shape=(32, 32, 3), classes=10,
                      classifier_activation=None, adaptive_pool=7)
    assert model.get_layer("block5_pool").output.shape[1:] == (1, 1, 512)
    x = normal_images(32, seed=2)
    assert_close(keras_out(model, x), timm_forward(state, nchw(x)))
    assert model.preprocessing.mode == "torch"


def test_numpy_torchvision_reference_matches_torch_modules(state_dict_file):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    state, _ = state_dict_file("vgg11_bn", ".npz")
    modules, cin = [], 3
    for v in TORCHVISION_CFGS["vgg11"]:
        if v == "M":
            modules.append(nn.MaxPool2d(2, 2))
        else:
            modules += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            cin = v
    net = nn.Module()
    net.features = nn.Sequential(*modules)
    net.classifier = nn.Sequential(
        nn.Linear(25088, 64), nn.ReLU(True), nn.Dropout(),
        nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 10),
    )
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    net.eval()
    x = normal_images(64, seed=3)
    with torch.no_grad():
        features = net.features(torch.from_numpy(nchw(x).copy()))
        pooled = nn.AdaptiveAvgPool2d((7, 7))(features)
        logits = net.classifier(torch.flatten(pooled, 1)).numpy()
    assert_close(features.numpy(), torchvision_features(state, "vgg11_bn", nchw(x)))
    assert_close(logits, torchvision_forward(state, "vgg11_bn", nchw(x)))


def test_vgg13_state_dict_into_vgg11_raises_conversion_error(state_dict_file):
    _, path = state_dict_file("vgg13", ".safetensors")
    with pytest.raises(ConversionError) as error:
        build_vgg("vgg11", weights=path, include_top=False)
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert "10 conv layers" in message and "vgg11 has 8" in message, message
    assert str(path) in message, message


def test_conv_of_wrong_width_names_layer_and_both_shapes(tmp_path):
    state = torchvision_state_dict("vgg11", hidden=64)
    state["features.3.weight"] = state["features.3.weight"][:96]  # block2_conv1: 96 filters
    state["features.3.bias"] = state["features.3.bias"][:96]
    path = save_state_dict(tmp_path / "vgg11.safetensors", state)
    with pytest.raises(ConversionError) as error:
        build_vgg("vgg11", weights=path, include_top=False)
    message = str(error.value)
    # Both shapes as Keras kernels (h, w, in, out); the message also names the file's tensor.
    assert "block2_conv1" in message and "features.3" in message, message
    assert "(3, 3, 64, 128)" in message and "(3, 3, 64, 96)" in message, message


def test_torchvision_classifier_without_adaptive_pool_names_fc1_and_both_shapes(vgg11_top):
    _, path = vgg11_top
    with pytest.raises(ConversionError) as error:
        build_vgg("vgg11", weights=path, input_shape=(32, 32, 3), classes=10)
    message = str(error.value)
    # Both kernels as (h, w, inputs, units): the model's flatten sees 1x1x512, the file's 7x7x512.
    assert "fc1" in message and "classifier.0" in message, message
    assert "(1, 1, 512, 4096)" in message and "(7, 7, 512, 4096)" in message, message


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".npz", ".mat"])
def test_truncated_file_raises_value_error_naming_path(tmp_path, suffix):
    if suffix == ".mat":
        variant = "vgg_m"
        path = save_matconvnet(tmp_path / "imagenet-vgg-m.mat", matconvnet_layers("vgg_m", 41),
                               np.zeros((1, 1, 3)))
    else:
        variant = "vgg11"
        state = torchvision_state_dict("vgg11", hidden=64)
        path = save_state_dict(tmp_path / f"vgg11{suffix}", state)
    truncate(path)
    with pytest.raises(ValueError) as error:
        build_vgg(variant, weights=path, include_top=False)
    assert str(path) in str(error.value), str(error.value)


# ----------------------------------------------------------------------------------------
# MatConvNet


def test_read_matconvnet_returns_layers_mean_and_class_names(tmp_path):
    layers = matconvnet_layers("vgg_s", 31)
    average = np.array([[[123.68, 116.779, 103.939]]], dtype=np.float32)
    net = read_matconvnet(save_matconvnet(tmp_path / "imagenet-vgg-s.mat", layers, average))
    assert [(x["name"], x["type"]) for x in net.layers] == [(x["name"], x["type"]) for x in layers]
    np.testing.assert_array_equal(np.reshape(net.mean, -1), average.ravel())
    assert net.class_names == DESCRIPTIONS


@pytest.mark.parametrize("variant, size, per_pixel_mean", [
    ("vgg_m", 73, True),  # fc6 sees 2x2x512: checks the (H, W, C) order of fc6
    ("vgg_s", 31, False),
    ("vgg_f", 39, False),
])
@pytest.mark.backend
def test_matconvnet_logits_equal_reference(tmp_path, variant, size, per_pixel_mean):
    layers = matconvnet_layers(variant, size)
    rng = np.random.default_rng(4)
    shape = (size, size, 3) if per_pixel_mean else (1, 1, 3)
    average = rng.uniform(100, 130, shape).astype(np.float32)
    path = save_matconvnet(tmp_path / f"imagenet-{variant}.mat", layers, average)
    model = build_vgg(variant, weights=path, input_shape=(size, size, 3), classes=10,
                      classifier_activation=None)
    assert model.preprocessing.mode == "mean_image"
    np.testing.assert_array_equal(np.broadcast_to(model.preprocessing.mean, (size, size, 3)),
                                  np.broadcast_to(average, (size, size, 3)))
    assert model.class_names == DESCRIPTIONS
    x = pixel_images(size)
    inputs = keras_vgg.preprocess_input(x, model=model)
    np.testing.assert_allclose(inputs, x - average, rtol=0, atol=1e-4)
    expected = matconvnet_forward(layers, x - average)
    assert expected.shape == (BATCH, 1, 1, 10)
    assert_close(keras_out(model, inputs), expected.reshape(BATCH, 10))


@pytest.mark.backend
def test_headless_vgg_f_from_matconvnet_equals_reference_pool5(tmp_path):
    layers = matconvnet_layers("vgg_f", 71)
    average = np.array([[[122.8, 115.6, 102.4]]], dtype=np.float32)
    model = build_vgg("vgg_f", weights=save_matconvnet(tmp_path / "f.mat", layers, average),
                      include_top=False)
    x = pixel_images(71, seed=5)
    expected = matconvnet_forward(layers, x - average, stop="fc6")
    assert expected.shape == (BATCH, 2, 2, 256)
    assert_close(keras_out(model, x - average), expected)


def test_numpy_matconvnet_reference_matches_torch_functional():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    layers = matconvnet_layers("vgg_m", 41)
    x = pixel_images(41, seed=6) - 120.0
    y = torch.from_numpy(nchw(x).astype(np.float64))
    for layer in layers[:-1]:
        if layer["type"] == "conv":
            filters, biases = (torch.from_numpy(w.astype(np.float64)) for w in layer["weights"][0])
            top, bottom, left, right = layer["pad"].ravel().astype(int)
            y = functional.conv2d(functional.pad(y, (left, right, top, bottom)),
                                  filters.permute(3, 2, 0, 1), biases.ravel(),
                                  stride=tuple(layer["stride"].ravel().astype(int)))
        elif layer["type"] == "relu":
            y = functional.relu(y)
        elif layer["type"] == "lrn":
            n, kappa, alpha, beta = layer["param"].ravel()
            # torch divides alpha by the window size n
            y = functional.local_response_norm(y, int(n), alpha * n, beta, kappa)
        else:
            top, bottom, left, right = layer["pad"].ravel().astype(int)
            y = functional.max_pool2d(functional.pad(y, (left, right, top, bottom), value=-np.inf),
                                      tuple(layer["pool"].ravel().astype(int)),
                                      tuple(layer["stride"].ravel().astype(int)))
    expected = matconvnet_forward(layers, x)
    assert_close(y.numpy().transpose(0, 2, 3, 1), expected, tol=1e-9)


def test_vgg_m_file_into_vgg_s_model_names_stride_or_pad(tmp_path):
    # At 41x41 VGG-M and VGG-S have the same weight shapes, fc6 included: only the
    # strides and pads tell them apart.
    def weight_shapes(variant):
        return [[np.shape(w) for w in layer["weights"][0]]
                for layer in matconvnet_layers(variant, 41) if "weights" in layer]

    assert weight_shapes("vgg_m") == weight_shapes("vgg_s")
    path = save_matconvnet(tmp_path / "imagenet-vgg-m.mat", matconvnet_layers("vgg_m", 41),
                           np.zeros((1, 1, 3)))
    with pytest.raises(ConversionError) as error:
        build_vgg("vgg_s", weights=path, input_shape=(41, 41, 3), classes=10)
    message = str(error.value)
    assert "stride" in message or "pad" in message, message
    # The first difference: pool1 (stride 2 vs 3) or conv2 (stride 2 pad 1 vs stride 1 pad 0).
    names = ("pool1", "conv2", "block1_pool", "block2_conv1")
    assert any(name in message for name in names), message


def test_matconvnet_wrong_filter_shape_names_layer_and_both_shapes(tmp_path):
    layers = matconvnet_layers("vgg_m", 41)
    conv3 = next(layer for layer in layers if layer["name"] == "conv3")
    conv3["weights"] = _cell([np.zeros((3, 3, 256, 384), np.float32),
                              np.zeros((1, 384), np.float32)])
    conv3["size"] = _row(3, 3, 256, 384)
    path = save_matconvnet(tmp_path / "imagenet-vgg-m.mat", layers, np.zeros((1, 1, 3)))
    with pytest.raises(ConversionError) as error:
        build_vgg("vgg_m", weights=path, input_shape=(41, 41, 3), classes=10)
    message = str(error.value)
    assert "conv3" in message or "block3_conv1" in message, message
    assert "(3, 3, 256, 512)" in message and "(3, 3, 256, 384)" in message, message


# ----------------------------------------------------------------------------------------
# convert(): to a Keras .weights.h5 and back


def assert_same_preprocessing_and_classes(a, b):
    """Two models carry the same preprocessing mode, mean and class names."""
    assert a.preprocessing.mode == b.preprocessing.mode
    if a.preprocessing.mean is None:
        assert b.preprocessing.mean is None
    else:
        np.testing.assert_array_equal(a.preprocessing.mean, b.preprocessing.mean)
    assert a.class_names == b.class_names


@pytest.mark.backend
def test_convert_matconvnet_round_trip_gives_identical_outputs(tmp_path):
    # 1000 classes, as every published file (convert builds the default classes=1000 model).
    names = [f"class {k}, synonym {k}" for k in range(1000)]
    average = np.random.default_rng(7).uniform(100, 130, (41, 41, 3)).astype(np.float32)
    source = save_matconvnet(tmp_path / "imagenet-vgg-m.mat",
                             matconvnet_layers("vgg_m", 41, classes=1000), average, names)
    output = convert(source, "vgg_m", tmp_path / "vgg_m.weights.h5", input_shape=(41, 41, 3))
    assert str(output) == str(tmp_path / "vgg_m.weights.h5")
    kwargs = dict(input_shape=(41, 41, 3), classifier_activation=None)
    direct = build_vgg("vgg_m", weights=source, **kwargs)
    converted = build_vgg("vgg_m", weights=output, **kwargs)
    x = pixel_images(41) - average
    np.testing.assert_array_equal(keras_out(converted, x), keras_out(direct, x))
    assert_same_preprocessing_and_classes(direct, converted)
    assert converted.preprocessing.mode == "mean_image"
    assert converted.class_names == names


@pytest.mark.backend
def test_convert_state_dict_round_trip_gives_identical_outputs(state_dict_file, tmp_path):
    _, source = state_dict_file("vgg11_bn", ".safetensors")
    output = convert(source, "vgg11_bn", tmp_path / "vgg11_bn.weights.h5", include_top=False)
    direct = build_vgg("vgg11_bn", weights=source, include_top=False)
    converted = build_vgg("vgg11_bn", weights=output, include_top=False)
    x = normal_images(32)
    np.testing.assert_array_equal(keras_out(converted, x), keras_out(direct, x))
    assert_same_preprocessing_and_classes(direct, converted)
    assert converted.preprocessing.mode == "torch"


def test_convert_refuses_existing_output_unless_overwrite(state_dict_file, tmp_path):
    _, first = state_dict_file("vgg11", ".npz")
    other = torchvision_state_dict("vgg11", hidden=64, seed=9)
    second = save_state_dict(tmp_path / "other.npz", other)
    output = tmp_path / "vgg11.weights.h5"
    convert(first, "vgg11", output, include_top=False)
    before = output.read_bytes()
    with pytest.raises(ValueError) as error:
        convert(second, "vgg11", output, include_top=False)
    assert str(output) in str(error.value), str(error.value)
    assert output.read_bytes() == before
    x = normal_images(32)
    from_first = keras_out(build_vgg("vgg11", weights=first, include_top=False), x)
    np.testing.assert_array_equal(
        keras_out(build_vgg("vgg11", weights=output, include_top=False), x), from_first)
    convert(second, "vgg11", output, include_top=False, overwrite=True)
    np.testing.assert_array_equal(
        keras_out(build_vgg("vgg11", weights=output, include_top=False), x),
        keras_out(build_vgg("vgg11", weights=second, include_top=False), x))


def test_convert_a_missing_source_says_so(tmp_path):
    from keras_vgg.convert import convert

    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ValueError, match=r"Expected `source` to be an existing file to convert. "
                                         r"Received: source='.*nowhere.pth'"):
        convert(missing, "vgg11", tmp_path / "out.weights.h5")
    assert not (tmp_path / "out.weights.h5").exists()


def test_a_missing_reader_package_names_the_extra(tmp_path, monkeypatch):
    """Without scipy (the convert extra), a .mat file is not called corrupted: the error says
    which extra to install."""
    import sys

    from keras_vgg._extras import MissingExtra
    from keras_vgg.convert import read_matconvnet

    monkeypatch.setitem(sys.modules, "scipy", None)  # `import scipy` fails, as when absent
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    path = tmp_path / "vgg_m.mat"
    path.write_bytes(b"not read")
    with pytest.raises(MissingExtra, match=r'scipy is not installed .*pip install "keras-vgg\[convert\]"'):
        read_matconvnet(path)
