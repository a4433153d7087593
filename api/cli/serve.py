"""``ocrq api`` (serve the REST API with uvicorn) and ``ocrq keys`` (make, list, revoke API keys)."""

from __future__ import annotations

import click
from sqlalchemy.orm import Session, sessionmaker

from ocrq.api.cli.exits import err_console, load_settings, or_exit
from ocrq.jobs.access import Role
from ocrq.logs import configure_logging, log_level


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to listen on every interface.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
def api(host: str, port: int) -> None:
    """Serve the REST API: submit jobs, follow them, fetch results, scrape /metrics.

    Without OCRQ_BROKER_URL jobs run in this process, one at a time; with it
    they are queued for `ocrq worker` processes.

    \b
    Examples:
      ocrq api
      ocrq api --host 0.0.0.0 --port 8080
    """
    import uvicorn

    from ocrq.api.rest.app import create_app

    settings = load_settings()
    app = or_exit(lambda: create_app(settings))
    configure_logging(log_level("info"))  # uvicorn's own lines through ocrq's formatter (log_config=None)
    uvicorn.run(
        app, host=host, port=port, log_config=None, log_level=None, proxy_headers=True, server_header=False
    )


@click.group()
def keys() -> None:
    """API keys (sent as `Authorization: Bearer KEY` or in the X-API-Key header).

    \b
    Examples:
      ocrq keys add scanner
      ocrq keys list
    """


def _sessions() -> sessionmaker[Session]:
    from ocrq.worker.batch import open_database

    settings = load_settings()
    return or_exit(lambda: open_database(settings))[1]


@keys.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),
    default=Role.SUBMIT.value,
    show_default=True,
    help="submit: sees only the jobs it made. admin: sees every job, CLI and inbox jobs included.",
)
def keys_add(name: str, role: str) -> None:
    """Make a key called NAME and print it; it is shown this once and stored only hashed.

    \b
    Examples:
      ocrq keys add scanner
      ocrq keys add ops --role admin
    """
    from ocrq.api.rest.security import add_key, list_keys

    sessions = _sessions()
    if any(info.name == name for info in or_exit(lambda: list_keys(sessions))):
        raise click.UsageError(f"a key named {name!r} exists already")
    key = or_exit(lambda: add_key(sessions, name, Role(role)))
    click.echo(key)
    err_console.print(f"{role} key {name!r} added; store it now, it cannot be shown again")


@keys.command("list")
def keys_list() -> None:
    """Keys by name: prefix, role, when made, when last used, whether revoked.

    \b
    Examples:
      ocrq keys list
    """
    from ocrq.api.rest.security import list_keys

    for info in or_exit(lambda: list_keys(_sessions())):
        state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "active"
        used = f"{info.last_used_at:%Y-%m-%d %H:%M}" if info.last_used_at else "never"
        made = f"{info.created_at:%Y-%m-%d %H:%M}"
        click.echo(f"{info.name}\t{info.prefix}…\t{info.role}\t{made}\tused {used}\t{state}")


@keys.command("revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke the key called NAME: requests with it get 401 from now on.

    \b
    Examples:
      ocrq keys revoke scanner
    """
    from ocrq.api.rest.security import revoke_key

    sessions = _sessions()
    if not or_exit(lambda: revoke_key(sessions, name)):
        raise click.UsageError(f"no active key named {name!r}")
    click.echo(f"key {name!r} revoked")


API_COMMANDS = [api, keys]
