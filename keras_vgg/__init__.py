"""keras_vgg: the whole VGG family for Keras 3.

Example:
    >>> import keras_vgg
    >>> model = keras_vgg.VGG16(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> model.output_shape
    (None, 512)

``keras_vgg.load_model(path)`` reads a ``.keras`` file or a run folder back with what the
model records (``model.variant``, ``model.preprocessing``, ``model.class_names``).
"""

from keras_vgg import _onednn, _quiet

_onednn.prefer_onednn()  # before TensorFlow loads: its fast CPU kernels
if _quiet.launched_as_cli():  # before TensorFlow loads: its native log lines go nowhere
    _quiet.silence_native_logs()

from keras_vgg.batch_norm import fold_batch_norm
from keras_vgg.configs import CONFIGS, VGGConfig, describe, get_config, list_models, min_input_size
from keras_vgg.features import block_outputs, feature_extractor, to_dense
from keras_vgg.embeddings import embed, nearest
from keras_vgg.gradcam import grad_cam
from keras_vgg.losses import PerceptualLoss, StyleLoss
from keras_vgg.labels import decode_predictions
from keras_vgg.layers import CeilMaxPooling2D, LocalResponseNormalization
from keras_vgg.models import (
    VGG11,
    VGG11LRN,
    VGG13,
    VGG16,
    VGG16C,
    VGG19,
    VGGF,
    VGGM,
    VGGM128,
    VGGM1024,
    VGGM2048,
    VGGS,
    build_vgg,
    get_model,
)
from keras_vgg.preprocessing import Preprocessing, preprocess_input
from keras_vgg.pruning import model_cost, plan_widths, prune
from keras_vgg.saving import load_model

__version__ = "0.1.0"

__all__ = [
    "VGG11",
    "VGG11LRN",
    "VGG13",
    "VGG16C",
    "VGG16",
    "VGG19",
    "VGGF",
    "VGGM",
    "VGGM2048",
    "VGGM1024",
    "VGGM128",
    "VGGS",
    "build_vgg",
    "get_model",
    "list_models",
    "get_config",
    "describe",
    "min_input_size",
    "feature_extractor",
    "block_outputs",
    "to_dense",
    "PerceptualLoss",
    "StyleLoss",
    "grad_cam",
    "embed",
    "nearest",
    "load_model",
    "prune",
    "plan_widths",
    "model_cost",
    "fold_batch_norm",
    "preprocess_input",
    "decode_predictions",
    "Preprocessing",
    "CONFIGS",
    "VGGConfig",
    "LocalResponseNormalization",
    "CeilMaxPooling2D",
]
