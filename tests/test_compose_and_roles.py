"""docker-compose.yml is checked for structure (no Docker engine here); worker roles map to Celery flags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from ocrq.api.cli import cli
from ocrq.settings import Settings
from ocrq.worker.queue.celery_app import celery_config, parse_crontab
from ocrq.worker.queue.roles import worker_argv
from tests.conftest import REPO_ROOT

REQUIRED_SERVICES = {"redis", "postgres", "migrate", "worker-cpu", "worker-gpu", "beat", "flower", "api"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_every_service_is_there_with_its_dependencies_resolvable(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= REQUIRED_SERVICES
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            assert rule["condition"] in CONDITIONS, (name, rule)
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)


def test_redis_keeps_the_queue_across_restarts(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert compose["services"]["redis"]["volumes"]


def test_workers_wait_for_migrations_and_the_gpu_worker_reserves_a_gpu(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("worker-cpu", "worker-gpu", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["migrate"]["command"] == ["ocrq", "db", "upgrade"]


def test_service_commands_are_real_ocrq_commands(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        command = service.get("command") or []
        if command[:1] != ["ocrq"]:
            continue
        assert command[1] in cli.commands, (name, command)


def test_worker_roles(settings: Settings) -> None:
    gpu = worker_argv(settings, "gpu", None, "INFO")
    assert gpu[gpu.index("--queues") + 1] == "gpu" and gpu[gpu.index("--pool") + 1] == "threads"
    assert int(gpu[gpu.index("--concurrency") + 1]) >= 1
    cpu = worker_argv(settings, "cpu", 3, "INFO")
    assert cpu[cpu.index("--queues") + 1] == "cpu" and cpu[cpu.index("--pool") + 1] == "prefork"
    assert cpu[cpu.index("--concurrency") + 1] == "3"
    every = worker_argv(settings, "all", None, "INFO")
    assert every[every.index("--queues") + 1] == "gpu,cpu"


def test_gpu_worker_name_follows_cuda_visible_devices(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    argv = worker_argv(settings, "gpu", 4, "INFO")
    assert argv[argv.index("--hostname") + 1] == "gpu1@%h"


def test_celery_is_configured_for_at_least_once_delivery(make_settings: Callable[..., Settings]) -> None:
    config = celery_config(make_settings(broker_url="redis://127.0.0.1:6379/13"))
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    timeouts = {
        config["visibility_timeout"],
        config["broker_transport_options"]["visibility_timeout"],
        config["result_backend_transport_options"]["visibility_timeout"],
    }
    assert len(timeouts) == 1 and timeouts.pop() > config["task_time_limit"] > config["task_soft_time_limit"]
    assert config["task_serializer"] == "json" and config["worker_send_task_events"]


def test_inbox_schedule_is_a_crontab_and_defaults_to_two_at_night(settings: Settings) -> None:
    schedule = parse_crontab(settings.inbox_schedule)
    assert schedule.hour == {2} and schedule.minute == {0}
    from ocrq.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        parse_crontab("every night")


def test_the_vllm_service_serves_what_the_registry_says(compose: dict[str, Any]) -> None:
    from pathlib import Path

    from ocrq.worker.engines.vllm.containers import container_spec
    from ocrq.worker.models.registry import bundled_registry

    service = compose["services"]["vllm"]
    spec = container_spec(bundled_registry().get("dots.ocr"), Path("/cache"))
    assert service["command"] == spec.command and service["image"] == spec.image
    assert service["healthcheck"]["start_period"] and "/health" in service["healthcheck"]["test"][1]
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert any(volume.endswith(":/root/.cache/huggingface") for volume in service["volumes"])
    gpu_worker = compose["services"]["worker-gpu"]
    assert gpu_worker["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert gpu_worker["environment"]["OCRQ_VLLM_URL"] == "http://vllm:8000"


def test_the_hf_server_is_serve_hf_on_its_own_gpu_under_its_own_profile(compose: dict[str, Any]) -> None:
    """Its own profile: on a one-GPU host ``--profile gpu`` must not ask for a second GPU."""
    from click.testing import CliRunner

    service = compose["services"]["hf-server"]
    assert (
        service["profiles"] == ["hf-server"]
        and service["build"]["args"]["OCRQ_EXTRAS"] == "transformers,quantization"
    )
    command = service["command"]
    assert command[:2] == ["ocrq", "serve-hf"] and command[1] in cli.commands
    model = command[command.index("--model") + 1]
    from ocrq.worker.models.registry import bundled_registry

    assert "transformers" in bundled_registry().get(model).backends
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["device_ids"] == ["1"] and devices[0]["capabilities"] == ["gpu"]
    port = command[command.index("--port") + 1]
    assert f"127.0.0.1:{port}/health" in service["healthcheck"]["test"][1]
    help_text = CliRunner().invoke(cli, ["serve-hf", "--help"]).output
    assert all(flag in help_text for flag in command[2::2])  # every flag it passes exists
    gpu_worker = compose["services"]["worker-gpu"]["environment"]
    assert (
        gpu_worker["OCRQ_TRANSFORMERS_URL"] == "${OCRQ_TRANSFORMERS_URL:-}"
    )  # opt-in: in-process by default


def test_flower_is_published_on_the_hosts_loopback_only(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["ports"] and all(str(port).startswith("127.0.0.1:") for port in flower["ports"])
    assert "OCRQ_FLOWER_BASIC_AUTH" not in compose["x-ocrq"]["environment"]  # only Flower holds it
    auth = flower["environment"]["OCRQ_FLOWER_BASIC_AUTH"]
    assert auth.startswith("${OCRQ_FLOWER_BASIC_AUTH:?")  # no default: compose refuses to start without it
