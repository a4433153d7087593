"""vLLM containers through the docker SDK: the spec is a pure function, the SDK calls stay thin.

``container_spec`` turns a registry entry into everything ``docker run`` needs
(image, ``vllm serve`` flags, GPU request, port, the shared Hugging Face cache,
shared memory); the functions below it only hand that to Docker and read back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrq.errors import ConfigurationError, EngineUnavailable
from ocrq.worker.models.registry import ModelSpec

CONTAINER_CACHE = "/root/.cache/huggingface"
NANOSECONDS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    name: str
    image: str
    command: list[str]
    port: int
    bind_host: str
    hf_cache: Path
    gpus: list[str] | None
    """Device ids, or None for all GPUs."""
    environment: dict[str, str] = field(default_factory=dict)
    shm_size: str = "16g"
    ready_timeout_s: int = 360

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``client.containers.run`` (docker-py 7)."""
        from docker.types import DeviceRequest

        devices = (
            DeviceRequest(device_ids=self.gpus, capabilities=[["gpu"]])
            if self.gpus
            else DeviceRequest(count=-1, capabilities=[["gpu"]])
        )
        return {
            "image": self.image,
            "command": self.command,
            "name": self.name,
            "detach": True,
            "device_requests": [devices],
            "ports": {f"{self.port}/tcp": (self.bind_host, self.port)},
            "volumes": {str(self.hf_cache): {"bind": CONTAINER_CACHE, "mode": "rw"}},
            "environment": self.environment,
            "shm_size": self.shm_size,
            "ipc_mode": "host",
            "labels": {"ocrq.role": "vllm"},
            "healthcheck": self.healthcheck(),
            "restart_policy": {"Name": "on-failure", "MaximumRetryCount": 3},
        }

    def healthcheck(self) -> dict[str, Any]:
        """Docker's healthcheck in nanoseconds; ``start_period`` covers the model's load time."""
        probe = f"python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{self.port}/health')\""
        return {
            "test": ["CMD-SHELL", probe],
            "interval": 15 * NANOSECONDS,
            "timeout": 5 * NANOSECONDS,
            "retries": 3,
            "start_period": self.ready_timeout_s * NANOSECONDS,
        }


def container_name(spec: ModelSpec) -> str:
    return "ocrq-vllm-" + re.sub(r"[^a-zA-Z0-9_.-]+", "-", spec.key).lower()


def container_spec(
    spec: ModelSpec,
    hf_cache: Path,
    *,
    gpus: list[str] | None = None,
    bind_host: str = "127.0.0.1",
    offline: bool = True,
) -> ContainerSpec:
    """Offline by default: weights come from the mounted cache, never from the hub at run time."""
    if spec.vllm is None:
        raise ConfigurationError(f"model {spec.key} is not served by vLLM (backends: {spec.backends})")
    repo, *flags = spec.vllm_args()
    environment = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"} if offline else {}
    return ContainerSpec(
        name=container_name(spec),
        image=spec.vllm.image,
        command=["--model", repo, "--host", "0.0.0.0", *flags],
        port=spec.vllm.port,
        bind_host=bind_host,
        hf_cache=hf_cache,
        gpus=gpus,
        environment=environment | {"VLLM_NO_USAGE_STATS": "1"},
        ready_timeout_s=spec.vllm.startup_timeout_s,
    )


# --- thin SDK calls -------------------------------------------------------------


def docker_client() -> Any:
    """The local Docker engine, or a configuration error saying it is not there."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        raise ConfigurationError(f"Docker engine not reachable: {error}") from error
    return client


def start(client: Any, spec: ContainerSpec) -> Any:
    """Start the container, replacing a stopped one of the same name; a running one is kept."""
    existing = find(client, spec.name)
    if existing is not None and existing.status == "running":
        return existing
    if existing is not None:
        existing.remove(force=True)
    container = client.containers.run(**spec.run_kwargs())
    container.reload()  # run() hands back the state from before start
    return container


def find(client: Any, name: str) -> Any | None:
    import docker

    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        return None
    container.reload()
    return container


def stop(client: Any, name: str, timeout_s: int = 30) -> bool:
    container = find(client, name)
    if container is None:
        return False
    container.stop(timeout=timeout_s)
    container.remove()
    return True


def wait_ready(
    healthy: Callable[[], bool], timeout_s: float, container_alive: Callable[[], bool], every_s: float = 2.0
) -> None:
    """Until ``/health`` answers 200; a container that exits on the way fails at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy():
            return
        if not container_alive():
            raise EngineUnavailable("the vLLM container exited while loading; see `ocrq vllm logs`")
        time.sleep(every_s)
    raise EngineUnavailable(f"vLLM was not ready after {timeout_s:.0f} s; see `ocrq vllm logs`")
