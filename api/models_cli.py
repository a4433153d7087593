"""``ocrq models``: the model registry as a table, so choosing OCRQ_VLLM_MODEL needs no file reading."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from worker.models.registry import ModelSpec, Registry, bundled_registry

COLUMNS = (
    "key",
    "model",
    "architecture",
    "backends",
    "port",
    "max len",
    "pixels",
    "max tokens",
    "prompts",
    "needs",
)


def _serving(spec: ModelSpec) -> tuple[str, str]:
    if spec.vllm is None:
        return "-", "-"
    eager = ", eager" if spec.vllm.enforce_eager else ""
    return str(spec.vllm.port), f"{spec.vllm.max_model_len} @ {spec.vllm.gpu_memory_utilization}{eager}"


def model_row(spec: ModelSpec) -> list[str]:
    """One table row; also what tests read, so the table and the registry cannot drift apart."""
    port, length = _serving(spec)
    pixels = f"{spec.min_pixels:,}-{spec.max_pixels:,} ({spec.resize}/{spec.image_format})"
    needs = ", ".join(f"{name}{specifier}" for name, specifier in spec.requires.items())
    return [
        spec.key,
        spec.served_name,
        spec.architecture,
        "+".join(spec.backends),
        port,
        length,
        pixels,
        str(spec.max_tokens),
        ", ".join(mode.value for mode in spec.prompts),
        needs or "-",
    ]


def registry_table(registry: Registry) -> Table:
    table = Table(title="ocrq model registry (OCRQ_VLLM_MODEL = key)")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for spec in registry.models.values():
        table.add_row(*model_row(spec))
    return table


@click.command("models")
@click.option("--constraints", is_flag=True, help="Also list each model's known version constraints.")
def models_command(constraints: bool) -> None:
    """List the models ocrq can drive, with what each needs to be served."""
    console = Console()
    registry = bundled_registry()
    console.print(registry_table(registry))
    if constraints:
        for spec in registry.models.values():
            console.print(f"[bold]{spec.key}[/]: " + "; ".join([*spec.constraints, spec.notes]))
