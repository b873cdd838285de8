"""Model surgery for fine-tuning: a keras_vgg base, a new head, freezing by block.

The fine-tune model is ``image -> base(training=False) -> head``, where ``base``
and ``head`` are nested models named "base" and "head". Keeping the head a
model of its own lets the feature-cache path train exactly the layers the full
model uses.

Example:
    >>> from keras_vgg.finetune.recipe import Recipe
    >>> from keras_vgg.finetune.model import build_finetune_model, freeze
    >>> recipe = Recipe().but({"model.name": "vgg11", "model.image_size": 32})
    >>> model = build_finetune_model(recipe, num_classes=3)
    >>> model.output_shape
    (None, 3)
    >>> freeze(model, "block4")[-1]
    'block4_conv2'
"""

from __future__ import annotations

import re
from pathlib import Path

import keras

from keras_vgg.configs import get_config
from keras_vgg.models import get_model
from keras_vgg.vgg_model import VGGModel
from keras_vgg.weights import NAMES as WEIGHTS_NAMES, file_record
from keras_vgg.finetune.recipe import freeze_blocks


def weights_widths(weights):
    """The conv widths a weights file records (a pruned model's), else None."""
    if weights is None or weights in WEIGHTS_NAMES or not Path(weights).is_file():
        return None
    return (file_record(weights) or {}).get("widths")


def build_base(recipe) -> keras.Model:
    """The pretrained part: headless for avg/max/flatten heads, up to fc2 for the "fc" head.
    A pruned model's file as ``weights`` gives the base its widths."""
    shape = (recipe.model.image_size, recipe.model.image_size, 3)
    widths = weights_widths(recipe.model.weights)
    if recipe.model.head != "fc":
        return get_model(recipe.model.name, include_top=False, weights=recipe.model.weights,
                         input_shape=shape, name="base", widths=widths)
    full = get_model(recipe.model.name, include_top=True, weights=recipe.model.weights, input_shape=shape,
                     widths=widths)
    # what the weights said (preprocessing, class names) travels with them
    return VGGModel(full.input, full.get_layer("predictions").input, name="base",
                    variant=full.variant, preprocessing=full.preprocessing,
                    class_names=full.class_names, widths=full.widths)


def build_head(recipe, feature_shape, num_classes) -> keras.Sequential:
    """Pooling (or flatten), an optional hidden Dense, dropout, and the new classifier."""
    layers = [keras.Input(feature_shape, name="features")]
    pooling = {
        "avg": keras.layers.GlobalAveragePooling2D(name="avg_pool"),
        "max": keras.layers.GlobalMaxPooling2D(name="max_pool"),
        "flatten": keras.layers.Flatten(name="flatten"),
    }.get(recipe.model.head)
    if pooling is not None:
        layers.append(pooling)
    if recipe.model.head_units:
        layers.append(keras.layers.Dense(recipe.model.head_units, activation="relu", name="head_fc"))
    if recipe.model.head_dropout:
        layers.append(keras.layers.Dropout(recipe.model.head_dropout, name="head_dropout"))
    # float32 whatever the dtype policy: a softmax in float16/bfloat16 loses the small classes.
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="predictions",
                                     dtype="float32"))
    return keras.Sequential(layers, name="head")


def bn_training(recipe) -> bool:
    """Whether BatchNormalization layers in unfrozen blocks train (statistics, scale, offset)."""
    if recipe.model.bn_training == "auto":
        return recipe.model.weights is None
    return recipe.model.bn_training


def build_finetune_model(recipe, num_classes: int, class_names=None) -> VGGModel:
    """``image -> base -> head`` for ``num_classes`` classes, a VGGModel that records the
    run's class names (and, set by the run, its preprocessing: best.keras alone says them)."""
    base = build_base(recipe)
    head = build_head(recipe, base.output_shape[1:], num_classes)
    image = keras.Input((recipe.model.image_size, recipe.model.image_size, 3), name="image")
    features = base(image)
    variant = get_config(recipe.model.name).name
    return VGGModel(image, head(features), name=f"{variant}_finetune", variant=variant,
                    class_names=class_names)


def block_of(layer_name: str) -> int | None:
    match = re.match(r"block(\d+)_", layer_name)
    return int(match.group(1)) if match else None


def freeze(model: keras.Model, spec: str, freeze_bn: bool = True) -> list[str]:
    """Freezes the base by ``spec`` ("all", "none", "blockN": blocks 1..N); returns frozen names.

    The head always trains. Layers of the base outside the conv blocks (fc1, fc2 of
    the "fc" head) are frozen only by "all". With ``freeze_bn`` every BatchNormalization
    layer stays frozen, which in Keras 3 also keeps it in inference mode: the statistics
    stay those of the pretrained weights when its block unfreezes (keras-io's rule).
    keras-io's other spelling, ``base(x, training=False)``, does not hold in Keras 3:
    ``fit`` passes ``training=True`` down through a nested model (keras-team/keras#20285).
    """
    base = model.get_layer("base")
    blocks = freeze_blocks(spec)
    base.trainable = True
    frozen = []
    for layer in base.layers:
        block = block_of(layer.name)
        layer.trainable = not (blocks is None or (block is not None and block <= blocks)
                               or (freeze_bn and isinstance(layer, keras.layers.BatchNormalization)))
        if not layer.trainable and layer.weights:
            frozen.append(layer.name)
    if blocks is None:
        base.trainable = False
    return frozen
