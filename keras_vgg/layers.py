"""Custom layers of the VGG family, registered for safe `.keras` loading.

Example:
    >>> import numpy as np
    >>> from keras_vgg.layers import CeilMaxPooling2D, LocalResponseNormalization
    >>> x = np.random.rand(1, 54, 54, 8).astype("float32")
    >>> CeilMaxPooling2D(3, 2)(LocalResponseNormalization()(x)).shape
    TensorShape([1, 27, 27, 8])
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_vgg.configs import is_int

PACKAGE = "keras_vgg"


def channel_window(channels, depth_radius, alpha=1.0):
    """The ``(channels, channels)`` banded matrix that sums each channel's window, times
    ``alpha``: ``alpha`` where ``|i - j| <= depth_radius``, else 0.

    Example:
        >>> channel_window(4, 1)
        array([[1., 1., 0., 0.],
               [1., 1., 1., 0.],
               [0., 1., 1., 1.],
               [0., 0., 1., 1.]], dtype=float32)
    """
    index = np.arange(channels)
    return (alpha * (np.abs(index[:, None] - index[None]) <= depth_radius)).astype("float32")


def local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75):
    """LRN over the last axis, TensorFlow's formula, in ops that every Keras backend and
    TFLite's int8 kernels cover.

    ``out = x / (bias + alpha * sum(x[..., c-r:c+r+1] ** 2)) ** beta``, computed as
    ``(x * e) * e`` with ``e = exp(-beta / 2 * log(d))``, where ``d = bias + alpha *
    window sum`` is a 1x1 convolution of ``x * x`` with the banded :func:`channel_window`.
    In TFLite: MUL, CONV_2D, LOG, MUL, EXP, MUL, MUL, each with an int8 kernel. Why ``e``
    twice and not ``x * e**2``: TFLite's int8 calibration runs the float model with
    in-place kernels, and a factor used only by the last MUL shares its buffer with the
    product, so it is calibrated to the product's range (68x its own in a VGG-S at 48
    px, whose int8 probabilities were then 0.23 off instead of 0.016); used twice, it
    keeps its own.
    ``x`` is channels_last with 1 to 3 spatial axes; a bfloat16 or float16 ``x`` is
    normalised in float32 and cast back.
    """
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    window = channel_window(x.shape[-1], depth_radius, alpha)
    kernel = window.reshape((1,) * (len(x.shape) - 2) + window.shape)  # 1x1, channels -> channels
    kernel = ops.convert_to_tensor(kernel, x.dtype)
    d = ops.conv(x * x, kernel, data_format="channels_last") + bias
    e = ops.exp(-0.5 * beta * ops.log(d))
    return ops.cast(x * e * e, dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalisation across channels (Krizhevsky et al. 2012).

    Same arguments and result as ``tf.nn.local_response_normalization`` (to float32
    rounding, ~2e-7 of the output's scale), on every backend, with one implementation,
    :func:`local_response_normalization`: square, the channel-window sum as a 1x1
    convolution with a constant banded matrix, and the power as ``exp(-beta * log(.))``.
    Exported to TFLite that is MUL, CONV_2D, LOG, MUL, EXP, MUL, MUL: builtins with int8
    kernels, so a full-int8 file of an LRN variant is int8 end to end (TFLite's own
    ``LOCAL_RESPONSE_NORMALIZATION`` is float32 only and XNNPACK does not take it:
    ``benchmarks/export_lrn.py``). Keras on TensorFlow computes the same graph;
    ``tf.nn.local_response_normalization`` would be a few percent faster there
    (docs/benchmarks.md). Caffe's ``local_size=5, alpha=5e-4`` is ``depth_radius=2,
    alpha=1e-4`` here (Caffe divides alpha by the window size).

    Args:
        depth_radius: half-width of the channel window (window = 2r + 1).
        bias: the additive constant ``k``.
        alpha: scale of the squared sum, per element.
        beta: exponent.

    Example:
        >>> import keras, numpy as np
        >>> x = np.random.default_rng(0).uniform(0, 100, (1, 4, 4, 8)).astype("float32")
        >>> y = keras.ops.convert_to_numpy(LocalResponseNormalization()(x))
        >>> sums = np.stack([(x[..., max(0, c - 2):c + 3] ** 2).sum(-1) for c in range(8)], -1)
        >>> bool(np.allclose(y, x / (2.0 + 1e-4 * sums) ** 0.75, rtol=1e-5, atol=0))
        True
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if not is_int(depth_radius) or depth_radius < 0:
            raise ValueError(
                f"Expected `depth_radius` to be a non-negative int. Received: depth_radius={depth_radius!r}"
            )
        for arg, value in (("bias", bias), ("alpha", alpha), ("beta", beta)):
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"Expected `{arg}` to be a non-negative number. Received: {arg}={value!r}"
                )
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs):
        return local_response_normalization(
            inputs, self.depth_radius, self.bias, self.alpha, self.beta
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }


def _small_map_conv(inputs, kernel):
    """A stride-1 "same" convolution as one matrix product of the k*k shifted copies
    (im2col), for maps smaller than the kernel."""
    k_h, k_w, channels, filters = kernel.shape
    height, width = inputs.shape[1], inputs.shape[2]
    top, left = (k_h - 1) // 2, (k_w - 1) // 2
    padded = ops.pad(inputs, [[0, 0], [top, k_h - 1 - top], [left, k_w - 1 - left], [0, 0]])
    shifted = [padded[:, i : i + height, j : j + width] for i in range(k_h) for j in range(k_w)]
    patches = ops.concatenate(shifted, axis=-1)  # (n, h, w, k*k*channels), kernel's order
    return ops.matmul(patches, ops.reshape(kernel, (k_h * k_w * channels, filters)))


@keras.saving.register_keras_serializable(package=PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (same arguments, weights and results), with one detour.

    On the jax backend on a CPU, XLA's convolution takes a path hundreds of times slower
    when a "same" 3x3 convolution meets a map smaller than its kernel: 518 ms instead of
    8 ms for VGG's block5 at 2x2 (a 32x32 input), batch 32, 512 channels, forward; 976 ms
    instead of 25 ms with its gradients (XLA 0.10, 2-core Xeon). There, and only there, the
    convolution is computed as one matrix product of the shifted maps (im2col), equal to
    the convolution to float32 rounding (tests/test_backends.py). Every other case, and
    every other backend, is Keras's own ``ops.conv``.
    """

    def _small_map(self, inputs) -> bool:
        if keras.backend.backend() != "jax" or self.padding != "same" or self.groups != 1:
            return False
        if tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1):
            return False
        if self.data_format != "channels_last":
            return False
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            return False
        if height >= self.kernel_size[0] and width >= self.kernel_size[1]:
            return False
        import jax

        return jax.default_backend() == "cpu"

    def convolution_op(self, inputs, kernel):
        if self._small_map(inputs):
            return _small_map_conv(inputs, kernel)
        return super().convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CeilMaxPooling2D(keras.layers.Layer):
    """Max pooling that rounds the output size up, as Caffe and MatConvNet do.

    Output size is ``ceil((size - pool_size) / strides) + 1``: the last window may
    hang over the bottom/right edge and then pools only the pixels it covers.
    Implemented as a pad of ``strides - 1`` pixels at the bottom/right and a "valid"
    max pool. The pad must never win a max: with ``pad_value=None`` it is the input's
    minimum on TensorFlow (a REDUCE_MIN and a PADV2 in TFLite), -inf on jax and torch,
    right for inputs of any sign; with a number it is that constant (one PAD in TFLite),
    right when no input is below it: ``0.0`` after a ReLU, which is what the builder
    passes where the input is non-negative. Valid for ``pool_size >= strides`` (every
    VGG-F/M/S pool); channels_last.

    Args:
        pool_size: window size (int).
        strides: step (int); defaults to ``pool_size``.
        pad_value: None (the input's minimum: any input) or a finite number no input
            is below (e.g. ``0.0`` for non-negative inputs). Files saved before this
            argument existed load with None.

    Example:
        >>> import keras, numpy as np
        >>> x = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
        >>> y = CeilMaxPooling2D(2, pad_value=0.0)(x)
        >>> keras.ops.convert_to_numpy(y)[0, :, :, 0]
        array([[ 6.,  8.,  9.],
               [16., 18., 19.],
               [21., 23., 24.]], dtype=float32)
    """

    def __init__(self, pool_size=2, strides=None, pad_value=None, **kwargs):
        super().__init__(**kwargs)
        strides = pool_size if strides is None else strides
        for arg, value in (("pool_size", pool_size), ("strides", strides)):
            if not is_int(value) or value < 1:
                raise ValueError(f"Expected `{arg}` to be a positive int. Received: {arg}={value!r}")
        if pool_size < strides:
            raise ValueError(
                "Expected `pool_size >= strides` (windows that overlap or touch). "
                f"Received: pool_size={pool_size}, strides={strides}"
            )
        if pad_value is not None and (
            not isinstance(pad_value, numbers.Real) or isinstance(pad_value, bool)
            or not math.isfinite(pad_value)
        ):
            raise ValueError("Expected `pad_value` to be None or a finite number. "
                             f"Received: pad_value={pad_value!r}")
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.pad_value = None if pad_value is None else float(pad_value)

    def call(self, inputs):
        extra = self.strides - 1
        if extra:
            # pad_value=None: on TensorFlow the input's minimum (TFLite quantises it, not an
            # infinity); on jax and torch -inf (torch's pad takes a number, not a tensor).
            # Every window holds at least one real pixel, so such a pad never wins a max.
            value = self.pad_value
            if value is None:
                tensorflow = keras.backend.backend() == "tensorflow"
                value = ops.min(inputs) if tensorflow else float("-inf")
            inputs = ops.pad(
                inputs, [[0, 0], [0, extra], [0, extra], [0, 0]], constant_values=value
            )
        return ops.max_pool(inputs, self.pool_size, self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        def size(n):
            return None if n is None else (n + self.strides - 1 - self.pool_size) // self.strides + 1

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), input_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "pad_value": self.pad_value,
        }
