"""Imports run one way: every ``import`` in the package (inside functions too) goes to a
module earlier in LAYERS, or to one of the same layer without a cycle.

The order is the house's: helpers -> configs -> layers -> preprocessing/labels -> the model
class that carries a preprocessing (and precision) -> run_folder (a run's file names) ->
saving (reading it back) -> pruning -> spec (a build's checked arguments) -> builder (graph
only) -> convert -> weights -> models -> batch_norm -> features -> pixels/losses/gradcam/
embeddings -> the package's front (``keras_vgg/__init__``) -> export -> inference ->
fine-tuning -> cli. A new module must be placed here.
A package's lazy front (``LAZY = {module: names}``, loaded on first use) counts as importing
each module it names.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_vgg"

LAYERS = [
    # the leaves; choices: the names the command line offers, light (no Keras)
    ("keras_vgg._helpers", "keras_vgg._quiet", "keras_vgg._onednn", "keras_vgg._extras",
     "keras_vgg.stats", "keras_vgg.choices"),
    ("keras_vgg.configs",),
    ("keras_vgg.layers",),
    ("keras_vgg.preprocessing", "keras_vgg.labels"),
    ("keras_vgg.vgg_model", "keras_vgg.precision"),  # the model class; what models compute in
    ("keras_vgg.run_folder",),  # a run folder's file names and lifecycle (no Keras)
    ("keras_vgg.saving",),  # reading .keras files and run folders with their record
    ("keras_vgg.pruning",),  # structured pruning; what a model records as its widths
    ("keras_vgg.spec",),  # a build's arguments, checked once
    ("keras_vgg.builder",),
    ("keras_vgg.convert",),
    ("keras_vgg.weights",),
    ("keras_vgg.models",),
    # model surgery: BatchNorm folded into the convs (and the models to predict with:
    # folded, then cast)
    ("keras_vgg.batch_norm",),
    ("keras_vgg.features",),
    # what people use the features for; pixels: images in, model inputs out
    ("keras_vgg.pixels", "keras_vgg.losses", "keras_vgg.gradcam", "keras_vgg.embeddings"),
    ("keras_vgg",),
    ("keras_vgg.export",),  # and its modules: writing and checking bundles
    ("keras_vgg.inference",),  # running a model or a bundle on image files
    ("keras_vgg.finetune",),  # the engine
    ("keras_vgg.cli",),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    """The layer of a module: its own entry, else its package's (keras_vgg.export.tflite)."""
    probe = name
    while probe:
        for index, names in enumerate(LAYERS):
            if probe in names and (probe != "keras_vgg" or name == "keras_vgg"):
                return index
        probe = probe.rpartition(".")[0]
    raise AssertionError(f"{name} is in no layer: place it in LAYERS in {__file__}")


def imports_of(name: str, path=None) -> set:
    """Every keras_vgg module ``name`` imports, at any depth of its code."""
    path = MODULES[name] if path is None else path
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from keras_vgg import export` imports a module; `from keras_vgg import VGG16`
            # imports the package's front.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "LAZY" for t in node.targets) \
                and isinstance(node.value, ast.Dict):  # {module: names}, imported on first use
            targets = [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
        else:
            continue
        found.update(t for t in targets if t == "keras_vgg" or t.startswith("keras_vgg."))
    return found - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_runs_backwards(name):
    backwards = sorted(t for t in GRAPH[name] if layer_of(t) > layer_of(name))
    assert not backwards, (f"{name} (layer {layer_of(name)}) imports later layers: "
                           + ", ".join(f"{t} (layer {layer_of(t)})" for t in backwards))


def test_no_import_cycle():
    state, path = {}, []

    def visit(name):
        state[name] = "open"
        path.append(name)
        for target in sorted(GRAPH[name]):
            target = target if target in GRAPH else target.rpartition(".")[0]
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """The walk reaches deferred and relative imports: the kind that hid the old
    builder/convert cycle."""
    module = tmp_path / "weights.py"
    module.write_text("import os\nfrom . import configs\n\ndef f():\n"
                      "    from keras_vgg.models import build_vgg\n"
                      "    if True:\n        from .export import tflite\n"
                      "    from keras_vgg import VGG16\n")
    assert imports_of("keras_vgg.weights", module) == {
        "keras_vgg.configs", "keras_vgg.models", "keras_vgg.export.tflite", "keras_vgg"}
    assert layer_of("keras_vgg.export.tflite") == layer_of("keras_vgg.export")
    assert layer_of("keras_vgg.models") > layer_of("keras_vgg.weights")


def test_the_checker_sees_a_lazy_front(tmp_path):
    """``LAZY = {module: names}`` (a package's names loaded on first use) is an import of
    each module it names, so a lazy front cannot reach up the layers unseen."""
    module = tmp_path / "__init__.py"
    module.write_text('LAZY = {"keras_vgg.models": ("VGG16",), "keras_vgg.cli": ("main",)}\n')
    assert imports_of("keras_vgg", module) == {"keras_vgg.models", "keras_vgg.cli"}
    assert "keras_vgg.models" in GRAPH["keras_vgg"] and "keras_vgg.finetune.train" in \
        GRAPH["keras_vgg.finetune"]


def code_lines(function: ast.FunctionDef) -> int:
    """A function's lines less its docstring."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return 0 if not body else body[-1].end_lineno - body[0].lineno + 1 + 1  # + the def line


def test_no_function_over_60_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(node) > 60:
                long.append(f"{name}.{node.name}: {code_lines(node)} lines")
    assert not long, "split these: " + "; ".join(long)


# The public entry points a user calls with keywords, in the manner of Keras's own (build_vgg
# as keras.applications.VGG16, export as Model.export, the losses as keras.losses): each
# argument is a user's choice with a default. Every other function (the engine) takes at
# most 5 parameters and passes a typed record (BuildSpec, RunContext, FitPlan, _Job, ...)
# where it needs more. A new entry point goes here on purpose, with its public name.
PUBLIC_ENTRY_POINTS = {
    "keras_vgg.models.build_vgg", "keras_vgg.convert.convert", "keras_vgg.embeddings.embed",
    "keras_vgg.export.bundle.export", "keras_vgg.export.tflite.write_tflite",
    "keras_vgg.finetune.compress.compress", "keras_vgg.finetune.train.finetune",
    "keras_vgg.finetune.distill.distill",
    "keras_vgg.finetune.run_export.export_run",
    "keras_vgg.gradcam.grad_cam", "keras_vgg.inference.embed.embed_files",
    "keras_vgg.inference.explain.explain", "keras_vgg.losses.PerceptualLoss.__init__",
    "keras_vgg.losses.StyleLoss.__init__",
    "keras_vgg.losses._FeatureLoss.__init__",  # the two losses' own arguments, passed on
}
MAX_PARAMETERS = 5


def parameters(function: ast.FunctionDef) -> int:
    """Named parameters, less self/cls (*args and **kwargs are not counted)."""
    args = function.args
    return len([a for a in args.posonlyargs + args.args + args.kwonlyargs
                if a.arg not in ("self", "cls")])


def functions_of(name: str, path: Path):
    """(qualified name, node) for every function of a module, methods as Class.method."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{prefix}.{child.name}", child
                yield from walk(child, f"{prefix}.{child.name}")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}.{child.name}")
            else:
                yield from walk(child, prefix)

    yield from walk(ast.parse(path.read_text(), str(path)), name)


def test_no_engine_function_over_5_parameters():
    wide = [f"{qualified}: {parameters(node)}" for name, path in MODULES.items()
            for qualified, node in functions_of(name, path)
            if parameters(node) > MAX_PARAMETERS and qualified not in PUBLIC_ENTRY_POINTS]
    assert not wide, ("pass a typed record instead (or, for a public entry point a user "
                      "calls with keywords, add it to PUBLIC_ENTRY_POINTS): " + "; ".join(wide))


def test_every_public_entry_point_exists_and_is_wide():
    """The allowance names real functions that need it: one that shrinks leaves the list."""
    found = {qualified: parameters(node) for name, path in MODULES.items()
             for qualified, node in functions_of(name, path)}
    assert {name: found.get(name) for name in PUBLIC_ENTRY_POINTS
            if found.get(name, 0) <= MAX_PARAMETERS} == {}


def test_the_parameter_check_counts_methods_and_keywords(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("class A:\n    def f(self, a, b, *, c, d, e, f):\n        pass\n"
                      "def g(a, b=1, *args, **kwargs):\n    pass\n")
    counted = {q: parameters(n) for q, n in functions_of("m", module)}
    assert counted == {"m.A.f": 6, "m.g": 2}
