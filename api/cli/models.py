"""``ocrq models``: the model registry as a table, so choosing OCRQ_VLLM_MODEL needs no file reading."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ocrq.api.cli.hf_cache import CACHE_COLUMNS, CacheRow, cache_cells, cache_status_for, print_cache
from ocrq.worker.engines.hf.versions import host_verdict, incompatible_pairs
from ocrq.worker.models.registry import ModelSpec, Registry, bundled_registry

TESTED = {"real-weights": "real weights", "tiny-random": "tiny random model", "no-weights": "never run"}

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
    "hf recipe",
    "hf here",
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
        _recipe_cell(spec),
        host_verdict(spec),
    ]


def _recipe_cell(spec: ModelSpec) -> str:
    """How the Transformers path loads it and how far that was ever run."""
    load = spec.transformers
    if load is None:
        return "-"
    flags = [TESTED[load.tested]]
    flags += ["remote code"] if load.trust_remote_code else []
    flags += [load.quantization] if load.quantization != "none" else []
    return f"{load.auto_class} ({', '.join(flags)})"


def version_clashes(registry: Registry) -> list[str]:
    """Lines naming the models no single transformers install serves together."""
    return [
        f"{a} (transformers{registry.get(a).requires['transformers']}) and "
        f"{b} (transformers{registry.get(b).requires['transformers']}) need different environments"
        for a, b in incompatible_pairs(registry.models.values())
    ]


def registry_table(registry: Registry, cache: dict[str, list[str]] | None = None) -> Table:
    """The registry, and with ``cache`` (cells per model key) whether each model is in the local cache."""
    table = Table(title="ocrq model registry (OCRQ_VLLM_MODEL = key)")
    for column in (*COLUMNS, *(CACHE_COLUMNS if cache is not None else ())):
        table.add_column(column, overflow="fold")
    for spec in registry.models.values():
        table.add_row(*model_row(spec), *(cache or {}).get(spec.key, []))
    return table


NARROW = ("key", "model", "backends", "max len", "hf here", "cache")
SHORT_BACKEND = {"transformers": "hf"}


def narrow_table(registry: Registry, rows: list[CacheRow]) -> Table:
    """What choosing a model needs, in 100 columns; ``--wide`` has the rest."""
    table = Table(title="ocrq models (OCRQ_VLLM_MODEL = key; --wide for all columns)")
    for column in NARROW:
        table.add_column(column, overflow="fold", no_wrap=column != "hf here")
    for spec, row in zip(registry.models.values(), rows, strict=True):
        length = str(spec.vllm.max_model_len) if spec.vllm else "-"
        backends = "+".join(SHORT_BACKEND.get(name, name) for name in spec.backends)
        table.add_row(spec.key, spec.hf_repo, backends, length, host_verdict(spec), cache_cells(row)[0])
    return table


def models_json(registry: Registry, rows: list[CacheRow]) -> list[dict[str, object]]:
    return [
        dict(zip(COLUMNS, model_row(spec), strict=True))
        | {"hf_repo": spec.hf_repo, "cache": row.state, "cache_bytes": row.size_bytes}
        | {"cache_problems": list(row.problems)}
        for spec, row in zip(registry.models.values(), rows, strict=True)
    ]


@click.command("models")
@click.option("--constraints", is_flag=True, help="Also list each model's known version constraints.")
@click.option("--cache", "show_cache", is_flag=True, help="List everything in the local Hugging Face cache.")
@click.option(
    "--check",
    "check_key",
    metavar="KEY",
    help="Only say whether model KEY is whole in the HF cache (one line; exit 1 if not).",
)
@click.option("--wide", is_flag=True, help="Every column (serving flags, pixels, prompts, recipe...).")
@click.option("--json", "as_json", is_flag=True, help="Every column as JSON, one object per model.")
def models_command(
    constraints: bool, show_cache: bool, check_key: str | None, wide: bool, as_json: bool
) -> None:
    """The models ocrq can drive, what each needs, and whether it is complete in the local HF cache.

    \b
    Examples:
      ocrq models                  key, repo, backends, cache state (fits 100 columns)
      ocrq models --wide           everything, for a wide terminal
      ocrq models --check dots.ocr exit 1 with the reason when its weights are missing
    """
    console = Console()
    if check_key:
        check_weights(check_key)
    if show_cache:
        print_cache(console, everything=True)
        return
    registry = bundled_registry()
    rows = cache_status_for(registry.models.values())
    if as_json:
        click.echo(json.dumps(models_json(registry, rows), indent=2))
        return
    if wide:
        console.print(registry_table(registry, {row.key: cache_cells(row) for row in rows}))
    else:
        console.print(narrow_table(registry, rows))
    clashes = version_clashes(registry)
    if clashes:
        console.print(
            "[bold]transformers versions that cannot share one environment[/] (serve the odd one "
            "out with `ocrq serve-hf` from its own venv, OCRQ_TRANSFORMERS_URL=...):"
        )
        for line in clashes:
            console.print(f"  {line}")
    if constraints:
        for spec in registry.models.values():
            console.print(f"[bold]{spec.key}[/]: " + "; ".join([*spec.constraints, spec.notes]))


def check_weights(key: str) -> None:
    """For a container's start: name what is missing in one line, instead of a server that never starts."""
    from ocrq.worker.models.hf_cache import hub_cache_dir

    registry = bundled_registry()
    if key not in registry.models:
        raise click.UsageError(f"no model {key!r} in the registry; known: {', '.join(registry.models)}")
    row = cache_status_for([registry.get(key)])[0]
    if row.state == "complete":
        click.echo(f"{key}: complete in {row.snapshot}")
        raise SystemExit(0)
    why = f" ({'; '.join(row.problems)})" if row.problems else ""
    click.echo(
        f"{key}: {row.state} in the Hugging Face cache {hub_cache_dir()}{why}; on the host run "
        f"`huggingface-cli download {row.repo_id}` (HF_HOME there is what compose mounts)",
        err=True,
    )
    raise SystemExit(1)
