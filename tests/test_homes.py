"""The three homes keep their doors: the kernel imports neither wing, and nothing imports ``api``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(folder: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((str(path.relative_to(ROOT)), node.module))
            elif isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"), [("ocrq", ("ocrq.worker", "ocrq.api")), ("worker", ("ocrq.api",))]
)
def test_a_home_imports_only_what_it_may(folder: str, forbidden: tuple[str, ...]) -> None:
    wrong = [(path, module) for path, module in _imports(folder) if module.startswith(forbidden)]
    assert wrong == []


def test_the_check_sees_imports() -> None:
    assert ("ocrq/jobs/store.py", "ocrq.jobs.attempts") in _imports("ocrq")
