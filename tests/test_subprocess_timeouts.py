"""Every child process a test starts has a timeout: a hung child fails its test instead of
holding CI until the job's own limit.

An AST walk over every ``.py`` file in tests/ (conftest and helpers included):
``subprocess.run``/``call``/``check_call``/``check_output`` take ``timeout=``; a ``Popen`` is
waited for with ``communicate(timeout=...)`` or ``wait(timeout=...)``, so every
``.communicate()``/``.wait()`` in tests/ passes one; the ways to start a process that take
no timeout at all (``os.system``, ``multiprocessing``, ...) are not used.
"""

import ast
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
NEEDS_TIMEOUT = {"run", "call", "check_call", "check_output"}  # subprocess functions
WAITS = {"communicate", "wait"}  # Popen methods that block until the child ends
NO_TIMEOUT = {  # what starts a child (or waits for one) and takes no timeout
    "os.system", "os.popen", "os.spawnl", "os.spawnle", "os.spawnlp", "os.spawnlpe",
    "os.spawnv", "os.spawnve", "os.spawnvp", "os.spawnvpe", "os.posix_spawn",
    "os.posix_spawnp", "os.waitpid", "subprocess.getoutput", "subprocess.getstatusoutput",
    "pty.spawn",
}
NO_TIMEOUT_MODULES = {"multiprocessing", "concurrent.futures"}  # pools and Process objects


def dotted(node) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def untimed(source: str, filename: str = "<test>") -> list:
    """``file:line: what`` for each child process started or waited for without a timeout."""
    tree = ast.parse(source, filename)
    names = {}  # local name -> the module-qualified name it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                names[local] = alias.name if alias.asname else local
                if any(alias.name == m or alias.name.startswith(m + ".")
                       for m in NO_TIMEOUT_MODULES):
                    found.append(f"{filename}:{node.lineno}: imports {alias.name} (its "
                                 "processes take no timeout: use subprocess with timeout=)")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            if any(node.module == m or node.module.startswith(m + ".")
                   for m in NO_TIMEOUT_MODULES):
                found.append(f"{filename}:{node.lineno}: imports from {node.module} (its "
                             "processes take no timeout: use subprocess with timeout=)")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name is None:
            if isinstance(node.func, ast.Attribute) and node.func.attr in WAITS:
                name = f"?.{node.func.attr}"
            else:
                continue
        head, _, rest = name.partition(".")
        qualified = f"{names[head]}.{rest}" if head in names and rest else names.get(head, name)
        has_timeout = any(k.arg == "timeout" for k in node.keywords)
        where = f"{filename}:{node.lineno}"
        if qualified in NO_TIMEOUT:
            found.append(f"{where}: {qualified} takes no timeout (use subprocess.run(..., "
                         "timeout=...))")
        elif qualified.startswith("subprocess.") and qualified.split(".", 1)[1] in NEEDS_TIMEOUT:
            if not has_timeout:
                found.append(f"{where}: {qualified} without timeout=")
        elif isinstance(node.func, ast.Attribute) and node.func.attr in WAITS \
                and not qualified.startswith(("os.", "asyncio.")):
            if not has_timeout and not node.args:
                found.append(f"{where}: .{node.func.attr}() without a timeout")
    return found


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda p: p.name)
def test_every_child_process_in_the_tests_has_a_timeout(path):
    assert untimed(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize("code, expected", [
    ("import subprocess\nsubprocess.run(['x'])", ["<test>:2: subprocess.run without timeout="]),
    ("import subprocess as sp\nsp.check_output(['x'], text=True)",
     ["<test>:2: subprocess.check_output without timeout="]),
    ("from subprocess import check_call\ncheck_call(['x'])",
     ["<test>:2: subprocess.check_call without timeout="]),
    ("import subprocess\np = subprocess.Popen(['x'])\np.communicate()",
     ["<test>:3: .communicate() without a timeout"]),
    ("import subprocess\np = subprocess.Popen(['x'])\np.wait()",
     ["<test>:3: .wait() without a timeout"]),
    ("import os\nos.system('x')",
     ["<test>:2: os.system takes no timeout (use subprocess.run(..., timeout=...))"]),
    ("import multiprocessing",
     ["<test>:1: imports multiprocessing (its processes take no timeout: use subprocess "
      "with timeout=)"]),
    ("from concurrent.futures import ProcessPoolExecutor",
     ["<test>:1: imports from concurrent.futures (its processes take no timeout: use "
      "subprocess with timeout=)"]),
    # what passes
    ("import subprocess\nsubprocess.run(['x'], timeout=5)", []),
    ("import subprocess\np = subprocess.Popen(['x'])\np.communicate(timeout=5)\np.wait(5)", []),
    ("import os\nos.path.join('a', 'b')", []),
])
def test_the_walk_finds_a_child_without_a_timeout(code, expected):
    assert untimed(textwrap.dedent(code)) == expected
