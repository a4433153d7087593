"""``ocrq vllm up|down|status|logs``: vLLM containers for registry models, through the docker SDK."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click
import httpx

if TYPE_CHECKING:
    from ocrq.worker.engines.vllm.containers import ContainerSpec

from ocrq.api.cli.exits import load_settings, or_exit


def _hf_cache() -> Path:
    """The host's Hugging Face cache, shared with the Transformers engine (HF_HOME honoured)."""
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home)


def _spec(model: str, gpus: str | None) -> ContainerSpec:
    from ocrq.worker.engines.vllm.containers import container_spec
    from ocrq.worker.models.registry import bundled_registry

    settings = load_settings()
    entry = or_exit(lambda: bundled_registry().get(model))
    devices = gpus.split(",") if gpus else None
    return or_exit(
        lambda: container_spec(entry, _hf_cache(), gpus=devices, bind_host=settings.vllm_bind_host)
    )


@click.group()
def vllm() -> None:
    """vLLM containers for models in the registry (`ocrq models`).

    \b
    Examples:
      ocrq vllm up dots.ocr --wait
      ocrq vllm status dots.ocr
    """


@vllm.command()
@click.argument("model")
@click.option("--gpus", help="Device ids, comma-separated (default: all GPUs).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until /health answers.")
def up(model: str, gpus: str | None, wait: bool) -> None:
    """Start MODEL's vLLM server (image, flags, port and limits from the registry).

    \b
    Examples:
      ocrq vllm up dots.ocr --wait
      ocrq vllm up dots.ocr --gpus 1
    """
    from ocrq.worker.engines.vllm import containers

    spec = _spec(model, gpus)
    client = or_exit(containers.docker_client)
    container = or_exit(lambda: containers.start(client, spec))
    click.echo(f"{spec.name}: {container.status}, port {spec.port}")
    if wait:
        url = f"http://127.0.0.1:{spec.port}"
        or_exit(
            lambda: containers.wait_ready(
                lambda: _healthy(url),
                spec.ready_timeout_s,
                lambda: containers.find(client, spec.name) is not None,
            )
        )
        click.echo(f"{spec.name}: ready at {url}")


@vllm.command()
@click.argument("model")
def down(model: str) -> None:
    """Stop and remove MODEL's container.

    \b
    Examples:
      ocrq vllm down dots.ocr
    """
    from ocrq.worker.engines.vllm import containers

    spec = _spec(model, None)
    stopped = or_exit(lambda: containers.stop(or_exit(containers.docker_client), spec.name))
    click.echo(f"{spec.name}: {'stopped' if stopped else 'not running'}")


@vllm.command()
@click.argument("model")
def status(model: str) -> None:
    """Container state, /health, served models and load (from /metrics).

    \b
    Examples:
      ocrq vllm status dots.ocr
    """
    from ocrq.worker.engines.vllm import containers

    spec = _spec(model, None)
    container = containers.find(or_exit(containers.docker_client), spec.name)
    click.echo(f"container {spec.name}: {container.status if container else 'absent'}")
    click.echo(server_report(f"http://127.0.0.1:{spec.port}"))


@vllm.command()
@click.argument("model")
@click.option("--tail", default=200, show_default=True)
def logs(model: str, tail: int) -> None:
    """The container's last log lines.

    \b
    Examples:
      ocrq vllm logs dots.ocr --tail 50
    """
    from ocrq.worker.engines.vllm import containers

    spec = _spec(model, None)
    container = containers.find(or_exit(containers.docker_client), spec.name)
    if container is None:
        raise click.UsageError(f"no container {spec.name}")
    click.echo(container.logs(tail=tail).decode(errors="replace"))


def server_report(url: str) -> str:
    """One line: health, served models, and load — what an operator looks at first."""
    from ocrq.worker.engines.vllm.inflight import parse_load

    try:
        health = httpx.get(f"{url}/health", timeout=5).status_code
        models = [card["id"] for card in httpx.get(f"{url}/v1/models", timeout=5).json()["data"]]
        load = parse_load(httpx.get(f"{url}/metrics", timeout=5).text)
    except (httpx.HTTPError, ValueError, KeyError) as error:
        return f"server {url}: unreachable ({type(error).__name__})"
    figures = ", ".join(f"{name.removeprefix('vllm:')}={value:g}" for name, value in load.items())
    return f"server {url}: health {health}; models {models}; load {figures or 'n/a'}"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
