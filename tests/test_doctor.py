"""``ocrq doctor`` against real parts: one line each, exit 1 when a required part is down."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from ocrq.api.cli import cli
from ocrq.db.migrations import upgrade
from tests.vllm_server import VllmServer

DEAD_PORT_URL = "http://127.0.0.1:9"


def _doctor(env: dict[str, str | None]) -> tuple[Result, dict[str, str]]:
    result = CliRunner().invoke(cli, ["doctor"], env={"OCRQ_BROKER_URL": None, "OCRQ_VLLM_URL": None} | env)
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    return result, lines


def test_a_healthy_queue_setup_passes(postgres_url: str, redis_url: str) -> None:
    upgrade(postgres_url)
    result, lines = _doctor({"OCRQ_DATABASE_URL": postgres_url, "OCRQ_BROKER_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert lines["database"].startswith("ok") and "schema current" in lines["database"]
    assert lines["broker"].startswith("ok") and "queued" in lines["broker"]
    assert lines["tesseract"].startswith("ok") and "rus+eng" in lines["tesseract"]
    assert "postgres@" in lines["database"] and "vllm" not in lines


def test_an_unmigrated_database_and_a_dead_broker_fail(postgres_url: str) -> None:
    result, lines = _doctor({"OCRQ_DATABASE_URL": postgres_url, "OCRQ_BROKER_URL": "redis://127.0.0.1:9/0"})
    assert result.exit_code == 1
    assert lines["database"].startswith("FAIL") and "ocrq db upgrade" in lines["database"]
    assert lines["broker"].startswith("FAIL")


def test_a_missing_tesseract_language_fails_only_when_tesseract_is_in_the_chain(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'd.db'}"
    failing, lines = _doctor({"OCRQ_DATABASE_URL": database, "OCRQ_TESSERACT_LANGS": "rus+xxx"})
    assert failing.exit_code == 1 and lines["tesseract"].startswith("FAIL") and "xxx" in lines["tesseract"]
    other, lines = _doctor(
        {
            "OCRQ_DATABASE_URL": database,
            "OCRQ_TESSERACT_LANGS": "rus+xxx",
            "OCRQ_ENGINES": "vllm",
            "OCRQ_VLLM_URL": DEAD_PORT_URL,
        }
    )
    assert lines["tesseract"].startswith("--") and lines["vllm"].startswith("FAIL")
    assert other.exit_code == 1  # the configured vLLM server is down


def test_a_real_vllm_server_is_reported_with_its_models(vllm_server: VllmServer, tmp_path: Path) -> None:
    result, lines = _doctor(
        {"OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}", "OCRQ_VLLM_URL": vllm_server.url}
    )
    assert result.exit_code == 0, result.output
    assert lines["vllm"].startswith("ok") and "health ok" in lines["vllm"]
    assert f"{vllm_server.served_name} (max_model_len {vllm_server.max_model_len})" in lines["vllm"]


def test_every_configured_vllm_server_gets_a_line(tmp_path: Path) -> None:
    other = "http://127.0.0.2:9"
    result = CliRunner().invoke(cli, ["doctor"], env={
        "OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}", "OCRQ_BROKER_URL": None,
        "OCRQ_VLLM_URL": DEAD_PORT_URL, "OCRQ_VLLM_MODEL_URLS": f'{{"qwen2-vl-2b": "{other}"}}',
    })  # fmt: skip
    vllm_lines = [line for line in result.stdout.splitlines() if line.split()[1] == "vllm"]
    assert len(vllm_lines) == 2 and result.exit_code == 1
    assert DEAD_PORT_URL in vllm_lines[0] and other in vllm_lines[1]
