"""The names the command line offers and recipes check, without Keras or TensorFlow.

``keras-vgg --help``, ``list``, ``recipes`` and ``finetune --dry-run`` build their parsers
and check recipes from these, so they answer without loading TensorFlow (seconds). The
modules that use each set re-export it under its old name (``keras_vgg.precision.PRECISIONS``,
``keras_vgg.preprocessing.MODES``, ...). Imports nothing.

Example:
    >>> from keras_vgg.choices import MODES, NAMED_MODES, QUANTIZE
    >>> NAMED_MODES, MODES[3], QUANTIZE[-1]
    (('caffe', 'torch', 'tf'), 'mean_image', 'int4')
"""

# Export (keras_vgg.export.formats): what a bundle may hold.
FORMATS = ("saved_model", "tflite", "onnx", "openvino")
DEFAULT_FORMATS = ("saved_model", "tflite")  # what `export` writes when not told
QUANTIZE = ("none", "float16", "dynamic", "int8", "int4")
TFLITE_ONLY = ("float16", "dynamic", "int4")  # quantize modes no ONNX or OpenVINO file takes
INT8_IO = ("uint8", "int8")
MIN_AGREEMENT = 0.8  # the default top-1 agreement gate of dynamic, int8 and int4 files
SAMPLE_IMAGES = 2000  # the most held-out or sample_data images an export is checked on
# What a model computes in (keras_vgg.precision).
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# Preprocessing modes (keras_vgg.preprocessing); the first three need nothing but their name.
MODES = ("caffe", "torch", "tf", "mean_image")
NAMED_MODES = MODES[:3]
# Filter ranking for pruning (keras_vgg.pruning).
CRITERIA = ("auto", "l1", "bn_scale")
# How compress spends its budget over the convs (keras_vgg.finetune.sensitivity).
PLANS = ("uniform", "sensitivity")
# tf.distribute strategies of a fine-tune run (keras_vgg.finetune.distribute).
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
# Published weights (keras_vgg.weights): the publishers, and what `weights=` accepts by name.
WEIGHTS_SOURCES = ("keras", "torchvision", "matconvnet")
WEIGHTS_NAMES = ("imagenet",) + WEIGHTS_SOURCES
# Foreign weight files (keras_vgg.convert).
TORCH_SUFFIXES = (".pth", ".pt")
STATE_DICT_SUFFIXES = TORCH_SUFFIXES + (".safetensors", ".npz")
SOURCE_SUFFIXES = STATE_DICT_SUFFIXES + (".mat",)
