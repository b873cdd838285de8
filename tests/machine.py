"""The machine an exact figure was measured on: tests that hold a run to the image do so
only there.

Runs are deterministic on one machine (the same recipe and seed give the same
metrics.json), but not across CPU models: oneDNN picks its bfloat16 (AMX) kernels by the
CPU, and another blocking adds in another order. The main job gave 1,038/1,050 on the
machine of 2026-12-05 and 1,045/1,050 on an Emerald Rapids Xeon (family 6, model 207), each
the same on every rerun there. So an exact figure is recorded with the CPU it was measured
on, and asserted only on that CPU with 2 cores training in bfloat16.

Example:
    >>> from machine import cpu_signature
    >>> cpu_signature().count("/")
    1
"""

import os
from pathlib import Path

# The CPU the recorded exact figures (README, tests) were measured on: 2 cores, bfloat16.
MEASURED_ON = "GenuineIntel 6/207"


def cpu_signature() -> str:
    """``"GenuineIntel 6/207"``: the vendor, family and model of this machine's CPU."""
    fields = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown 0/0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return (f"{fields.get('vendor_id', 'unknown')} {fields.get('cpu family', '0')}/"
            f"{fields.get('model', '0')}")


def where_figures_were_measured() -> bool:
    """True on a machine like the one the exact figures come from: that CPU, 2 cores,
    training in bfloat16."""
    from keras_vgg.precision import detect_precision

    return (cpu_signature() == MEASURED_ON and os.cpu_count() == 2
            and detect_precision(training=True).precision == "bfloat16")
