"""What the local Hugging Face cache holds, and whether a model in it can be loaded offline.

The Transformers engine never downloads: it loads a snapshot that is already in the cache (or a
directory named in the settings). A half-finished download is the common failure (the seeds deleted
a handful of such models by hand), so a snapshot counts as *complete* only when its config is there,
every weight shard its index lists is there, and no blob is still ``.incomplete``.

Scanning uses ``huggingface_hub.scan_cache_dir`` (it knows the hub layout and its corruptions); only
the ``.incomplete`` blobs and the shard indexes, which it does not judge, are looked at by hand.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ocrq.errors import ModelNotCached

State = Literal["complete", "incomplete", "corrupted", "missing"]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_REPO_FOLDER = re.compile(r"(models|datasets|spaces)--[^/\\]+")


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One revision of a cached repo, judged loadable or not."""

    commit: str
    path: Path
    refs: tuple[str, ...]
    size_bytes: int
    problems: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class CachedRepo:
    """A repo folder in the cache: its snapshots, size on disk and unfinished downloads."""

    repo_id: str
    repo_type: str
    path: Path
    size_bytes: int
    snapshots: tuple[SnapshotInfo, ...]
    incomplete_blobs: tuple[str, ...] = ()
    corruption: str | None = None

    @property
    def state(self) -> State:
        if self.corruption:
            return "corrupted"
        if self.incomplete_blobs or not any(s.complete for s in self.snapshots):
            return "incomplete"
        return "complete"


@dataclass(slots=True)
class CacheScan:
    """Every repo found under one cache directory, keyed by ``(repo_type, repo_id)``."""

    cache_dir: Path
    repos: dict[tuple[str, str], CachedRepo] = field(default_factory=dict)

    def model(self, repo_id: str) -> CachedRepo | None:
        return self.repos.get(("model", repo_id))

    @property
    def size_bytes(self) -> int:
        return sum(repo.size_bytes for repo in self.repos.values())


def hub_cache_dir() -> Path:
    """The hub cache as huggingface_hub resolves it, read now (not at import) so tests can point it."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def scan_hub_cache(cache_dir: Path | None = None) -> CacheScan:
    """Scan the cache; a missing cache folder is an empty scan, not an error."""
    root = cache_dir or hub_cache_dir()
    scan = CacheScan(root)
    if not root.is_dir():
        return scan
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(root)
    for repo in info.repos:
        scan.repos[(repo.repo_type, repo.repo_id)] = _cached_repo(repo)
    for warning in info.warnings:
        corrupted = _corrupted_repo(root, str(warning))
        if corrupted is not None:
            scan.repos[(corrupted.repo_type, corrupted.repo_id)] = corrupted
    return scan


def _cached_repo(repo: Any) -> CachedRepo:
    """huggingface_hub's ``CachedRepoInfo`` in our terms (``Any``: its field types vary by version)."""
    path = Path(repo.repo_path)
    snapshots = tuple(sorted((_snapshot(revision) for revision in repo.revisions), key=lambda s: s.commit))
    incomplete = _incomplete_blobs(path)
    size = repo.size_on_disk + sum(blob.stat().st_size for blob in incomplete)
    return CachedRepo(
        repo.repo_id, repo.repo_type, path, size, snapshots, tuple(blob.name for blob in incomplete)
    )


def _snapshot(revision: Any) -> SnapshotInfo:
    root = Path(revision.snapshot_path)
    names = {str(Path(file.file_path).relative_to(root)) for file in revision.files}
    problems = tuple(snapshot_problems(root, names))
    refs = tuple(sorted(revision.refs))
    return SnapshotInfo(revision.commit_hash, root, refs, revision.size_on_disk, problems)


def snapshot_problems(snapshot: Path, names: set[str]) -> list[str]:
    """Why a snapshot (or a plain model directory) cannot be loaded; empty when it can."""
    problems = [] if "config.json" in names else ["no config.json"]
    shards = _listed_shards(snapshot, names)
    missing = sorted(shards - names)
    if missing:
        problems.append(f"missing {len(missing)} of {len(shards)} weight shards: {', '.join(missing)}")
    if not shards and not any(name.endswith(WEIGHT_SUFFIXES) for name in names):
        problems.append("no weight files")
    return problems


def _listed_shards(snapshot: Path, names: set[str]) -> set[str]:
    """Shard file names from the weight index(es) present; an unreadable index lists itself as missing."""
    shards: set[str] = set()
    for index in SHARD_INDEXES:
        if index not in names:
            continue
        try:
            weight_map = json.loads((snapshot / index).read_text(encoding="utf-8"))["weight_map"]
            shards |= set(weight_map.values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            shards.add(f"{index} (unreadable)")
    return shards


def _incomplete_blobs(repo_path: Path) -> list[Path]:
    """Blobs huggingface_hub is (or was, before a crash) still downloading."""
    blobs = repo_path / "blobs"
    return sorted(blobs.glob("*.incomplete")) if blobs.is_dir() else []


def _corrupted_repo(root: Path, message: str) -> CachedRepo | None:
    """A repo the scanner gave up on (a broken symlink, a missing folder), named from its message."""
    match = _REPO_FOLDER.search(message.replace(str(root), ""))
    if match is None:
        return None
    folder = match.group(0)
    kind, _, name = folder.partition("--")
    repo_path = root / folder
    size = sum(p.stat().st_size for p in repo_path.rglob("*") if p.is_file() and not p.is_symlink())
    return CachedRepo(
        name.replace("--", "/"),
        kind.rstrip("s"),
        repo_path,
        size,
        (),
        tuple(path.name for path in _incomplete_blobs(repo_path)),
        message,
    )


def pick_snapshot(repo: CachedRepo, revision: str | None = None) -> SnapshotInfo | None:
    """The snapshot for a ref or commit (default ``main``), else the only or newest complete one."""
    wanted = revision or "main"
    for snapshot in repo.snapshots:
        if wanted in snapshot.refs or snapshot.commit == wanted:
            return snapshot
    if revision is not None:
        return None
    complete = [snapshot for snapshot in repo.snapshots if snapshot.complete]
    return max(complete, key=lambda s: s.path.stat().st_mtime) if complete else None


def local_model_dir(repo_id: str, revision: str | None = None, cache_dir: Path | None = None) -> Path:
    """A complete cached snapshot of ``repo_id``, or :class:`ModelNotCached` saying what is wrong."""
    scan = scan_hub_cache(cache_dir)
    repo = scan.model(repo_id)
    if repo is None:
        raise ModelNotCached(
            f"{repo_id} is not in the Hugging Face cache at {scan.cache_dir}; ocrq never downloads: "
            f"fetch it once with `huggingface-cli download {repo_id}` (or set OCRQ_TRANSFORMERS_MODEL_DIR)"
        )
    if repo.corruption:
        raise ModelNotCached(f"{repo_id} in {repo.path} is corrupted: {repo.corruption}")
    snapshot = pick_snapshot(repo, revision)
    if snapshot is None:
        raise ModelNotCached(f"{repo_id} has no complete snapshot for revision {revision or 'main'}")
    if not snapshot.complete or repo.incomplete_blobs:
        problems = [*snapshot.problems, *(f"{name} still downloading" for name in repo.incomplete_blobs)]
        raise ModelNotCached(f"{repo_id} in {snapshot.path} is incomplete: {'; '.join(problems)}")
    return snapshot.path


def directory_problems(path: Path) -> list[str]:
    """The same completeness rules for a plain model directory (``OCRQ_TRANSFORMERS_MODEL_DIR``)."""
    if not path.is_dir():
        return [f"{path} is not a directory"]
    names = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
    return snapshot_problems(path, names)
