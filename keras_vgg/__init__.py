"""keras_vgg: the whole VGG family for Keras 3.

Example:
    >>> import keras_vgg
    >>> model = keras_vgg.VGG16(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> model.output_shape
    (None, 512)

``keras_vgg.load_model(path)`` reads a ``.keras`` file or a run folder back with what the
model records (``model.variant``, ``model.preprocessing``, ``model.class_names``).

Names load on first use (PEP 562): ``import keras_vgg`` alone does not load Keras or
TensorFlow, so ``keras-vgg --help`` answers at once.
"""

import sys

from keras_vgg import _onednn, _quiet
from keras_vgg._helpers import lazy_exports

_onednn.prefer_onednn()  # before TensorFlow loads: its fast CPU kernels
_quiet.quiet_before_tensorflow()  # before TensorFlow loads: its native log lines, see _quiet

# {module: the names the package gives from it}, imported when first used.
LAZY = {
    "keras_vgg._helpers": ("OutputExists",),
    "keras_vgg.batch_norm": ("fold_batch_norm",),
    "keras_vgg.configs": ("CONFIGS", "VGGConfig", "describe", "get_config", "list_models",
                          "min_input_size"),
    "keras_vgg.features": ("block_outputs", "feature_extractor", "to_dense"),
    "keras_vgg.embeddings": ("embed", "nearest"),
    "keras_vgg.gradcam": ("grad_cam",),
    "keras_vgg.losses": ("PerceptualLoss", "StyleLoss"),
    "keras_vgg.labels": ("decode_predictions",),
    "keras_vgg.layers": ("CeilMaxPooling2D", "LocalResponseNormalization"),
    "keras_vgg.models": ("VGG11", "VGG11LRN", "VGG13", "VGG16", "VGG16C", "VGG19", "VGGF",
                         "VGGM", "VGGM128", "VGGM1024", "VGGM2048", "VGGS", "build_vgg",
                         "get_model", "get_model_builder"),
    "keras_vgg.preprocessing": ("Preprocessing", "preprocess_input"),
    "keras_vgg.pruning": ("model_cost", "plan_widths", "prune"),
    "keras_vgg.saving": ("load_model",),
}

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
    "get_model_builder",
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
    "OutputExists",
]

__getattr__, __dir__ = lazy_exports(__name__, LAZY)

if "keras" in sys.modules:  # `import keras, keras_vgg`: TensorFlow's start-up already paid
    # The classes a .keras file names, registered now: keras.saving.load_model reads a
    # keras_vgg model without a keras_vgg name used first (import keras_vgg after keras).
    from keras_vgg import layers, losses, vgg_model  # noqa: E402,F401
