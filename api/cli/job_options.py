"""``submit-batch``'s per-job options: the API's :class:`JobOptions`, through the same path.

The flags build a ``JobOptions`` (validated exactly as a REST submission is) and the settings for the
job come from :func:`ocrq.api.rest.submission.job_settings`, so a CLI job and an API job with the same
choices are the same job (same result key, reusable results).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from ocrq.api.cli.exits import EXIT_USAGE, err_console, fail
from ocrq.schemas import PromptMode
from ocrq.settings import KNOWN_ENGINES, Settings

FLAG_OF = {"engines": "--engines", "model": "--model", "dpi": "--dpi", "prompt_mode": "--prompt-mode"}
FLAG_OF |= {"priority": "--priority"}


def job_option_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """The API's job options as flags (applied bottom-up, so listed in reverse)."""
    for option in reversed(
        [
            click.option("--engines", help=f"Engine chain, comma-separated, from {','.join(KNOWN_ENGINES)}."),
            click.option("--model", help="Model registry key for the VLM engines (`ocrq models`)."),
            click.option("--dpi", type=int, help="Render PDF pages at this DPI (36-1200)."),
            click.option(
                "--prompt-mode",
                type=click.Choice([mode.value for mode in PromptMode]),
                help="What VLM engines are asked for.",
            ),
            click.option(
                "--priority",
                type=click.IntRange(0, 9),
                default=5,
                show_default=True,
                help="0 lowest, 9 highest: overtakes lower jobs in the queue (with a broker).",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the result (batch.json) as JSON."),
        ]
    ):
        command = option(command)
    return command


def apply_job_options(settings: Settings, force: bool, **flags: Any) -> tuple[Settings, int]:
    """This job's settings and priority; a refused value ends the run naming its flag (exit 2)."""
    from ocrq.api.rest.schemas import JobOptions
    from ocrq.api.rest.submission import job_settings

    raw = {key: value for key, value in flags.items() if value is not None}
    if isinstance(raw.get("engines"), str):
        raw["engines"] = [name.strip().lower() for name in raw["engines"].split(",") if name.strip()]
    try:
        options = JobOptions.model_validate({**raw, "force": force})
    except ValidationError as error:
        fail("invalid_request", "; ".join(_flag_problem(detail) for detail in error.errors()), EXIT_USAGE)
    return job_settings(settings, options), options.priority


def _flag_problem(detail: Any) -> str:
    field = str(detail["loc"][0]) if detail["loc"] else ""
    return f"{FLAG_OF.get(field, field)} {detail.get('input')!r}: {detail['msg']}"


def announce_queued(job_id: int, as_json: bool) -> None:
    """The id on stdout (for scripts), how to follow it on stderr (for people)."""
    if as_json:
        click.echo(json.dumps({"job_id": job_id, "status": "queued"}))
    else:
        click.echo(job_id)
    err_console.print(
        f"job {job_id} submitted; follow it with `ocrq status {job_id}`, "
        f"write its results with `ocrq results {job_id} --out DIR`",
        highlight=False,
        soft_wrap=True,
    )


def report(batch: dict[str, Any], out: str | None, as_json: bool) -> None:
    """The end of a run: batch.json's content on stdout with ``--json``, else the summary table."""
    from ocrq.api.cli.console import print_summary

    if as_json:
        click.echo(json.dumps(batch, ensure_ascii=False, indent=2))
    else:
        print_summary(err_console, batch, out)
