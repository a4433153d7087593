"""A measured multi-host run: 1, 2 (and 3) simulated GPU hosts on this machine, one Redis, one Postgres.

Each host is a network namespace the bench creates (``ip netns``, a veth pair; addresses only in
10.231.N.0/24) with its own hostname (``unshare --uts``), its own ``ocrq worker --role all`` and its
own capacity server (a vLLM stand-in of ``--slots`` x ``--seconds``, on the host's loopback). The
documents folder is the same path on every host (only the network is separated). Redis (the bench's
DB) and Postgres stay in the main namespace; ``socat`` on each veth's host side forwards to them,
as a router would. Prints pages/s per host and in total, and N hosts over one (target: two hosts
with their own 4 pages/s server give >= 1.9x one). ``--kill`` then runs two hosts, SIGKILLs the
second host's worker mid-run and counts what was lost.

Needs root (namespaces). Benchmarks are noisy on this 2-core machine; compare ratios of one run.

    .venv/bin/python -m bench.multi_host [--hosts 1,2,3] [--pages-per-host 80] [--kill]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from sqlalchemy import func, select

from bench.queue_overhead import BROKER_URL, fresh_database
from bench.vllm_feed import pages_pdf
from ocrq.db.models import Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import build_settings
from ocrq.worker.documents.sources import walk_sources
from ocrq.worker.embedded import job_progress
from ocrq.worker.models.registry import bundled_registry
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.dispatch import Dispatcher

SUBNET = "10.231"
CAPACITY_PORT = 30100
REDIS_PORT = int(BROKER_URL.split(":")[2].split("/")[0])
REDIS_DB = BROKER_URL.rsplit("/", 1)[1]
PG_PORT = 5432
CLI = [sys.executable, "-c", "from ocrq.api.cli import main; main()"]


@dataclass
class Host:
    number: int
    folder: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None

    @property
    def namespace(self) -> str:
        return f"ocrqmh{self.number}"

    @property
    def gateway(self) -> str:
        """The main namespace's end of the veth pair: where Redis and Postgres are reached."""
        return f"{SUBNET}.{self.number}.1"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.number}.2"

    def served(self) -> dict[str, float]:
        url = f"http://{self.address}:{CAPACITY_PORT}/stats"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def make_namespace(host: Host) -> None:
    outside, inside = f"{host.namespace}h", f"{host.namespace}n"
    sh("ip", "netns", "add", host.namespace)
    sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
    sh("ip", "link", "set", inside, "netns", host.namespace)
    sh("ip", "addr", "add", f"{host.gateway}/24", "dev", outside)
    sh("ip", "link", "set", outside, "up")
    in_ns = ("ip", "netns", "exec", host.namespace)
    sh(*in_ns, "ip", "addr", "add", f"{host.address}/24", "dev", inside)
    sh(*in_ns, "ip", "link", "set", inside, "up")
    sh(*in_ns, "ip", "link", "set", "lo", "up")


def remove_namespace(host: Host) -> None:
    subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
    subprocess.run(["ip", "link", "del", f"{host.namespace}h"], capture_output=True)


def spawn(
    host: Host, argv: list[str], log: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        argv,
        env=env or os.environ.copy(),
        stdout=(host.folder / log).open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    host.processes.append(process)
    return process


def start_host(host: Host, database_name: str, slots: int, seconds: float) -> None:
    """Forwarders on the gateway, then in the namespace a capacity server and a worker of its own name."""
    for port, target in ((REDIS_PORT, REDIS_PORT), (PG_PORT, PG_PORT)):
        listen = f"TCP-LISTEN:{port},bind={host.gateway},fork,reuseaddr"
        spawn(host, ["socat", listen, f"TCP:127.0.0.1:{target}"], f"socat{port}.log")
    in_ns = ["ip", "netns", "exec", host.namespace]
    served = bundled_registry().get("dots.ocr").served_name
    capacity = [sys.executable, "-m", "bench.capacity_server", "--slots", str(slots)]
    capacity += ["--seconds", str(seconds), "--port", str(CAPACITY_PORT), "--served-name", served]
    spawn(host, [*in_ns, *capacity], "capacity.log")
    env = os.environ | {
        "OCRQ_DATABASE_URL": f"postgresql+psycopg://postgres@{host.gateway}:{PG_PORT}/{database_name}",
        "OCRQ_BROKER_URL": f"redis://{host.gateway}:{REDIS_PORT}/{REDIS_DB}",
        "OCRQ_ENGINES": "vllm",
        "OCRQ_VLLM_URL": f"http://127.0.0.1:{CAPACITY_PORT}",
        "OCRQ_VLLM_MAX_IN_FLIGHT": str(slots * 2),
        "OCRQ_PREPARE_PROCESSES": "1",
        "OCRQ_PAGE_TIME_LIMIT": "40",
        "OCRQ_VISIBILITY_TIMEOUT": "60",
    }
    worker = ["sh", "-c", f'hostname host{host.number} && exec "$@"', "worker", *CLI]
    worker += ["worker", "--role", "all", "--loglevel", "WARNING"]
    host.worker = spawn(host, [*in_ns, "unshare", "--uts", *worker], "worker.log", env)


def stop_host(host: Host) -> None:
    for process in host.processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in host.processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def hosts(count: int, folder: Path, database_name: str, args: argparse.Namespace) -> Iterator[list[Host]]:
    started = [Host(number, folder / f"host{number}") for number in range(1, count + 1)]
    try:
        for host in started:
            host.folder.mkdir(exist_ok=True)
            make_namespace(host)
            start_host(host, database_name, args.slots, args.seconds)
        yield started
    finally:
        for host in started:
            stop_host(host)
            remove_namespace(host)


def wait_for_workers(count: int) -> None:
    """Every host's worker answers (each under its own name) before the clock starts."""
    app = create_app(build_settings(broker_url=BROKER_URL))
    for _ in range(240):
        if len(app.control.ping(timeout=1.0)) >= count:
            return
    raise RuntimeError(f"fewer than {count} workers answered")


def run(
    count: int, args: argparse.Namespace, folder: Path, kill_after: float | None = None
) -> dict[str, object]:
    database_url = fresh_database()
    redis.Redis.from_url(BROKER_URL).flushdb()
    pages = args.pages_per_host * count
    pages_pdf(folder / f"doc{count}.pdf", pages)
    sessions = make_session_factory(make_engine(database_url))
    settings = build_settings(database_url=database_url, broker_url=BROKER_URL, engines=["vllm"])
    with hosts(count, folder, database_url.rsplit("/", 1)[1], args) as running:
        wait_for_workers(count)
        time.sleep(3)  # let each worker settle (its engine is built on the first page)
        started = time.monotonic()
        source = walk_sources([folder / f"doc{count}.pdf"])
        job_id = Dispatcher(create_app(settings), sessions, settings).submit(source)
        killed = _wait(sessions, job_id, pages, running, started, kill_after, args.timeout)
        elapsed = time.monotonic() - started
        per_host = {f"host{h.number}": h.served()["requests"] for h in running}
    done = job_progress(sessions, job_id).done
    return {
        "hosts": count,
        "pages": pages,
        "done": done,
        "lost": pages - done,
        "seconds": round(elapsed, 1),
        "pages_per_s": round(pages / elapsed, 2),
        "capacity_pages_per_s": count * args.slots / args.seconds,
        "requests_per_host": per_host,
        "pages_per_s_per_host": {name: round(n / elapsed, 2) for name, n in per_host.items()},
        "done_in_table": _done_in_table(sessions),
        "killed_host2_at_s": killed,
    }


def _wait(sessions, job_id, pages, running, started, kill_after, timeout) -> float | None:  # type: ignore[no-untyped-def]
    killed = None
    while job_progress(sessions, job_id).finished < pages:
        now = time.monotonic() - started
        if kill_after is not None and killed is None and now >= kill_after and running[1].worker:
            os.killpg(running[1].worker.pid, signal.SIGKILL)  # the host dies: no warm shutdown
            killed = round(now, 1)
        if now > timeout:
            break
        time.sleep(0.2)
    return killed


def _done_in_table(sessions) -> int:  # type: ignore[no-untyped-def]
    """Pages done, counted straight from the table (a check on the job's counters)."""
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Page).where(Page.status == "done")) or 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", default="1,2,3")
    parser.add_argument("--pages-per-host", type=int, default=80)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--kill", action="store_true", help="also: two hosts, host 2 SIGKILLed mid-run")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("network namespaces need root")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in [int(value) for value in args.hosts.split(",")]:
            results.append(run(count, args, Path(tmp)))
            print(results[-1], flush=True)
        one = next((r for r in results if r["hosts"] == 1), None)
        for result in results:
            if one and result is not one:
                ratio = float(result["pages_per_s"]) / float(one["pages_per_s"])  # type: ignore[arg-type]
                print(f"{result['hosts']} hosts / 1 host: {ratio:.2f}x")
        if args.kill:
            print(run(2, args, Path(tmp), kill_after=args.pages_per_host / (args.slots / args.seconds) / 2))


if __name__ == "__main__":
    main()
