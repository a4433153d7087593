"""The local Hugging Face cache as ``ocrq models`` shows it: which registry models are there, whole.

Two views over one scan (:mod:`ocrq.worker.models.hf_cache`): per registry model (:func:`cache_status_for`,
the rows ``ocrq models`` adds to its table) and everything in the cache (:func:`cache_table`, for
``ocrq models --cache``). The seeds had a tool for this because half-finished downloads looked
cached and then failed to load minutes later; here they show as ``incomplete`` with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ocrq.worker.models.hf_cache import CachedRepo, CacheScan, State, pick_snapshot, scan_hub_cache
from ocrq.worker.models.registry import ModelSpec, bundled_registry

CACHE_COLUMNS = ("cache", "size", "cache problems")
"""The columns ``ocrq models`` appends per registry model (values from :func:`cache_cells`)."""
_STYLE = {"complete": "green", "incomplete": "yellow", "corrupted": "red", "missing": "dim"}


@dataclass(frozen=True, slots=True)
class CacheRow:
    key: str
    repo_id: str
    state: State
    size_bytes: int
    snapshot: Path | None = None
    problems: tuple[str, ...] = ()


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def cache_status_for(
    specs: Iterable[ModelSpec], cache_dir: Path | None = None, scan: CacheScan | None = None
) -> list[CacheRow]:
    """One row per registry model: missing, incomplete (why), corrupted or complete, and its size."""
    scan = scan or scan_hub_cache(cache_dir)
    return [_row(spec, scan.model(spec.hf_repo)) for spec in specs]


def _row(spec: ModelSpec, repo: CachedRepo | None) -> CacheRow:
    if repo is None:
        return CacheRow(spec.key, spec.hf_repo, "missing", 0)
    if repo.corruption:
        return CacheRow(spec.key, spec.hf_repo, "corrupted", repo.size_bytes, None, (repo.corruption,))
    revision = spec.transformers.revision if spec.transformers else None
    snapshot = pick_snapshot(repo, revision)
    problems = [*(snapshot.problems if snapshot else [f"no snapshot for {revision or 'main'}"])]
    problems += [f"{blob} still downloading" for blob in repo.incomplete_blobs]
    state: State = "incomplete" if problems else "complete"
    return CacheRow(
        spec.key, spec.hf_repo, state, repo.size_bytes, snapshot.path if snapshot else None, tuple(problems)
    )


def cache_cells(row: CacheRow) -> list[str]:
    """The :data:`CACHE_COLUMNS` values for one model, styled for a rich table."""
    size = human_size(row.size_bytes) if row.size_bytes else "-"
    return [f"[{_STYLE[row.state]}]{row.state}[/]", size, "; ".join(row.problems) or "-"]


def status_table(rows: list[CacheRow], cache_dir: Path) -> Table:
    table = Table(title=f"registry models in the Hugging Face cache ({cache_dir})")
    for column in ("key", "repo", *CACHE_COLUMNS):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.key, row.repo_id, *cache_cells(row))
    return table


def cache_table(scan: CacheScan) -> Table:
    """Everything in the cache: repo, type, state, size, snapshots and unfinished blobs."""
    title = f"Hugging Face cache {scan.cache_dir}: {len(scan.repos)} repos, {human_size(scan.size_bytes)}"
    table = Table(title=title)
    for column in ("repo", "type", "state", "size", "snapshots", "problems"):
        table.add_column(column, overflow="fold")
    for repo in sorted(scan.repos.values(), key=lambda r: (r.repo_type, r.repo_id.lower())):
        table.add_row(*_repo_cells(repo))
    return table


def _repo_cells(repo: CachedRepo) -> list[str]:
    snapshots = ", ".join(f"{s.commit[:8]}({','.join(s.refs) or '-'})" for s in repo.snapshots) or "-"
    problems = [f"{s.commit[:8]}: {p}" for s in repo.snapshots for p in s.problems]
    problems += [f"{blob} still downloading" for blob in repo.incomplete_blobs]
    problems += [repo.corruption] if repo.corruption else []
    state = f"[{_STYLE[repo.state]}]{repo.state}[/]"
    return [
        repo.repo_id,
        repo.repo_type,
        state,
        human_size(repo.size_bytes),
        snapshots,
        "; ".join(problems) or "-",
    ]


def print_cache(console: Console, cache_dir: Path | None = None, everything: bool = False) -> CacheScan:
    """What ``ocrq models --cache`` prints (``everything``) or the per-registry-model view."""
    scan = scan_hub_cache(cache_dir)
    if everything:
        console.print(cache_table(scan))
    else:
        rows = cache_status_for(bundled_registry().models.values(), scan=scan)
        console.print(status_table(rows, scan.cache_dir))
    return scan


@click.command("hf-cache", hidden=True)
@click.option("--all", "everything", is_flag=True, help="Every repo in the cache, not only registry models.")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Hub cache folder (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub).",
)
def hf_cache_command(everything: bool, cache_dir: Path | None) -> None:
    """Which registry models are fully in the local Hugging Face cache (ocrq never downloads).

    Kept for old scripts, hidden from the command list: `ocrq models` shows the same (and
    `ocrq models --cache` lists everything in the cache).

    \b
    Examples:
      ocrq hf-cache
      ocrq hf-cache --all
    """
    print_cache(Console(), cache_dir, everything)
