"""A ``pytest.mark`` decorates a test: on a helper it selects nothing, and the test it was
meant for silently leaves the runs that select by it (``-m backend`` under jax and torch).
Found so: ``@pytest.mark.backend`` had slid onto ``assert_exports_on_this_backend`` when
the helper was moved above ``test_compress_distils_on_this_backend`` (95443b4), and
compress ran on jax and torch in no test after it.

An AST walk over every ``test_*.py`` file: each function or class decorated with a
``pytest.mark.*`` is named ``test*`` (``Test*`` for a class); fixtures are
``pytest.fixture``, not marks.
"""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def mark_of(decorator) -> str | None:
    """``name`` for ``@pytest.mark.name`` or ``@pytest.mark.name(...)``, else None."""
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "mark" and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "pytest"):
        return node.attr
    return None


def misplaced_marks(source: str, filename: str = "<test>") -> list:
    """``"file:line name (mark)"`` for each mark on something pytest does not collect."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        prefix = "Test" if isinstance(node, ast.ClassDef) else "test"
        for decorator in node.decorator_list:
            mark = mark_of(decorator)
            if mark and not node.name.startswith(prefix):
                found.append(f"{filename}:{node.lineno} {node.name} ({mark})")
    return found


def test_the_walk_finds_a_mark_on_a_helper():
    source = ("import pytest\n@pytest.mark.backend\ndef helper():\n    pass\n"
              "@pytest.mark.parametrize('x', [1])\ndef test_x(x):\n    pass\n"
              "@pytest.fixture\ndef made():\n    pass\n")
    assert misplaced_marks(source, "t.py") == ["t.py:3 helper (backend)"]


def test_every_mark_decorates_a_test():
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        found += misplaced_marks(path.read_text(), path.name)
    assert found == []
