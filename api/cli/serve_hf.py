"""``ocrq serve-hf``: run the Transformers engine as an OpenAI-compatible model server (vLLM's API).

Models are checked when the command starts (recipe, pinned versions, snapshot and its code
files), so a server that cannot serve what it was asked for says why and exits 1 instead of
failing its first request. The first model loads before the port opens, as vLLM does, unless
``--lazy``; the others load when asked for (``/models/load``, or a request naming them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ocrq.api.cli.exits import err_console, load_settings, or_exit
from ocrq.settings import Settings

if TYPE_CHECKING:
    from ocrq.worker.engines.hf.pool import ModelPool


def parse_model(value: str) -> tuple[str, Path | None]:
    """``KEY`` or ``KEY=DIR`` (a local folder instead of the Hugging Face cache)."""
    key, _, folder = value.partition("=")
    return key, Path(folder) if folder else None


@click.command("serve-hf")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="KEY[=DIR]",
    help="Registry key to serve, optionally from a folder; repeatable (default: OCRQ_TRANSFORMERS_MODEL).",
)
@click.option("--served-model-name", help="Name requests use for the (single) model; default its HF repo.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=int)
@click.option(
    "--batch-size", type=click.IntRange(1, 64), help="Requests per generate (OCRQ_TRANSFORMERS_BATCH_SIZE)."
)
@click.option(
    "--batch-window-ms", default=20.0, show_default=True, help="How long a batch waits for companions."
)
@click.option("--max-new-tokens", type=click.IntRange(1), help="Cap on a request's max_tokens.")
@click.option(
    "--idle-unload-seconds", default=0.0, show_default=True, help="Release an idle model (0: keep)."
)
@click.option("--lazy", is_flag=True, help="Load on the first request instead of before serving.")
@click.option("--api-key", envvar="OCRQ_HF_SERVE_API_KEY", help="Require 'Authorization: Bearer KEY'.")
def serve_hf(
    models: tuple[str, ...],
    served_model_name: str | None,
    host: str,
    port: int,
    batch_size: int | None,
    batch_window_ms: float,
    max_new_tokens: int | None,
    idle_unload_seconds: float,
    lazy: bool,
    api_key: str | None,
) -> None:
    """Serve registry models with Transformers behind /v1/chat/completions (vLLM-compatible).

    \b
    Examples:
      ocrq serve-hf --model dots.ocr --port 8100
    """
    import uvicorn

    from ocrq.worker.engines.hf.pool import ModelPool, ServeOptions
    from ocrq.worker.engines.hf.serve import create_app

    settings = load_settings()
    if served_model_name and len(models) > 1:
        raise click.UsageError("--served-model-name names one model; serve several under their own names")
    options = ServeOptions(
        batch_size or settings.transformers_batch_size,
        batch_window_ms / 1000,
        idle_unload_seconds,
        max_new_tokens or settings.transformers_max_new_tokens or None,
        settings.max_page_pixels,
    )
    pool = ModelPool(settings, options)
    or_exit(lambda: _prepare(pool, settings, models, served_model_name, lazy))
    err_console.print(f"serving {', '.join(s.name for s in pool.models)} on http://{host}:{port}")
    uvicorn.run(create_app(pool, api_key), host=host, port=port, log_level="warning")


def _prepare(
    pool: ModelPool, settings: Settings, models: tuple[str, ...], served_name: str | None, lazy: bool
) -> None:
    """Check every model now; load the first unless lazy."""
    default = [(settings.transformers_model, settings.transformers_model_dir)]
    for key, folder in [parse_model(value) for value in models] or default:
        pool.add(key, folder, served_name)
    if not lazy:
        seconds = pool.models[0].generator.load()
        err_console.print(f"loaded {pool.models[0].name} in {seconds:.1f} s")
