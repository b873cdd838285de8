"""Facts of the config table: parameters, shapes and sizes, computed without Keras models."""

import pytest

from keras_vgg import configs
from keras_vgg.configs import describe, get_config, list_models, min_input_size

# Keras-counted parameters (BN: 4 per channel), with top (1000 classes) and without.
# Anchors: keras.applications VGG16/VGG19, torchvision vgg11/vgg13 (and *_bn + 2 per BN channel).
# The rest derived by hand from the tables of SPEC.md section 1.
PARAMS = {
    "vgg11": (132_863_336, 9_220_480),
    "vgg11_lrn": (132_863_336, 9_220_480),
    "vgg13": (133_047_848, 9_404_992),
    "vgg16c": (133_638_952, 9_996_096),
    "vgg16": (138_357_544, 14_714_688),
    "vgg19": (143_667_240, 20_024_384),
    "vgg_f": (60_834_536, 2_203_392),
    "vgg_m": (102_908_520, 6_528_640),
    "vgg_s": (102_908_520, 6_528_640),
    "vgg_m_2048": (92_469_864, 6_528_640),
    "vgg_m_1024": (87_250_536, 6_528_640),
    "vgg_m_128": (82_683_624, 6_528_640),
    "vgg11_bn": (132_874_344, 9_231_488),
    "vgg13_bn": (133_059_624, 9_416_768),
    "vgg16c_bn": (133_655_848, 10_012_992),
    "vgg16_bn": (138_374_440, 14_731_584),
    "vgg19_bn": (143_689_256, 20_046_400),
}

# Simonyan & Zisserman Table 2, millions of parameters.
PAPER_TABLE_2 = {"vgg11": 133, "vgg11_lrn": 133, "vgg13": 133, "vgg16c": 134, "vgg16": 138,
                 "vgg19": 144}

# torchvision's published counts (BN counted as 2 per channel there).
TORCHVISION = {"vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544,
               "vgg19": 143_667_240, "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736,
               "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248}

# Every pool output (height = width) and the fc6 input at 224x224x3.
FAST_NET_POOLS = {
    "vgg_f": ({"block1_pool": 27, "block2_pool": 13, "block5_pool": 6}, (6, 6, 256)),
    "vgg_m": ({"block1_pool": 54, "block2_pool": 13, "block5_pool": 6}, (6, 6, 512)),
    "vgg_s": ({"block1_pool": 37, "block2_pool": 17, "block5_pool": 6}, (6, 6, 512)),
}

MIN_SIZE = {"vgg_f": 39, "vgg_m": 41, "vgg_s": 31}  # A-E: 32 (five 2x2 pools)


def test_table_covers_every_variant():
    assert list_models() == list(PARAMS)


@pytest.mark.parametrize("name", list(PARAMS))
def test_params_from_table(name):
    with_top, headless = PARAMS[name]
    assert describe(name).params == with_top
    assert describe(name, include_top=False).params == headless


@pytest.mark.parametrize("name", list(PAPER_TABLE_2))
def test_paper_table_2_millions(name):
    assert round(describe(name).params / 1e6) == PAPER_TABLE_2[name]


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_counts(name):
    config = get_config(name)
    bn_channels = sum(l.filters for b in config.blocks for l in b if isinstance(l, configs.Conv))
    keras_extra = 2 * bn_channels if config.batch_norm else 0
    assert describe(name).params == TORCHVISION[name] + keras_extra


@pytest.mark.parametrize("name", list(FAST_NET_POOLS))
def test_fast_nets_pool_sizes_and_fc6_at_224(name):
    pools, fc6 = FAST_NET_POOLS[name]
    rows = {row.name: row.output_shape for row in describe(name).layers}
    assert {k: rows[k][0] for k in pools} == pools
    assert {k: rows[k][1] for k in pools} == pools
    assert describe(name).fc6_input == fc6


def test_deep_nets_fc6_input_is_7x7x512():
    for name in ("vgg11", "vgg11_lrn", "vgg13", "vgg16c", "vgg16", "vgg19", "vgg16_bn"):
        assert describe(name).fc6_input == (7, 7, 512)


def test_gflops_vgg16():
    # 15.47 G multiply-adds (torchvision's "GFLOPS" column) -> 30.94 GFLOPs.
    assert describe("vgg16").gflops == pytest.approx(30.94, abs=0.01)
    assert describe("vgg19").gflops == pytest.approx(39.26, abs=0.01)


@pytest.mark.parametrize("name", list_models())
def test_min_input_size(name):
    size = min_input_size(name)
    assert size == MIN_SIZE.get(name.replace("_2048", "").replace("_1024", "").replace("_128", ""), 32)
    describe(name, (size, size, 3))  # smallest size works
    with pytest.raises(ValueError, match="input_shape"):
        describe(name, (size - 1, size - 1, 3))


def test_released_vgg_s_conv2_has_no_padding():
    conv2 = get_config("vgg_s").blocks[1][0]
    assert (conv2.kernel, conv2.stride, conv2.pad) == (5, 1, 0)


def test_vgg16c_has_1x1_convs_in_blocks_3_to_5():
    config = get_config("C")
    assert [block[2].kernel for block in config.blocks[2:]] == [1, 1, 1]
    assert [block[2].filters for block in config.blocks[2:]] == [256, 512, 512]


def test_lrn_parameters_are_krizhevsky():
    lrn = get_config("A-LRN").blocks[0][1]
    assert (lrn.depth_radius, lrn.bias, lrn.alpha, lrn.beta) == (2, 2.0, 1e-4, 0.75)


@pytest.mark.parametrize(
    "alias, name",
    [("D", "vgg16"), ("E", "vgg19"), ("A-LRN", "vgg11_lrn"), ("M-2048", "vgg_m_2048"),
     ("vgg-f", "vgg_f"), ("VGG16_BN", "vgg16_bn"), ("d-bn", "vgg16_bn"), ("vgg16-c", "vgg16c")],
)
def test_aliases(alias, name):
    assert get_config(alias).name == name


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"variant='vgg17'") as info:
        get_config("vgg17")
    assert "vgg16_bn" in str(info.value)
    with pytest.raises(ValueError, match="variant=16"):
        get_config(16)
