"""The ledger's schema module holds only what its API uses (issue 17: dead and twin schema code goes).

A body or type nobody uses drifts from the one the routes really apply (the history's ``limit`` was
bounded in two places), so every public name of ``ledger/schemas.py`` must be used: by another
definition there, or by a module that imports the schemas.
"""

from __future__ import annotations

import ast
from pathlib import Path

import etcwallet.ledger.schemas as schemas_module

SRC = Path(schemas_module.__file__).parents[1]


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


def _used_outside(tree: ast.Module) -> set[str]:
    """Names another module takes from the schemas: ``s.X`` after ``import … schemas as s``, or imported."""
    aliases, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "etcwallet.ledger.schemas":
            used.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "etcwallet.ledger":
            aliases.update(a.asname or a.name for a in node.names if a.name == "schemas")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            used.add(node.attr)
    return used


def test_every_public_name_of_the_ledger_schemas_is_used() -> None:
    path = SRC / "ledger" / "schemas.py"
    own = ast.parse(path.read_text())
    defined = _defined(own)
    used = {n.id for n in ast.walk(own) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    for other in SRC.rglob("*.py"):
        if other != path:
            used |= _used_outside(ast.parse(other.read_text()))
    assert defined - used == set()
