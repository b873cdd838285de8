"""Custom layers of the VGG family, registered for safe `.keras` loading.

Example:
    >>> import numpy as np
    >>> from keras_vgg.layers import CeilMaxPooling2D, LocalResponseNormalization
    >>> x = np.random.rand(1, 54, 54, 8).astype("float32")
    >>> CeilMaxPooling2D(3, 2)(LocalResponseNormalization()(x)).shape
    TensorShape([1, 27, 27, 8])
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

from keras_vgg.configs import is_int

PACKAGE = "keras_vgg"




def local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75):
    """Backend-independent LRN over the last axis, TensorFlow's formula.

    ``out = x / (bias + alpha * sum(x[..., c-r:c+r+1] ** 2)) ** beta``
    """
    channels = x.shape[-1]
    squared = ops.square(x)
    pad = [[0, 0]] * (len(x.shape) - 1) + [[depth_radius, depth_radius]]
    squared = ops.pad(squared, pad)
    window_sum = sum(squared[..., i : i + channels] for i in range(2 * depth_radius + 1))
    return x / ops.power(bias + alpha * window_sum, beta)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalisation across channels (Krizhevsky et al. 2012).

    Same arguments and result as ``tf.nn.local_response_normalization``; on the
    TensorFlow backend it calls that op, so TFLite converts it to its builtin
    ``LOCAL_RESPONSE_NORMALIZATION``. Caffe's ``local_size=5, alpha=5e-4`` is
    ``depth_radius=2, alpha=1e-4`` here (Caffe divides alpha by the window size).

    Args:
        depth_radius: half-width of the channel window (window = 2r + 1).
        bias: the additive constant ``k``.
        alpha: scale of the squared sum, per element.
        beta: exponent.
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
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # TensorFlow's CPU kernel has no bfloat16 form: bfloat16 runs it in float32.
            x = tf.cast(inputs, "float32") if inputs.dtype == tf.bfloat16 else inputs
            y = tf.nn.local_response_normalization(
                x, self.depth_radius, self.bias, self.alpha, self.beta
            )
            return tf.cast(y, inputs.dtype)
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
    Implemented as a pad of ``strides - 1`` pixels at the bottom/right with the
    input's minimum (so padding never wins a max, for any sign of input) and a
    "valid" max pool: two TFLite builtins, no Lambda. Valid for
    ``pool_size >= strides`` (every VGG-F/M/S pool); channels_last.

    Args:
        pool_size: window size (int).
        strides: step (int); defaults to ``pool_size``.
    """

    def __init__(self, pool_size=2, strides=None, **kwargs):
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
        self.pool_size = int(pool_size)
        self.strides = int(strides)

    def call(self, inputs):
        extra = self.strides - 1
        if extra:
            # TensorFlow: the input's minimum (TFLite quantises it, not an infinity); jax and
            # torch: -inf (torch's pad takes a number, not a tensor). Every window holds at
            # least one real pixel, so either pad never wins a max.
            value = ops.min(inputs) if keras.backend.backend() == "tensorflow" else float("-inf")
            inputs = ops.pad(
                inputs, [[0, 0], [0, extra], [0, extra], [0, 0]], constant_values=value
            )
        return ops.max_pool(inputs, self.pool_size, self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        def size(n):
            return None if n is None else (n + self.strides - 1 - self.pool_size) // self.strides + 1

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}
