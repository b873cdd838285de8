"""Regenerate keras_vgg/data/imagenet_class_index.json (run once; the file is shipped).

Sources (both ordered as the 1000 ILSVRC-2012 classes, sorted by WordNet id, the order of
every published VGG file):
- WordNet ids: tensorflow-datasets, ``datasets/imagenet2012/labels.txt`` (Apache-2.0).
- Names: torchvision, ``models/_meta.py`` ``_IMAGENET_CATEGORIES`` (BSD-3-Clause), passed as
  a path because torchvision is not a dependency (``pip download torchvision --no-deps``).

Usage: python tools/make_imagenet_class_index.py path/to/torchvision/models/_meta.py
"""

import ast
import json
import os
import sys

import tensorflow_datasets as tfds

wnids_file = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012", "labels.txt")
wnids = open(wnids_file).read().split()
tree = ast.parse(open(sys.argv[1]).read())
names = next(
    ast.literal_eval(node.value) for node in tree.body
    if isinstance(node, ast.Assign) and node.targets[0].id == "_IMAGENET_CATEGORIES"
)
assert len(wnids) == len(names) == 1000 and wnids == sorted(wnids)
index = {str(i): [wnid, name] for i, (wnid, name) in enumerate(zip(wnids, names))}
out = os.path.join(os.path.dirname(__file__), "..", "keras_vgg", "data", "imagenet_class_index.json")
with open(out, "w") as f:
    json.dump(index, f, separators=(",", ":"))
print(f"wrote {out}: {len(index)} classes")
