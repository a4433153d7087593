"""The error tree drawn in ``ocrq/errors.py``'s docstring is the real one, and every error class lives there.

The drawing is what a newcomer reads to pick a base class, so each drawn parent and code is checked
against the classes; a new class left out of the drawing, or defined in a wing, fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ocrq.errors as errors
from tests.conftest import REPO_ROOT

LINE = re.compile(r"^(?P<indent> *)[*-] (?P<name>\w+)(?: ``(?P<code>\w+)``)?")


def drawn_tree() -> dict[str, tuple[str | None, str | None]]:
    """Each drawn class: (its drawn parent, its drawn code or None when it shares its parent's).

    A lower-case entry ("services") groups classes without being one: they hang from its parent."""
    drawn: dict[str, tuple[str | None, str | None]] = {}
    parents: list[tuple[int, str | None]] = []
    for found in filter(None, map(LINE.match, (errors.__doc__ or "").splitlines())):
        depth, name = len(found["indent"]), found["name"]
        parents = [(indent, parent) for indent, parent in parents if indent < depth]
        parent = parents[-1][1] if parents else None
        if name[0].isupper():
            drawn[name] = (parent, found["code"])
        parents.append((depth, name if name[0].isupper() else parent))
    return drawn


def error_classes() -> dict[str, type[errors.OcrqError]]:
    return {cls.__name__: cls for cls in errors._subclasses(errors.OcrqError)}


def test_every_error_class_is_drawn_under_its_parent_with_its_code() -> None:
    drawn, classes = drawn_tree(), error_classes()
    assert set(drawn) == set(classes)
    for name, cls in classes.items():
        parent, code = drawn[name]
        assert parent == (None if cls is errors.OcrqError else cls.__base__.__name__), name
        own_code = cls is errors.OcrqError or cls.code != cls.__base__.code  # type: ignore[attr-defined]
        assert code == (cls.code if own_code else None), name


def test_no_error_class_is_defined_outside_the_kernel() -> None:
    names = set(error_classes())
    outside = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}"
        for path in [*Path(REPO_ROOT, "api").rglob("*.py"), *Path(REPO_ROOT, "worker").rglob("*.py")]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and any(_base_name(base) in names for base in node.bases)
    ]
    assert outside == []


def _base_name(base: ast.expr) -> str:
    return base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
