"""The CLI as an operator meets it, run as real processes (the installed console scripts): one-line
answers for common mistakes, ``ocrq jobs``, ``--version``, submit-batch's job options, logs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from ocrq import __version__
from ocrq.db.models import Job
from ocrq.db.session import make_engine, make_session_factory
from tests.factories import make_text_image

BIN = Path(sys.executable).parent
TEXT = "Quarterly report for the archive"


def run(command: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "COLUMNS": "100"}
    return subprocess.run(
        [str(BIN / command), *args],
        capture_output=True,
        text=True,
        env=base | (env or {}),
        cwd=cwd,
        timeout=300,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    scans = tmp_path / "scans"
    scans.mkdir()
    make_text_image(TEXT).save(scans / "page.png")
    make_text_image(TEXT + " two").save(scans / "other.png")
    return scans


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {"OCRQ_DATABASE_URL": f"sqlite:///{tmp_path}/ocrq.db", "OCRQ_ENGINES": "tesseract"}


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_version() -> None:
    assert run("ocrq", "--version").stdout.strip() == f"ocrq {__version__}"
    assert run("submit-batch", "--version").stdout.strip() == f"submit-batch {__version__}"


def test_a_url_that_is_no_database_url_is_a_usage_error(tmp_path: Path) -> None:
    done = run("ocrq", "jobs", env={"OCRQ_DATABASE_URL": "foo://somewhere/x"}, cwd=tmp_path)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "OCRQ_DATABASE_URL=foo://somewhere/x" in line and "sqlite:///" in line


def test_an_unreachable_database_is_one_line_with_the_password_masked(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://ocrq:s3cretpw@127.0.0.1:{closed_port()}/ocrq"
    done = run("ocrq", "status", "3", env={"OCRQ_DATABASE_URL": url}, cwd=tmp_path)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert "database_unreachable" in line and "ocrq:***@127.0.0.1" in line
    assert "s3cretpw" not in done.stderr + done.stdout
    verbose = run("ocrq", "-v", "status", "3", env={"OCRQ_DATABASE_URL": url}, cwd=tmp_path)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "s3cretpw" not in verbose.stderr
    debug = run("ocrq", "status", "3", env={"OCRQ_DATABASE_URL": url, "OCRQ_LOG_LEVEL": "debug"})
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("OCRQ_RENDER_DPI", "abc", "OCRQ_RENDER_DPI='abc': input should be a valid integer"),
        ("OCRQ_ENGINES", "foo", "OCRQ_ENGINES='foo': unknown engine(s) ['foo']"),
        ("OCRQ_LOG_FORMAT", "xml", "OCRQ_LOG_FORMAT='xml'"),
    ],
)
def test_a_bad_setting_names_the_variable_and_the_value(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    done = run("ocrq", "jobs", env={variable: value}, cwd=tmp_path)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert expected in line, line
    assert "pydantic" not in line and "render_dpi" not in line


def test_unknown_job_ids_exit_2_like_cancel(tmp_path: Path, sqlite_env: dict[str, str]) -> None:
    for args in (["status", "999"], ["results", "999", "--out", str(tmp_path / "r")], ["cancel", "999"]):
        done = run("ocrq", *args, env=sqlite_env, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert "999" in done.stderr and "Traceback" not in done.stderr


def _job_settings(database_url: str, job_id: int) -> dict:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            return session.scalars(select(Job.settings).where(Job.id == job_id)).one()
    finally:
        engine.dispose()


def test_submit_batch_takes_the_apis_job_options_and_prints_json(
    tmp_path: Path, folder: Path, sqlite_env: dict[str, str]
) -> None:
    out = tmp_path / "results"
    args = ["--out", str(out), "--engines", "tesseract", "--dpi", "150", "--prompt-mode", "text_only"]
    done = run("submit-batch", str(folder), *args, "--json", env=sqlite_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    batch = json.loads(done.stdout)  # stdout is the JSON alone; the bar and logs go to stderr
    assert batch["status"] == "done" and len(batch["documents"]) == 2
    assert batch == json.loads((out / "batch.json").read_text()) | {"job_id": batch["job_id"]}
    stored = _job_settings(sqlite_env["OCRQ_DATABASE_URL"], batch["job_id"])
    assert stored["render_dpi"] == 150 and stored["prompt_mode"] == "text_only"
    assert stored["engines"] == ["tesseract"]
    again = run("submit-batch", str(folder), *args, env=sqlite_env, cwd=tmp_path)
    assert again.returncode == 0
    assert "resuming: 2 of 2 pages already done" in again.stderr
    refused = run("submit-batch", str(folder), "--engines", "tesseract,ocrmagic", env=sqlite_env)
    assert refused.returncode == 2 and "--engines" in one_line(refused.stderr)


def test_jobs_lists_newest_first_with_status_filter_and_json(
    tmp_path: Path, folder: Path, sqlite_env: dict[str, str]
) -> None:
    assert run("ocrq", "jobs", env=sqlite_env, cwd=tmp_path).stdout.strip() == "no jobs"
    for _ in range(2):
        done = run("submit-batch", str(folder), "--force", "--out", str(tmp_path / "r"), env=sqlite_env)
        assert done.returncode == 0, done.stderr
    listed = json.loads(run("ocrq", "jobs", "--json", env=sqlite_env, cwd=tmp_path).stdout)
    assert [job["id"] for job in listed] == [2, 1]
    assert listed[0]["counts"]["pages"] == {"total": 2, "done": 2, "failed": 0, "degraded": 0}
    table = run("ocrq", "jobs", env=sqlite_env, cwd=tmp_path).stdout
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "│ 2 " in table and "2/2" in table
    failed = run("ocrq", "jobs", "--status", "failed", env=sqlite_env, cwd=tmp_path)
    assert failed.stdout.strip() == "no jobs with status failed"


def test_queue_mode_prints_the_id_and_how_to_follow_it(
    tmp_path: Path, folder: Path, sqlite_env: dict[str, str], redis_url: str
) -> None:
    env = sqlite_env | {"OCRQ_BROKER_URL": redis_url}
    done = run("submit-batch", str(folder), "--priority", "9", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout.strip())
    assert f"ocrq status {job_id}" in done.stderr
    assert _job_settings(sqlite_env["OCRQ_DATABASE_URL"], job_id)["priority"] == 9
    as_json = run("submit-batch", str(folder), "--json", "--force", env=env, cwd=tmp_path)
    assert json.loads(as_json.stdout) == {"job_id": job_id + 1, "status": "queued"}


def test_logs_are_timestamped_json_lines_with_job_document_and_page(
    tmp_path: Path, folder: Path, sqlite_env: dict[str, str]
) -> None:
    env = sqlite_env | {"OCRQ_LOG_FORMAT": "json"}
    done = run("submit-batch", str(folder), "-v", "--out", str(tmp_path / "r"), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    pages = [event for event in events if event["event"] == "page finished"]
    assert len(pages) == 2
    for event in pages:
        assert event["job_id"] == 1 and event["document_id"] in (1, 2) and event["page"] == 1
        assert event["timestamp"].endswith("Z") and event["engine"] == "tesseract"
        assert event["attempts"] == "tesseract:ok"
    quiet = run("submit-batch", str(folder), "--force", "--out", str(tmp_path / "r"), env=env)
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("{")]  # warning level


def test_every_help_has_an_example() -> None:
    import click

    from ocrq.api.cli import cli

    def walk(command: click.Command, path: list[str]):
        yield path, command
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])

    missing = [
        " ".join(path) or "ocrq"
        for path, command in walk(cli, [])
        if "Example" not in (command.help or "")
    ]
    assert missing == []


def test_models_fits_100_columns_and_json_has_every_column(tmp_path: Path) -> None:
    from ocrq.worker.models.registry import bundled_registry

    keys = list(bundled_registry().models)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    table = run("ocrq", "models", env=env).stdout
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 100
    first_cells = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert [cell for cell in first_cells if cell] == keys  # one row each, keys never folded
    rows = json.loads(run("ocrq", "models", "--json", env=env).stdout)
    assert [row["key"] for row in rows] == keys
    assert all(row["cache"] == "missing" and "architecture" in row for row in rows)
    wide = run("ocrq", "models", "--wide", env=env | {"COLUMNS": "400"}).stdout
    assert "architecture" in wide and "prompts" in wide


def test_status_pages_shows_each_engine_attempt(
    tmp_path: Path, folder: Path, sqlite_env: dict[str, str]
) -> None:
    env = sqlite_env | {
        "OCRQ_ENGINES": "vllm,tesseract",
        "OCRQ_VLLM_URL": f"http://127.0.0.1:{closed_port()}",
        "OCRQ_VLLM_RETRIES": "0",
        "OCRQ_FALLBACK_AFTER_SECONDS": "0",  # the attempts are shown here, not the outage grace
    }
    done = run("submit-batch", str(folder), "--out", str(tmp_path / "r"), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = run("ocrq", "status", "1", "--pages", env=env | {"COLUMNS": "200"}, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if ".png" in line]
    assert len(rows) == 2 and all("tesseract ok" in row for row in rows), shown.stdout
    assert any("vllm" in row for row in rows), shown.stdout
