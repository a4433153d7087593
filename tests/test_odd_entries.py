"""Bad names and odd folder entries are reported per document, never fatal, never dropped.

A file name that is not valid UTF-8 is OCRed and its path stored losslessly;
dangling links, link loops, FIFOs, devices and links to folders each become a
``failed`` document with the code ``not_a_file``, so the exit code tells the
truth. Embedded (SQLite), queue (Postgres, real worker) and inbox runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ocrq.api.cli import cli
from ocrq.db.fs_text import escape_path, unescape_path
from ocrq.db.migrations import upgrade
from ocrq.db.models import Document, Job
from ocrq.db.session import make_engine, make_session_factory
from ocrq.settings import Settings
from tests.factories import make_text_pdf
from tests.test_celery_queue import Queue, queue  # noqa: F401  (the real-worker fixture)

BAD_NAME = os.fsdecode(b"bad\xff\xfe name.pdf")
ODD_ENTRIES = {
    "dangling.pdf": "dangling symbolic link",
    "loop_a.pdf": "symbolic link loop",
    "loop_b.pdf": "symbolic link loop",
    "pipe.pdf": "FIFO",
    "zero.pdf": "character device",
    "sub/up": "link to a folder",
}


def _pdf_named(path: Path, text: str) -> None:
    """MuPDF cannot save under a non-UTF-8 name; write it under a plain one and rename it."""
    make_text_pdf(path.with_name("plain.tmp"), [text])
    path.with_name("plain.tmp").rename(path)


def _folder(root: Path) -> Path:
    """A good file, one with a non-UTF-8 name, and every kind of odd entry."""
    folder = root / "in"
    (folder / "sub").mkdir(parents=True)
    make_text_pdf(folder / "good.pdf", ["Plain good page"])
    _pdf_named(folder / BAD_NAME, "Undecodable name page")
    (folder / "dangling.pdf").symlink_to("gone.pdf")
    (folder / "loop_a.pdf").symlink_to("loop_b.pdf")
    (folder / "loop_b.pdf").symlink_to("loop_a.pdf")
    os.mkfifo(folder / "pipe.pdf")
    (folder / "zero.pdf").symlink_to("/dev/zero")
    (folder / "sub" / "up").symlink_to("..", target_is_directory=True)
    return folder


def _assert_reported(out: Path) -> None:
    documents = {d["path"]: d for d in json.loads((out / "batch.json").read_text())["documents"]}
    shown_name = "bad\\xff\\xfe name.pdf"
    assert documents[shown_name]["status"] == "done"
    assert "undecodable" in (out / f"{shown_name}.md").read_text().lower()
    assert documents["good.pdf"]["status"] == "done"
    for name, words in ODD_ENTRIES.items():
        assert documents[name]["status"] == "failed", name
        assert documents[name]["error"]["code"] == "not_a_file", name
        assert words in documents[name]["error"]["message"], name
    assert len(documents) == 2 + len(ODD_ENTRIES)


def test_embedded_batch_reports_every_entry_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = _folder(tmp_path)
    database = f"sqlite:///{tmp_path / 'ocrq.db'}"
    env = {"OCRQ_DATABASE_URL": database, "OCRQ_ENGINES": "tesseract", "OCRQ_TESSERACT_LANGS": "eng"}
    result = CliRunner().invoke(cli, ["submit-batch", str(folder), "--out", str(tmp_path / "out")], env=env)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output and "not_a_file" in result.output
    _assert_reported(tmp_path / "out")
    sessions = make_session_factory(make_engine(database))
    with sessions() as session:
        paths = set(session.scalars(select(Document.path)))
    assert str(folder / BAD_NAME) in paths  # the exact bytes come back, so a worker can open it


def test_queue_batch_reports_every_entry(queue: Queue, tmp_path: Path) -> None:  # noqa: F811
    folder = _folder(tmp_path)
    queue.processes.worker("w1")
    result = CliRunner().invoke(
        cli, ["submit-batch", str(folder), "--out", str(tmp_path / "out"), "--wait"], env=queue.env
    )
    assert result.exit_code == 3, result.output
    _assert_reported(tmp_path / "out")


def test_a_non_utf8_path_round_trips_through_postgres(postgres_url: str) -> None:
    upgrade(postgres_url)
    sessions = make_session_factory(make_engine(postgres_url))
    path = "/scans/" + BAD_NAME + "\\x41 literal backslash"
    with sessions.begin() as session:
        job = Job(result_key="k", documents=[Document(path=path, relpath=BAD_NAME, result_key="k")])
        session.add(job)
    with sessions() as session:
        document = session.scalars(select(Document)).one()
        assert document.path == path
        assert document.relpath == "bad\\xff\\xfe name.pdf"
    assert unescape_path(escape_path(path)) == path and escape_path("/plain/ok.pdf") == "/plain/ok.pdf"


def test_inbox_run_takes_the_bad_name_and_moves_every_entry(
    tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = make_settings()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _pdf_named(inbox / BAD_NAME, "Undecodable inbox page")
    make_text_pdf(inbox / "fine.pdf", ["Fine inbox page"])
    (inbox / "dangling.pdf").symlink_to("gone.pdf")
    os.mkfifo(inbox / "pipe.pdf")
    for entry in inbox.iterdir():
        os.utime(entry, (1, 1), follow_symlinks=False)
    env = {
        "OCRQ_DATABASE_URL": settings.database_url,
        "OCRQ_ENGINES": "tesseract",
        "OCRQ_TESSERACT_LANGS": "eng",
        "OCRQ_INBOX_DIR": str(inbox),
        "OCRQ_INBOX_STABLE_SECONDS": "60",
    }
    result = CliRunner().invoke(cli, ["ingest", "--now", "--out", str(tmp_path / "out")], env=env)
    assert result.exit_code == 0, result.output
    statuses = {
        d["path"]: d["status"] for d in json.loads((tmp_path / "out" / "batch.json").read_text())["documents"]
    }
    assert statuses == {
        "bad\\xff\\xfe name.pdf": "done",
        "fine.pdf": "done",
        "dangling.pdf": "failed",
        "pipe.pdf": "failed",
    }
    assert (inbox / "done" / BAD_NAME).exists() and (inbox / "failed" / "pipe.pdf").exists()
    assert (inbox / "failed" / "dangling.pdf").is_symlink()
    assert sorted(p.name for p in inbox.iterdir()) == ["done", "failed"]
