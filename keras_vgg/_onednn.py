"""TensorFlow's oneDNN kernels on by default: VGG trains about 4x faster on x86 CPUs.

TensorFlow turns its oneDNN CPU kernels on by itself only where the CPU reports
AVX512_VNNI, AVX512_BF16 or AMX; elsewhere (older Xeons, virtual machines that hide those
flags) it uses its Eigen kernels, whose convolution gradients are slow at VGG's small late
feature maps. Measured here (2-core AVX-512 VM, vgg11_bn at 32x32, batch 32): one
training epoch of 15 steps 41 s with Eigen, 8-10 s with oneDNN; prediction the same.
The variable is read once, when TensorFlow loads, so this runs before keras_vgg imports
Keras; a value the user set (``TF_ENABLE_ONEDNN_OPTS=0``) is kept, and nothing changes if
TensorFlow was already imported. Imports nothing of ours.

Example:
    >>> from keras_vgg._onednn import prefer_onednn
    >>> prefer_onednn(environ={"TF_ENABLE_ONEDNN_OPTS": "0"}, machine="x86_64")
    False
"""

from __future__ import annotations

import os
import platform
import sys

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn(environ=None, machine=None, modules=None) -> bool:
    """Set ``TF_ENABLE_ONEDNN_OPTS=1`` unless it is set or TensorFlow has loaded; x86 only.

    Returns whether it set the variable.
    """
    environ = os.environ if environ is None else environ
    machine = platform.machine() if machine is None else machine
    modules = sys.modules if modules is None else modules
    if VARIABLE in environ or "tensorflow" in modules:
        return False
    if machine.lower() not in ("x86_64", "amd64"):
        return False
    environ[VARIABLE] = "1"
    return True
