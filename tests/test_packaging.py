"""pyproject.toml: the packages it lists, and a real (non-editable) install from a wheel."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pip building or installing the wheel, or a fresh Python process importing keras_vgg: under a
# minute each; a hung one fails the test at this bound instead of holding CI.
CHILD_TIMEOUT_S = 300


def pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_listed_packages_are_the_tree():
    """Packages are listed, not found (keras_vgg.recipe_files is the top-level recipes/ folder):
    a new package folder under keras_vgg/ must be added to the list, or a wheel lacks it."""
    tool = pyproject()["tool"]["setuptools"]
    found = sorted(".".join(p.parent.relative_to(ROOT).parts)
                   for p in (ROOT / "keras_vgg").rglob("__init__.py")
                   if "__pycache__" not in p.parts)
    assert sorted(tool["packages"]) == sorted(found + ["keras_vgg.recipe_files"])
    assert tool["package-dir"] == {"keras_vgg.recipe_files": "recipes"}
    assert (ROOT / "recipes" / "__init__.py").is_file()


def test_the_torch_extra_and_the_readme_say_how_to_get_the_cpu_build():
    """Issue 28: the torch pin is the CUDA build from the package index; a CPU-only user is
    told, beside the extra and in the README, to install it from PyTorch's CPU index."""
    command = ("pip install torch==2.13.0 --index-url "
               "https://download.pytorch.org/whl/cpu")
    pin = pyproject()["project"]["optional-dependencies"]["torch"]
    assert pin == ["torch==2.13.0"]
    assert command in (ROOT / "pyproject.toml").read_text()
    assert command in " ".join((ROOT / "README.md").read_text().split())


def test_extras_and_the_one_version():
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    assert project["dependencies"] == ["tensorflow>=2.16", "keras>=3.15", "numpy", "h5py"]
    assert extras["torch"] == ["torch==2.13.0"]
    assert {"pyyaml", "importlib_resources", "tensorflow-datasets"} <= set(extras["finetune"])
    assert extras["test"] == ["keras-vgg[finetune,export,convert,serve]", "pytest>=7.3"]
    assert extras["serve"] == ["onnxruntime", "onnx", "tf2onnx", "onnxscript", "openvino", "nncf"]
    assert pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "keras_vgg.__version__"}
    assert not (ROOT / "pytest.ini").exists()  # pytest reads [tool.pytest.ini_options]


CHECK = """
import json, sys
import keras_vgg
from keras_vgg.finetune import load_recipe, shipped_recipes
from keras_vgg.finetune.config import recipe_expectation, recipes_folder
print(json.dumps({"file": keras_vgg.__file__, "version": keras_vgg.__version__,
                  "folder": str(recipes_folder()),
                  "recipes": {n: load_recipe(n).to_dict() for n in shipped_recipes()},
                  "expect": {n: recipe_expectation(n) for n in shipped_recipes()}}))
"""


@pytest.mark.slow
def test_a_wheel_install_finds_every_shipped_recipe_by_name(tmp_path):
    """Builds a wheel from a copy of the sources (with TensorFlow made unimportable: reading
    the version must not import the library), installs it into a folder and, from a folder
    outside the repository, resolves every shipped recipe by name from the installed copy."""
    from keras_vgg.finetune import load_recipe, shipped_recipes
    from keras_vgg.finetune.config import recipe_expectation

    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("keras_vgg", "recipes"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    blocker = tmp_path / "no_tensorflow"
    for name in ("tensorflow", "keras"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} at build time')")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(wheels), str(source)],
                   check=True, env=env, capture_output=True, timeout=CHILD_TIMEOUT_S)
    (wheel,) = wheels.glob("keras_vgg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = shipped_recipes()
    assert sorted(n for n in names if n.startswith("keras_vgg/recipe_files/")) == sorted(
        [f"keras_vgg/recipe_files/{name}.yaml" for name in shipped]
        + ["keras_vgg/recipe_files/__init__.py"])
    assert "keras_vgg/data/imagenet_class_index.json" in names
    assert not [n for n in names if n.startswith("recipes/")]  # no top-level `recipes` package

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                    "--disable-pip-version-check", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=CHILD_TIMEOUT_S)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=elsewhere, capture_output=True,
                            text=True, timeout=CHILD_TIMEOUT_S,
                            env={**os.environ, "PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    assert Path(found["file"]).is_relative_to(target)  # the installed copy, not the checkout
    assert found["folder"] == str(target / "keras_vgg" / "recipe_files")
    assert found["version"] == keras_vgg_version()
    assert found["recipes"] == {name: load_recipe(name).to_dict() for name in shipped}
    assert found["expect"] == {name: recipe_expectation(name) for name in shipped}


def keras_vgg_version():
    import keras_vgg

    return keras_vgg.__version__
