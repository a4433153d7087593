"""Does a snapshot hold the Python code its model needs? Checked before anything is imported.

Remote-code models (dots.ocr, Phi-3.5-vision, moondream2, DeepSeek-OCR, InternVL2) keep their
architecture in ``.py`` files beside the weights, named by ``auto_map`` in their configs. A snapshot
fetched with a weights-only pattern, or copied without them, otherwise fails deep inside
transformers with an import error about ``transformers_modules``; here it is one line naming the
missing files. Code in *another* repo (``repo--module.Class``) cannot be loaded offline from this
snapshot and is named the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CODE_CONFIGS = ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
_RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import\s", re.MULTILINE)


def auto_map_references(path: Path) -> set[str]:
    """Every ``module.Class`` reference in the snapshot's configs' ``auto_map`` tables."""
    references: set[str] = set()
    for name in CODE_CONFIGS:
        try:
            config = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        auto_map = config.get("auto_map") if isinstance(config, dict) else None
        for value in (auto_map or {}).values():
            values = value if isinstance(value, list) else [value]
            references |= {item for item in values if isinstance(item, str)}
    return references


def code_problems(path: Path) -> list[str]:
    """What keeps the snapshot's own code from loading offline; empty when it is all there."""
    references = auto_map_references(path)
    if not references:
        return [f"{path / 'config.json'} names no code (no auto_map): not this model's remote-code snapshot"]
    foreign = sorted(ref for ref in references if "--" in ref)
    problems = [f"code from another repo, not in this snapshot: {', '.join(foreign)}"] if foreign else []
    modules = {ref.rpartition(".")[0] for ref in references if "--" not in ref}
    missing = sorted(f"{module}.py" for module in _with_imports(path, modules) if not _exists(path, module))
    if missing:
        problems.append(f"missing code files: {', '.join(missing)}")
    return problems


def _exists(path: Path, module: str) -> bool:
    return (path / f"{module}.py").is_file()


def _with_imports(path: Path, modules: set[str]) -> set[str]:
    """The modules plus every module they import relatively (``from .x import``), transitively."""
    seen: set[str] = set()
    pending = list(modules)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        if _exists(path, module):
            source = (path / f"{module}.py").read_text(encoding="utf-8", errors="replace")
            pending.extend(_RELATIVE_IMPORT.findall(source))
    return seen
