"""``ocrq doctor``: is everything this configuration needs up? Exit 1 when a required part is down."""

from __future__ import annotations

import sys

import click

from ocrq.api.cli.exits import EXIT_OK, EXIT_SYSTEM, load_settings


@click.command()
def doctor() -> None:
    """Check the database, broker, vLLM servers, Tesseract languages and GPU memory, one line each.

    \b
    Examples:
      ocrq doctor
      OCRQ_VLLM_URL=http://gpu1:8000 ocrq doctor
    """
    from ocrq.worker.doctor import healthy, run_checks

    checks = run_checks(load_settings())
    for check in checks:
        mark = "ok " if check.ok else ("FAIL" if check.required else "--  ")
        click.echo(f"{mark:4} {check.name:10} {check.detail}")
    sys.exit(EXIT_OK if healthy(checks) else EXIT_SYSTEM)
