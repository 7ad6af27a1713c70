"""No function body in the five packages is longer than 60 lines (docstring excluded)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("search", "spaces", "compression", "devices", "objectives")
LIMIT = 60


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    first = body[1] if has_doc and len(body) > 1 else body[0]
    return node.end_lineno - first.lineno + 1


def long_functions(root: Path) -> dict[str, int]:
    found = {}
    for package in PACKAGES:
        for file in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and body_lines(node) > LIMIT:
                    found[f"{file.relative_to(root)}:{node.name}"] = body_lines(node)
    return found


def test_no_function_body_over_60_lines():
    root = Path(__file__).resolve().parents[1]  # the repository: the packages sit at its top
    found = long_functions(root)
    assert found == {}, f"split these functions (body lines): {found}"


def test_the_counter_sees_a_long_function(tmp_path):
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "m.py").write_text("def f():\n    '''doc'''\n" + "    x = 1\n" * 61)
    assert long_functions(tmp_path) == {"search/m.py:f": 61}
