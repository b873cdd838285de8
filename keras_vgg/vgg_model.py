"""VGGModel: a Functional model that carries what its weights expect, in its own config.

Its variant, preprocessing and class names are part of ``get_config()``, so a ``.keras``
file keeps them: loaded alone in a fresh process (``safe_mode=True``, after
``import keras_vgg``), the model still says how to preprocess its inputs and what its
outputs mean. Every keras_vgg builder returns one; fine-tuned models are one too.

Example:
    >>> import keras
    >>> from keras_vgg.vgg_model import VGGModel
    >>> inputs = keras.Input((8, 8, 3))
    >>> model = VGGModel(inputs, keras.layers.GlobalAveragePooling2D()(inputs),
    ...                  variant="vgg16", preprocessing="caffe", class_names=["r", "g", "b"])
    >>> clone = VGGModel.from_config(model.get_config())
    >>> clone.variant, clone.preprocessing.mode, clone.class_names
    ('vgg16', 'caffe', ['r', 'g', 'b'])
"""

from __future__ import annotations

import keras

from keras_vgg.preprocessing import Preprocessing, as_preprocessing

INFO_KEYS = ("variant", "preprocessing", "class_names", "widths")


@keras.saving.register_keras_serializable(package="keras_vgg")
class VGGModel(keras.Model):
    """``keras.Model(inputs, outputs)`` plus ``variant`` (a config name), ``preprocessing``
    (a :class:`Preprocessing`, a mode name or ``{"mode", "mean"}``) and ``class_names``;
    each may be None (a model built with ``weights=None`` does not know its preprocessing);
    and ``widths``, the filters of every conv when they are not the variant's own (a pruned
    model, ``keras_vgg.pruning``), else None."""

    def __init__(self, *args, variant=None, preprocessing=None, class_names=None, widths=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.variant = variant
        self.preprocessing = preprocessing
        self.class_names = class_names
        self.widths = None if widths is None else tuple(int(w) for w in widths)

    @property
    def preprocessing(self) -> Preprocessing | None:
        return self._vgg_preprocessing

    @preprocessing.setter
    def preprocessing(self, value):
        self._vgg_preprocessing = None if value is None else as_preprocessing(value)

    @property
    def class_names(self) -> list | None:
        return None if self._vgg_class_names is None else list(self._vgg_class_names)

    @class_names.setter
    def class_names(self, value):
        if value is not None and (isinstance(value, str)
                                  or not all(isinstance(n, str) for n in value)):
            raise ValueError(f"Expected `class_names` to be a list of strings. "
                             f"Received: class_names={value!r}")
        self._vgg_class_names = None if value is None else tuple(value)

    def get_config(self):
        config = super().get_config()
        preprocessing = self.preprocessing
        config.update(
            variant=self.variant,
            preprocessing=None if preprocessing is None else preprocessing.to_json(),
            class_names=self.class_names,
            widths=None if self.widths is None else list(self.widths),
        )
        return config

