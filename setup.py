from setuptools import find_packages, setup

setup(
    name="keras-vgg",
    version="0.1.0",
    description="The whole VGG family (VGG11-19, A-LRN, C, VGG-F/M/S, BN forms) for Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_vgg", "keras_vgg.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.15",  # the version tested; has AdaptiveAveragePooling2D (adaptive_pool=)
        "tensorflow-datasets",
        # tfds 4.9.x prepares datasets through etils.epath.resource_utils, which imports
        # importlib_resources without declaring it (tfds download_and_prepare fails without it).
        "importlib_resources",
        "numpy",
        "pillow",  # scanning image folders, drawing the built-in dataset
        "matplotlib",  # history.png, confusion_matrix.png
        "tensorboard",  # the TensorBoard callback of recipes
        "ai-edge-litert",  # runs and checks the TFLite exports
        "scipy",  # reads MatConvNet .mat files
        "safetensors",  # reads .safetensors state dicts without torch
        "h5py",  # metadata in converted .weights.h5 files
    ],
    package_data={"keras_vgg": ["data/*.json"], "keras_vgg.recipes": ["configs/*.json"]},
    extras_require={
        "test": ["pytest>=7", "h5py", "pyyaml"],
        "yaml": ["pyyaml"],
        "torch": ["torch==2.13.0"],  # only to read .pth/.pt files; .safetensors and .npz need no torch
    },
    entry_points={"console_scripts": ["keras-vgg=keras_vgg.cli:main"]},
    license="Apache-2.0",
)
