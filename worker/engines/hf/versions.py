"""Which library versions each registry model needs, whether this host has them, and which models
can never share one Python environment.

Remote-code models pin the ``transformers`` their code was written against (Phi-3.5-vision <= 4.48,
DeepSeek-OCR == 4.46.3) while native ones need a recent one (Qwen3-VL >= 4.57): no single install
serves them all. ``ocrq models`` shows both facts, the engine refuses a model its installed
versions break, and ``ocrq serve-hf`` in a second environment is the way to run the odd one out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import metadata

from ocrq.errors import IncompatibleVersions
from ocrq.worker.models.registry import ModelSpec

UNCHECKED_REQUIREMENTS = frozenset({"vllm"})
"""Requirements that concern the vLLM server, not this process."""
Lookup = Callable[[str], str | None]


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def satisfies(version: str, specifier: str) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    return SpecifierSet(specifier).contains(Version(version), prereleases=True)


def _broken(spec: ModelSpec, installed: Lookup | None) -> list[tuple[str, str, str]]:
    """(package, installed version, required specifier) for each requirement this host breaks."""
    lookup = installed or installed_version
    broken = []
    for package, specifier in spec.requires.items():
        version = None if package in UNCHECKED_REQUIREMENTS else lookup(package)
        if version is not None and not satisfies(version, specifier):
            broken.append((package, version, specifier))
    return broken


def version_conflicts(spec: ModelSpec, installed: Lookup | None = None) -> list[str]:
    """Registry requirements the installed libraries break, as readable lines (empty when fine)."""
    return [f"{p} {v} installed, {spec.key} needs {p}{s}" for p, v, s in _broken(spec, installed)]


def check_versions(spec: ModelSpec, installed: Lookup | None = None) -> None:
    """Refuse a model its libraries are known to break, quoting the registry's reason and the way out."""
    conflicts = version_conflicts(spec, installed)
    if conflicts:
        reasons = "; ".join(spec.constraints)
        raise IncompatibleVersions(
            f"{'; '.join(conflicts)} ({reasons}). Install those versions in a separate environment and "
            f"run `ocrq serve-hf --model {spec.key}` there, with OCRQ_TRANSFORMERS_URL pointing at it"
        )


def host_verdict(spec: ModelSpec, installed: Lookup | None = None) -> str:
    """One cell for ``ocrq models``: ``ok`` or what this host's versions break."""
    if spec.transformers is None:
        return "-"
    broken = _broken(spec, installed)
    return "; ".join(f"refused: {p} {v} here, needs {s}" for p, v, s in broken) if broken else "ok"


def _candidates(first: str, second: str) -> set[str]:
    """Versions worth trying against two specifier sets: each bound, and just past it."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    found: set[str] = set()
    for specifier in (*SpecifierSet(first), *SpecifierSet(second)):
        bound = Version(specifier.version.replace(".*", ""))
        release = list(bound.release) + [0] * (3 - len(bound.release))
        found |= {str(bound), ".".join(map(str, [*release[:2], release[2] + 1])), f"{bound}.post1"}
        found.add(".".join(map(str, [release[0], release[1] + 1, 0])))
    return found


def can_share(first: str, second: str) -> bool:
    """Whether some version satisfies both specifier sets (checked at their bounds)."""
    return any(satisfies(v, first) and satisfies(v, second) for v in _candidates(first, second))


def incompatible_pairs(specs: Iterable[ModelSpec], package: str = "transformers") -> list[tuple[str, str]]:
    """Pairs of Transformers-backed models no single ``package`` version can serve together."""
    pinned = [(s.key, s.requires[package]) for s in specs if s.transformers and package in s.requires]
    return [
        (a, b)
        for i, (a, first) in enumerate(pinned)
        for b, second in pinned[i + 1 :]
        if not can_share(first, second)
    ]
