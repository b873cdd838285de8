"""Knowledge distillation for compress: the pruned student learns from the unpruned model
(the teacher: the run's best.keras, frozen, in inference mode) as well as from the labels.

Keras's ``keras.distillation.Distiller`` does the training step on every backend: the loss
is ``label_weight`` x the labels' cross-entropy + (1 - ``label_weight``) x the distillation
losses, which are

- the logits with a temperature (Hinton et al. 2015, ``LogitsDistillation``, weight 1): the
  KL divergence of the softened class distributions, x T^2. A keras_vgg classifier ends in a
  softmax, so its logits are taken as the log-probabilities (equal to the logits up to a
  constant per image, which a softmax ignores);
- each block's output (its pool), ``FeatureDistillation`` (FitNets, Romero et al. 2015),
  weight ``feature_weight`` shared equally among the blocks: the mean squared difference
  from the teacher's block output, relative to the teacher's mean square (scale-free).

Widths: a pruned block is narrower than the teacher's, but its channels are the teacher's
own filters (pruning keeps filters, it does not mix them), so each student channel is
compared with the teacher channel it was pruned from. That makes every block "a width that
allows", with no projection to learn; Keras's FeatureDistillation has none (it holds no
weights) and a learned one would add a model to train, back up and throw away. Where a
block keeps all its filters the comparison is plain FeatureDistillation's. Through
iterative steps the indices are followed back to the teacher (:meth:`Teacher.after`).

Two things Keras's Distiller does not do, done here: it reads block outputs of a model
nested inside the classifier (``image -> base -> head``: :class:`_Distiller` taps the base
in the same pass), and it ignores sample weights, so the recipe's class weights go into the
label loss itself (:class:`WeightedCrossEntropy`). Cost: each step runs the teacher
forward as well as the student (once: :class:`_Distiller` keeps the block outputs of the
pass that gives the predictions, where Keras's runs the student a second time for them).

The saved models stay plain keras_vgg classifiers: the checkpoint saves the student, never
the Distiller.

Example:
    >>> from keras_vgg.finetune.model import build_finetune_model
    >>> from keras_vgg.finetune.recipe import Recipe
    >>> from keras_vgg.pruning import prune
    >>> teacher = build_finetune_model(Recipe().but({"model.name": "vgg11",
    ...                                              "model.image_size": 32}), num_classes=3)
    >>> settings = DistillSettings(temperature=3.0, feature_weight=1.0)
    >>> student = prune(teacher, flops=0.3)
    >>> step = Teacher.of(teacher, settings).after(teacher, student.widths)
    >>> sorted(step.taps()), len(step.taps()["block1_pool"])
    (['block1_pool', 'block2_pool', 'block3_pool', 'block4_pool', 'block5_pool'], 35)
    >>> step.distiller(student, None).student is student
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from keras_vgg.pruning import block_outputs, conv_names, conv_widths, kept_filters, vgg_base

LABEL_WEIGHT = 0.5  # the Distiller's student_loss_weight (Keras's default)


@dataclass(frozen=True)
class DistillSettings:
    """How the student learns from the teacher: the logits' temperature and the weight of
    the block outputs (0: logits only); the labels weigh ``label_weight``."""

    temperature: float
    feature_weight: float
    label_weight: float = LABEL_WEIGHT


@dataclass(frozen=True)
class Teacher:
    """The unpruned model and which of its filters the student holds: ``kept`` maps each
    conv's name to the teacher's filter indices the student's conv carries, in order."""

    model: keras.Model
    settings: DistillSettings
    kept: dict

    @classmethod
    def of(cls, model, settings: DistillSettings) -> Teacher:
        """``model`` as the teacher of a student not yet pruned (every filter kept)."""
        model.trainable = False
        widths = conv_widths(model)
        return cls(model, settings, {name: np.arange(n) for name, n in zip(
            conv_names(model), widths)})

    def after(self, model, widths, criterion="auto") -> Teacher:
        """The teacher of ``model`` pruned to ``widths`` (``model``: this teacher's student
        so far), its kept indices followed through that pruning."""
        step = kept_filters(model, widths, criterion)
        return Teacher(self.model, self.settings,
                       {name: self.kept[name][kept] for name, kept in step.items()})

    def taps(self) -> dict:
        """``{block output (pool): the teacher's channels the student's carries}``."""
        return {pool: self.kept[conv] for pool, conv in block_outputs(self.model).items()}

    def distiller(self, student, class_weight):
        """Keras's Distiller training ``student`` from this teacher (``class_weight``: the
        fit's, moved into the label loss: compile it with :func:`label_loss`)."""
        settings = self.settings
        losses, weights = [_SoftmaxLogits(settings.temperature)], [1.0]
        taps = self.taps() if settings.feature_weight else {}
        for pool, channels in taps.items():
            losses.append(_KeptChannels(pool, channels))
            weights.append(settings.feature_weight / len(taps))
        distiller = _Distiller(teacher=self.model, student=student,
                               distillation_losses=losses, distillation_loss_weights=weights,
                               student_loss_weight=settings.label_weight)
        distiller(keras.Input(student.input_shape[1:]))  # built: BackupAndRestore needs it
        return distiller

    def to_json(self) -> dict:
        """What the report records: the settings and the block outputs distilled."""
        return {"on": True, "temperature": self.settings.temperature,
                "label_weight": self.settings.label_weight, "logits_weight": 1.0,
                "feature_weight": self.settings.feature_weight,
                "features": sorted(self.taps()) if self.settings.feature_weight else []}


class WeightedCrossEntropy(keras.losses.Loss):
    """Sparse categorical cross-entropy with each image weighted by its class, as ``fit``'s
    ``class_weight`` weighs it (the mean over the batch of weight x loss)."""

    def __init__(self, class_weight: dict, name="weighted_cross_entropy"):
        super().__init__(name=name)
        self.weights = [float(class_weight[i]) for i in range(len(class_weight))]

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        losses = keras.losses.sparse_categorical_crossentropy(labels, y_pred)
        weights = keras.ops.take(keras.ops.convert_to_tensor(self.weights), labels)
        return losses * keras.ops.cast(weights, losses.dtype)


def label_loss(class_weight):
    """The Distiller's label loss: cross-entropy, class-weighted when ``class_weight``."""
    if class_weight is None:
        return "sparse_categorical_crossentropy"
    return WeightedCrossEntropy(class_weight)


class _SoftmaxLogits(keras.distillation.LogitsDistillation):
    """LogitsDistillation for models ending in a softmax: their log-probabilities are the
    logits (up to a constant per image), and the loss is the KL divergence of the softened
    distributions x T^2 (a ``KLDivergence`` instance: Keras applies the softmax for it)."""

    def __init__(self, temperature):
        super().__init__(temperature=temperature, loss=keras.losses.KLDivergence())

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        def logits(p):
            return keras.ops.log(keras.ops.clip(keras.ops.cast(p, "float32"), 1e-7, 1.0))

        return super().compute_loss(logits(teacher_outputs), logits(student_outputs))


class _KeptChannels(keras.distillation.FeatureDistillation):
    """FeatureDistillation at block output ``pool``: the student's channels against the
    teacher's ``channels`` they were pruned from, the mean squared difference relative to
    the teacher's mean square. The layer is looked up inside the base."""

    def __init__(self, pool, channels):
        self.channels = np.asarray(channels, "int32")
        super().__init__(loss=self._relative_mse, teacher_layer_name=pool,
                         student_layer_name=pool)

    def _relative_mse(self, teacher, student):
        ops = keras.ops
        teacher = ops.take(ops.cast(teacher, "float32"), self.channels, axis=-1)
        error = ops.mean(ops.square(teacher - ops.cast(student, "float32")))
        return error / (ops.mean(ops.square(teacher)) + 1e-6)

    def validate_model_compatibility(self, teacher, student):
        for model in (teacher, student):
            vgg_base(model).get_layer(self.teacher_layer_name)


class _Distiller(keras.distillation.Distiller):
    """Keras's Distiller whose feature taps may sit in the classifier's nested base, and
    whose student runs once per step: Keras's calls it for the predictions and again for
    the block outputs (two BatchNorm updates a step); here the forward pass that gives the
    predictions keeps the block outputs for the loss."""

    def _create_feature_extractor(self, model, layer_names):
        return tapped(model, layer_names) if layer_names else None

    def call(self, inputs, training=None, **kwargs):
        if self._student_feature_extractor is None:
            return super().call(inputs, training=training, **kwargs)
        features = self._student_feature_extractor(inputs, training=training)
        self._last_student_features = features
        return features["final_output"]

    def _extract_all_student_features(self, x, y_pred):
        features = getattr(self, "_last_student_features", None)
        if features is not None and features["final_output"] is y_pred:
            return features
        return super()._extract_all_student_features(x, y_pred)


def tapped(model, layer_names) -> keras.Model:
    """``image -> {"final_output": prediction, name: output of layer name...}`` in one pass,
    with ``model``'s own layers: the layers named are in its keras_vgg base, which is
    ``model`` itself or the first of a chain ``image -> base -> head...``."""
    base = vgg_base(model)
    inner = keras.Model(base.inputs, [base.output] + [
        base.get_layer(name).output for name in layer_names], name=f"{base.name}_taps")
    image = keras.Input(model.input_shape[1:], name="image")
    outputs = inner(image)
    x = outputs[0]
    if base is not model:
        after = model.layers[model.layers.index(base) + 1:]
        if len(model.layers) - len(after) != 2:
            raise ValueError("Expected a classifier `image -> base -> head...` to distill "
                             f"its base's block outputs. Received: model={model.name!r}")
        for layer in after:
            x = layer(x)
    return keras.Model(image, {"final_output": x, **dict(zip(layer_names, outputs[1:]))},
                       name=f"{model.name}_multi_feature_extractor")
