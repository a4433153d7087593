"""vLLM containers: the spec from the registry (pure), the thin SDK calls (against a loopback
stand-in for the Docker API: no engine runs here), readiness, and load from a real vLLM's /metrics."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from ocrq.api.cli.vllm import server_report
from ocrq.errors import ConfigurationError, EngineUnavailable
from ocrq.worker.engines.vllm import containers
from ocrq.worker.engines.vllm.inflight import parse_load
from ocrq.worker.models.registry import bundled_registry
from tests.fake_docker import API_VERSION, running_fake_docker
from tests.vllm_server import VllmServer

CACHE = Path("/srv/hf-cache")


def _dots_spec(**options: object) -> containers.ContainerSpec:
    return containers.container_spec(bundled_registry().get("dots.ocr"), CACHE, **options)


def test_the_spec_follows_the_registry() -> None:
    entry = bundled_registry().get("dots.ocr")
    spec = _dots_spec()
    command = spec.command
    assert spec.image == entry.vllm.image and spec.port == entry.vllm.port == 8000
    assert command[command.index("--model") + 1] == entry.hf_repo
    assert command[command.index("--served-model-name") + 1] == entry.served_name
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.85"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert spec.environment["HF_HUB_OFFLINE"] == "1"
    assert spec.ready_timeout_s == entry.vllm.startup_timeout_s


def test_run_arguments_request_the_gpu_cache_port_and_shared_memory() -> None:
    kwargs = _dots_spec(gpus=["1"], bind_host="0.0.0.0").run_kwargs()
    (request,) = kwargs["device_requests"]
    assert request["DeviceIDs"] == ["1"] and request["Capabilities"] == [["gpu"]]
    assert kwargs["ports"] == {"8000/tcp": ("0.0.0.0", 8000)}
    assert kwargs["volumes"] == {str(CACHE): {"bind": "/root/.cache/huggingface", "mode": "rw"}}
    assert kwargs["ipc_mode"] == "host" and kwargs["detach"] is True
    assert kwargs["healthcheck"]["start_period"] == _dots_spec().ready_timeout_s * 1_000_000_000
    (all_gpus,) = _dots_spec().run_kwargs()["device_requests"]
    assert all_gpus["Count"] == -1


def test_a_transformers_only_model_has_no_container() -> None:
    only_hf = [m for m in bundled_registry().models.values() if "vllm" not in m.backends]
    assert only_hf
    with pytest.raises(ConfigurationError, match="not served by vLLM"):
        containers.container_spec(only_hf[0], CACHE)


def test_start_status_logs_and_stop_through_the_docker_api() -> None:
    spec = _dots_spec(gpus=["0"])
    with running_fake_docker() as engine:
        client = docker.DockerClient(base_url=engine.url, version=API_VERSION)
        container = containers.start(client, spec)
        (created,) = engine.created
        assert created["Image"] == spec.image and created["Cmd"] == spec.command
        host = created["HostConfig"]
        assert host["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}
        assert host["Binds"] == [f"{CACHE}:/root/.cache/huggingface:rw"] and host["IpcMode"] == "host"
        assert host["DeviceRequests"][0]["DeviceIDs"] == ["0"]
        assert containers.find(client, spec.name).status == "running" == container.status
        assert containers.start(client, spec).id == container.id and len(engine.created) == 1  # kept
        assert b"startup complete" in containers.find(client, spec.name).logs()
        assert containers.stop(client, spec.name) is True
        assert containers.find(client, spec.name) is None and containers.stop(client, spec.name) is False


def test_no_docker_engine_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="Docker engine not reachable"):
        containers.docker_client()


def test_wait_ready_returns_on_health_and_fails_fast_when_the_container_exits() -> None:
    answers = iter([False, False, True])
    containers.wait_ready(lambda: next(answers), timeout_s=5, container_alive=lambda: True, every_s=0)
    with pytest.raises(EngineUnavailable, match="exited"):
        containers.wait_ready(lambda: False, timeout_s=5, container_alive=lambda: False, every_s=0)
    with pytest.raises(EngineUnavailable, match="not ready"):
        containers.wait_ready(lambda: False, timeout_s=0.05, container_alive=lambda: True, every_s=0.01)


def test_load_is_read_from_a_real_vllm(vllm_server: VllmServer) -> None:
    import httpx

    load = parse_load(httpx.get(f"{vllm_server.url}/metrics", timeout=10).text)
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting"} <= set(load)
    report = server_report(vllm_server.url)
    assert "health 200" in report and vllm_server.served_name in report and "num_requests_waiting=" in report
