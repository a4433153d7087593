"""A vLLM outage in the middle of an embedded batch: how many pages degrade, with and without the grace.

Issue 9 measured a 20-second vLLM outage moving 70 of 100 pages to Tesseract while the job said
``done``. This runs the same shape: a loopback vLLM stand-in (``tests/fault_server.py``, every
connection reset while down) answering in ``--answer-s``, a PDF of ``--pages`` text pages, the
chain ``vllm,tesseract`` with ocrq's default client, breaker and page settings, and an outage of
``--outage-s`` starting ``--outage-at-s`` into the run. Once with ``OCRQ_FALLBACK_AFTER_SECONDS=0``
(fall back at once: the old behaviour), once with the default grace. It prints, per run: pages
degraded (read by Tesseract), wall time, and the time from the server's return to the first page
vLLM read again (nan: none did). Each is run with the circuit breaker's old fixed probe time
(``OCRQ_BREAKER_RESET_SECONDS``) and with the doubling probe from ``OCRQ_BREAKER_FIRST_PROBE_SECONDS``.

    .venv/bin/python -m bench.outage_grace [--pages 100 --outage-s 20]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from ocrq.db.models import Attempt, Page
from ocrq.settings import build_settings
from ocrq.worker.batch import BatchRequest, open_database, run_embedded_batch
from tests.factories import make_text_pdf
from tests.fault_server import running_fault_server


def run_once(args: argparse.Namespace, grace: float, first_probe: float, folder: Path) -> dict[str, float]:
    with running_fault_server() as server:
        server.answer_delay = args.answer_s
        settings = build_settings(
            database_url=f"sqlite:///{folder / f'grace{grace:g}.db'}",
            engines=["vllm", "tesseract"], vllm_url=server.url, vllm_served_model_name="test-model",
            prompt_mode="text_only", tesseract_langs="eng", page_workers=args.workers,
            fallback_after_seconds=grace, breaker_reset_seconds=args.breaker_reset_s,
            breaker_first_probe_seconds=first_probe,
        )  # fmt: skip
        started = time.time()
        threading.Timer(args.outage_at_s, server.outage, [args.outage_s]).start()
        request = BatchRequest([folder / "in.pdf"], folder / f"out{grace:g}", force=True)
        batch = run_embedded_batch(settings, request)
        wall = time.time() - started
    back_at = started + args.outage_at_s + args.outage_s
    return {
        "degraded": batch["counts"]["pages"]["degraded"],
        "done": batch["counts"]["pages"]["done"],
        "wall_s": wall,
        "recover_s": _first_vllm_page_after(settings.database_url, back_at) - back_at,
    }


def _first_vllm_page_after(database_url: str, moment: float) -> float:
    _, sessions = open_database(build_settings(database_url=database_url))
    with sessions() as session:
        starts = session.scalars(
            select(Attempt.started_at).join(Page).where(Attempt.engine == "vllm", Attempt.outcome == "ok")
        ).all()
    after = [_epoch(s) for s in starts if _epoch(s) >= moment - 1.0]
    return min(after) if after else float("nan")


def _epoch(moment: datetime) -> float:
    """SQLite gives back naive datetimes of UTC moments."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--outage-s", type=float, default=20.0)
    parser.add_argument("--outage-at-s", type=float, default=3.0)
    parser.add_argument("--answer-s", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--grace-s", type=float, default=120.0)
    parser.add_argument("--breaker-reset-s", type=float, default=30.0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # one line per failed attempt would drown the table
    with tempfile.TemporaryDirectory(prefix="outage-grace-") as scratch:
        folder = Path(scratch)
        make_text_pdf(folder / "in.pdf", [f"Outage benchmark page {n}" for n in range(args.pages)])
        print(
            f"{args.pages} pages, {args.workers} in flight, {args.answer_s} s per vLLM answer, "
            f"outage {args.outage_s:g} s from t={args.outage_at_s:g} s, "
            f"breaker reset {args.breaker_reset_s:g} s"
        )
        print(f"{'grace':>7} {'1st probe':>9} {'done':>5} {'degraded':>9} {'wall s':>7} {'recover s':>10}")
        fixed = args.breaker_reset_s  # the probe schedule before issue 9: always the full reset time
        for grace, first_probe in ((0.0, fixed), (args.grace_s, fixed), (0.0, 2.0), (args.grace_s, 2.0)):
            r = run_once(args, grace, first_probe, folder)
            print(
                f"{grace:>6g}s {first_probe:>8g}s {r['done']:>5.0f} {r['degraded']:>9.0f} "
                f"{r['wall_s']:>7.1f} {r['recover_s']:>10.1f}"
            )


if __name__ == "__main__":
    main()
