"""``wxpaykit worker`` and ``wxpaykit events list/show/replay/purge/schema``.

Settings come from the same TOML file as the gateway (``--config``, default
``$WXPAYKIT_CONFIG`` or ``./wxpaykit.toml``): ``[gateway] database_url`` and the
``[dispatch]`` table (``[dispatch.worker]``, ``[[dispatch.sinks]]``; see
``docs/events.md``). ``--database-url`` / ``$WXPAYKIT_DATABASE_URL`` override the URL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from wxpaykit.errors import ConfigurationError

__all__ = ["commands"]

commands = typer.Typer()
events_app = typer.Typer(
    help="Inspect and replay event deliveries (dead letters).", no_args_is_help=True
)
commands.add_typer(events_app, name="events")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", envvar="WXPAYKIT_CONFIG", help="TOML file with [gateway] and [dispatch]."
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url", envvar="WXPAYKIT_DATABASE_URL", help="Overrides gateway.database_url."
    ),
]
SchemaOption = Annotated[
    str | None,
    typer.Option(
        "--schema", envvar="WXPAYKIT_DATABASE_SCHEMA", help="PostgreSQL schema (search_path)."
    ),
]
DEFAULT_CONFIG = Path("wxpaykit.toml")


def _read_config(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigurationError(f"{path}: no such configuration file")
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from None


def _database_url(document: dict[str, Any], override: str | None) -> str:
    url = override or document.get("gateway", {}).get("database_url")
    if not url:
        raise ConfigurationError("set gateway.database_url in the config or --database-url")
    return str(url)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _parse_time_ms(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


@commands.command()
def worker(
    config: ConfigOption = DEFAULT_CONFIG,
    database_url: DatabaseOption = None,
    schema: SchemaOption = None,
) -> None:
    """Deliver events to the configured sinks until SIGINT/SIGTERM."""
    from wxpaykit.dispatch.config import parse_dispatch_settings
    from wxpaykit.dispatch.worker import Worker
    from wxpaykit.storage.dialects import create_engine

    try:
        document = _read_config(config, required=True)
        url = _database_url(document, database_url)
        settings = parse_dispatch_settings(document.get("dispatch", {}), base_dir=config.parent)
        if not settings.sinks:
            raise ConfigurationError("no [[dispatch.sinks]] configured")
    except ConfigurationError as exc:
        raise _fail(exc) from None

    async def run() -> None:
        engine = create_engine(url, schema=schema)
        try:
            instance = Worker(engine, settings)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, instance.stop)
            typer.echo(
                f"worker {instance.worker_id}: sinks {', '.join(instance.dispatchers)}", err=True
            )
            await instance.run()
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except ConfigurationError as exc:
        raise _fail(exc) from None


def _engine(config: Path, database_url: str | None, schema: str | None) -> Any:
    from wxpaykit.storage.dialects import create_engine

    document = _read_config(config, required=database_url is None)
    return create_engine(_database_url(document, database_url), schema=schema)


@events_app.command("list")
def list_command(
    config: ConfigOption = DEFAULT_CONFIG,
    database_url: DatabaseOption = None,
    schema: SchemaOption = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
    sink: Annotated[str | None, typer.Option(help="Only this sink.")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Created before (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List deliveries, newest first, one JSON object per line."""
    from wxpaykit.dispatch.history import list_deliveries

    async def run() -> None:
        engine = _engine(config, database_url, schema)
        try:
            rows = await list_deliveries(
                engine,
                status=status,
                sink=sink,
                since_ms=_parse_time_ms(since),
                until_ms=_parse_time_ms(until),
                limit=limit,
            )
        finally:
            await engine.dispose()
        for row in rows:
            typer.echo(json.dumps(row.as_dict(), ensure_ascii=False))

    try:
        asyncio.run(run())
    except ConfigurationError as exc:
        raise _fail(exc) from None


@events_app.command("show")
def show_command(
    event_id: Annotated[str, typer.Argument(help="The event id (evt_...).")],
    config: ConfigOption = DEFAULT_CONFIG,
    database_url: DatabaseOption = None,
    schema: SchemaOption = None,
) -> None:
    """Show one event: body, deliveries and every attempt (JSON)."""
    from wxpaykit.dispatch.history import show_event

    async def run() -> dict[str, Any] | None:
        engine = _engine(config, database_url, schema)
        try:
            detail = await show_event(engine, event_id)
        finally:
            await engine.dispose()
        return None if detail is None else detail.as_dict()

    try:
        found = asyncio.run(run())
    except ConfigurationError as exc:
        raise _fail(exc) from None
    if found is None:
        typer.echo(f"error: no event {event_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(found, ensure_ascii=False, indent=2))


@events_app.command("replay")
def replay_command(
    event_id: Annotated[str | None, typer.Argument(help="Replay this event (any status).")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    database_url: DatabaseOption = None,
    schema: SchemaOption = None,
    sink: Annotated[str | None, typer.Option(help="Only this sink.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Dead letters created at or after (ISO 8601).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Dead letters created before (ISO 8601).")
    ] = None,
) -> None:
    """Deliver again, keeping event ids: one event, or dead letters by sink and/or time."""
    from wxpaykit.dispatch.clock import SystemClock
    from wxpaykit.dispatch.history import replay

    if event_id is None and sink is None and since is None and until is None:
        typer.echo("error: give an EVENT_ID, --sink or --since/--until", err=True)
        raise typer.Exit(2)

    async def run() -> int:
        engine = _engine(config, database_url, schema)
        try:
            return await replay(
                engine,
                now_ms=SystemClock().now_ms(),
                event_id=event_id,
                sink=sink,
                since_ms=_parse_time_ms(since),
                until_ms=_parse_time_ms(until),
            )
        finally:
            await engine.dispose()

    try:
        count = asyncio.run(run())
    except ConfigurationError as exc:
        raise _fail(exc) from None
    typer.echo(f"{count} deliveries scheduled")


@events_app.command("purge")
def purge_command(
    older_than_days: Annotated[
        float,
        typer.Option(min=0, help="Delete deliveries delivered longer ago than this."),
    ],
    config: ConfigOption = DEFAULT_CONFIG,
    database_url: DatabaseOption = None,
    schema: SchemaOption = None,
) -> None:
    """Delete old delivered history (deliveries and their attempts); events, pending
    deliveries and dead letters stay."""
    from wxpaykit.dispatch.clock import SystemClock
    from wxpaykit.dispatch.retention import purge_delivered
    from wxpaykit.errors import StorageError
    from wxpaykit.storage.retention import DAY_MS

    async def run() -> int:
        engine = _engine(config, database_url, schema)
        try:
            cutoff = SystemClock().now_ms() - int(older_than_days * DAY_MS)
            return await purge_delivered(engine, older_than_ms=cutoff)
        finally:
            await engine.dispose()

    try:
        count = asyncio.run(run())
    except (ConfigurationError, StorageError) as exc:
        raise _fail(exc) from None
    typer.echo(f"deleted {count} delivered deliveries")


@events_app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of the event envelope."""
    from wxpaykit.dispatch.events import render_json_schema

    typer.echo(render_json_schema(), nl=False)
