"""The soak (tests/test_soak.py), bigger: thousands of pages through repeated fault cycles.

Each cycle SIGKILLs a worker, restarts Redis empty, cuts the database for a
few seconds, kills another worker and stops the engine for a while; the first
cycle also adds a job holding a poison page. Prints jobs closed, pages lost,
stored twice, duplicate OCR work, pages by engine (degraded = not vllm) and,
per fault, how long it held work up.

    OCRQ_TEST_POSTGRES_ADMIN_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres \\
    .venv/bin/python -m bench.chaos --pages 2000 --cycles 3 --seed 7
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
from pathlib import Path

from tests.chaos import Chaos, ChaosPlan
from tests.chaos_report import read_report
from tests.conftest import _create_postgres_database, _drop_postgres_database

PAGES_PER_DOCUMENT = 10
JOBS = 4


def plan_from(args: argparse.Namespace) -> ChaosPlan:
    documents = max(1, args.pages // (JOBS * PAGES_PER_DOCUMENT))
    return ChaosPlan(
        seed=args.seed if args.seed is not None else random.randrange(1_000_000),
        jobs=JOBS,
        documents_per_job=documents,
        pages_per_document=PAGES_PER_DOCUMENT,
        workers=args.workers,
        concurrency=args.concurrency,
        engine_slots=args.engine_slots,
        engine_seconds=args.engine_seconds,
        cycles=args.cycles,
        cycle_s=args.cycle_seconds,
        deadline_s=args.deadline,
        base_port=22300,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--cycle-seconds", type=float, default=80.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--engine-slots", type=int, default=8)
    parser.add_argument("--engine-seconds", type=float, default=0.4)
    parser.add_argument("--deadline", type=float, default=1800.0)
    plan = plan_from(parser.parse_args())
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the run's finally stops its processes
    url = _create_postgres_database()
    try:
        with tempfile.TemporaryDirectory(prefix="ocrq-chaos-") as workdir:
            run = Chaos(plan, Path(workdir), url).run()
            report = read_report(run)
    finally:
        _drop_postgres_database(url)
    print(
        f"seed {plan.seed}: {plan.pages} pages + poison job, "
        f"{plan.cycles} fault cycles, {len(run.faults)} faults"
    )
    print(
        f"engine stand-in: {plan.engine_slots} slots x {plan.engine_seconds} s; served {run.engine.served}, "
        f"poison requests {run.engine.poisoned}"
    )
    for line in report.lines():
        print(line)


if __name__ == "__main__":
    main()
