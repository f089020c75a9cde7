"""``wxpaykit serve``, ``wxpaykit init`` and ``wxpaykit replay``: the gateway's commands.

``serve`` runs uvicorn with the ASGI factory (``wxpaykit.gateway.app:app_from_env``),
so ``uvicorn --factory`` and ``wxpaykit serve`` run the very same app. ``--config``
is passed to the app through ``WXPAYKIT_CONFIG``, which worker processes inherit;
``--worker/--no-worker`` likewise through ``WXPAYKIT_EMBEDDED_WORKER`` (the event
dispatcher's worker runs inside each gateway process; by default when
``[[dispatch.sinks]]`` are configured).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wxpaykit.cli.workers import balanced_workers_supported, run_balanced_workers
from wxpaykit.errors import ConfigurationError
from wxpaykit.gateway.starter import STARTER_CONFIG

if TYPE_CHECKING:
    from wxpaykit.gateway.settings import GatewaySettings

__all__ = ["commands", "http_protocol", "init", "replay", "serve", "uvicorn_options"]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Gateway TOML file (default: $WXPAYKIT_CONFIG or ./wxpaykit.toml)."
    ),
]


def _use_config(config: Path | None) -> None:
    # The factory reads settings in each worker through GatewaySettings.from_env().
    if config is not None:
        os.environ["WXPAYKIT_CONFIG"] = str(config.resolve())


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    migrate: Annotated[
        bool, typer.Option(help="Bring the database schema up to date before serving.")
    ] = True,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Deliver events in-process (default: when [[dispatch.sinks]] are configured).",
        ),
    ] = None,
) -> None:
    """Run the notification gateway (and, with sinks configured, the event dispatcher)."""
    import uvicorn

    from wxpaykit.gateway.settings import ENV_PREFIX, GatewaySettings
    from wxpaykit.storage import dialects
    from wxpaykit.storage import migrate as migrations

    _use_config(config)
    if worker is not None:  # read back by GatewaySettings.from_env() in every process
        os.environ[ENV_PREFIX + "EMBEDDED_WORKER"] = "true" if worker else "false"
    try:
        settings = GatewaySettings.from_env()  # fail here, readably, before forking workers
    except ConfigurationError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        dialects.check_url(settings.database_url)
    except ValueError as exc:
        typer.echo(f"configuration error: database_url: {exc}", err=True)
        raise typer.Exit(2) from None
    if migrate:  # once, here, before uvicorn forks its workers
        asyncio.run(migrations.upgrade(settings.database_url))
    if settings.runs_embedded_worker:
        sinks = ", ".join(sink.name for sink in settings.dispatch.sinks)
        typer.echo(f"delivering events in-process to: {sinks}", err=True)
    bind_port = settings.port if port is None else port
    options = uvicorn_options(settings, host=host or settings.host, port=bind_port)
    if balanced_workers_supported(workers, bind_port):
        # Each worker on its own SO_REUSEPORT socket: the kernel spreads connections (workers.py).
        try:
            code = run_balanced_workers(workers, options)
        except OSError as exc:  # the port is taken, or the address is not ours
            typer.echo(f"cannot listen on {options['host']}:{bind_port}: {exc}", err=True)
            raise typer.Exit(1) from None
        raise typer.Exit(code)
    uvicorn.run(**options, workers=workers)  # type: ignore[arg-type]


def uvicorn_options(settings: GatewaySettings, *, host: str, port: int) -> dict[str, object]:
    """The :class:`uvicorn.Config` arguments ``serve`` runs the gateway with."""
    return {
        "app": "wxpaykit.gateway.app:app_from_env",
        "factory": True,
        "host": host,
        "port": port,
        "access_log": False,  # the gateway logs every request itself, as JSON
        "log_level": settings.log_level,
        # The gateway reads neither the client's address nor the scheme, so uvicorn's
        # X-Forwarded-* rewriting would be a middleware on every notification for nothing.
        "proxy_headers": False,
        "http": http_protocol(),
    }


def http_protocol() -> str:
    """uvicorn's httptools protocol with writes batched per event-loop turn
    (:mod:`wxpaykit.gateway.batched_writes`); uvicorn's choice where httptools is missing."""
    try:
        from wxpaykit.gateway.batched_writes import PROTOCOL
    except ImportError:  # uvicorn without httptools (no [standard] extras)
        return "auto"
    return PROTOCOL


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the starter config.")] = Path(
        "wxpaykit.toml"
    ),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter configuration."""
    if path.exists() and not force:
        typer.echo(f"{path} exists; use --force to overwrite it", err=True)
        raise typer.Exit(1)
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    typer.echo(f"wrote {path}; put your keys under secrets/ and run: wxpaykit serve -c {path}")


def replay(
    config: ConfigOption = None,
    limit: Annotated[int | None, typer.Option(help="Re-drive at most this many.")] = None,
) -> None:
    """Re-drive inbound dead letters (verified notifications whose processing raised)."""
    from wxpaykit.gateway.settings import GatewaySettings
    from wxpaykit.gateway.wiring import open_ledger

    _use_config(config)
    try:
        settings = GatewaySettings.from_env()
    except ConfigurationError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run() -> int:
        ledger = await open_ledger(settings)
        try:
            report = await ledger.redrive_dead_letters(limit=limit)
        finally:
            await ledger.aclose()
        for result in report.results:
            outcome = result.outcome.value if result.outcome else f"failed again: {result.error}"
            typer.echo(f"{result.mchid} {result.notification_id}: {outcome}")
        typer.echo(f"re-driven: {report.resolved}, still failing: {report.failed}")
        return 1 if report.failed else 0

    raise typer.Exit(asyncio.run(run()))


#: Merged into the root ``wxpaykit`` app (``app.add_typer(commands)``).
commands = typer.Typer()
commands.command("serve")(serve)
commands.command("init")(init)
commands.command("replay")(replay)
