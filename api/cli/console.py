"""What a person sees in the terminal: the progress bar and the end-of-batch summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ocrq.worker.embedded import Progress as PageProgress


class PageProgressBar:
    """pages done/total, pages/s and ETA, fed by the runner's progress callback.

    The rate counts only pages finished since the bar started: on a resumed run the pages reused
    from before would otherwise read as hundreds of pages per second. ``announce_reuse``: the first
    report (after ingest, before any OCR) says how many pages were already done.
    """

    def __init__(self, console: Console, announce_reuse: bool = False) -> None:
        self._bar = Progress(
            TextColumn("[bold]OCR"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pages"),
            TextColumn("{task.fields[rate]} p/s"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID | None = None
        self._already: int | None = None
        self._announce = announce_reuse

    def __enter__(self) -> PageProgressBar:
        self._bar.start()
        self._task = self._bar.add_task("pages", total=None, rate="-", failed=0)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._bar.stop()

    def update(self, progress: PageProgress) -> None:
        assert self._task is not None
        if self._already is None:
            self._first(progress)
        task = self._bar.tasks[0]
        new_pages = progress.finished - (self._already or 0)
        rate = new_pages / task.elapsed if task.elapsed else 0.0
        self._bar.update(
            self._task,
            total=progress.total,
            completed=progress.finished,
            failed=progress.failed,
            rate=f"{rate:.2f}",
        )

    def _first(self, progress: PageProgress) -> None:
        """Reused pages count as done from the start: the bar's own speed samples restart here."""
        self._already = progress.finished
        assert self._task is not None
        self._bar.reset(self._task, total=progress.total or None, completed=progress.finished)
        if self._announce and progress.finished and progress.total:
            self._bar.console.print(
                f"resuming: {progress.finished} of {progress.total} pages already done (--force redoes them)"
            )


def print_summary(console: Console, batch: dict[str, Any], out_dir: str | None) -> None:
    """The job's table and problems; ``out_dir`` None: the results are not written yet."""
    counts = batch["counts"]
    table = Table(title=f"Job {batch['job_id']}: {batch['status']}", show_header=True)
    for column in ("documents", "pages", "per engine"):
        table.add_column(column)
    docs = ", ".join(f"{n} {status}" for status, n in sorted(counts["documents"].items())) or "none"
    pages = counts["pages"]
    engines = ", ".join(f"{name}: {n}" for name, n in counts["engines"].items()) or "-"
    table.add_row(docs, _pages_cell(pages), engines)
    console.print(table)
    _print_degraded(console, batch)
    _print_problems(console, batch["documents"])
    _print_output_errors(console, batch["documents"])
    if out_dir is None:
        console.print(f"Write the result files with: ocrq results {batch['job_id']} --out DIR")
    else:
        console.print(f"Results in {out_dir}/ (batch.json lists every document)")


def _pages_cell(pages: dict[str, int]) -> str:
    degraded = pages.get("degraded", 0)
    done = f"{pages['done']} done" + (f" ({degraded} degraded)" if degraded else "")
    return f"{done}, {pages['failed']} failed of {pages['total']}"


def _print_degraded(console: Console, batch: dict[str, Any]) -> None:
    """Pages a fallback engine read are done but weaker: say so, and how to redo them."""
    degraded = batch["counts"]["pages"].get("degraded", 0)
    if not degraded:
        return
    primary = batch.get("primary_engine")
    console.print(
        f"[yellow]{degraded} page(s) degraded[/yellow]: read by a fallback engine, not {primary}. "
        f"`ocrq redo {batch['job_id']} --degraded` reads them again with {primary}."
    )


def _print_output_errors(console: Console, documents: list[dict[str, Any]]) -> None:
    """Result files not written (or written with a warning, like PDF/A not reached)."""
    rows = [(d["path"], name, e) for d in documents for name, e in (d.get("output_errors") or {}).items()]
    if not rows:
        return
    table = Table(title="Result files with problems", show_header=True)
    for column in ("document", "format", "error", "message"):
        table.add_column(column, overflow="fold")
    for path, name, error in rows:
        table.add_row(path, name, error["code"], error["message"])
    console.print(table)


def _print_problems(console: Console, documents: list[dict[str, Any]]) -> None:
    problems = [d for d in documents if d["status"] != "done"]
    if not problems:
        return
    table = Table(title="Documents not fully done", show_header=True)
    for column in ("status", "document", "error", "message"):
        table.add_column(column, overflow="fold")
    for doc in problems:
        error = doc["error"] or {}
        table.add_row(doc["status"], doc["path"], error.get("code", ""), error.get("message", ""))
    console.print(table)
