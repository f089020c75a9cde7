"""``wxpaykit db``: migrate the ledger database (up, or back for a rollback), show its
revision, purge old raw bodies."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from wxpaykit.errors import StorageError

__all__ = ["commands"]

commands = typer.Typer(name="db", help="The ledger database: migrations and retention.")

UrlOption = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="WXPAYKIT_DATABASE_URL",
        help="sqlite:///path, postgresql://user@host/db or mysql://user@host/db.",
    ),
]
SchemaOption = Annotated[
    str | None, typer.Option("--schema", help="PostgreSQL schema (search_path).")
]


@commands.command("upgrade")
def upgrade(database_url: UrlOption, schema: SchemaOption = None) -> None:
    """Apply every migration up to the latest (idempotent)."""
    from wxpaykit.storage import migrate

    try:
        asyncio.run(migrate.upgrade(database_url, schema=schema))
    except (StorageError, ValueError) as exc:
        typer.echo(f"upgrade failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("schema is at " + ", ".join(sorted(migrate.head_revisions())))


@commands.command("downgrade")
def downgrade(
    revision: Annotated[
        str, typer.Argument(help="Undo every migration after this one ('base': all of them).")
    ],
    database_url: UrlOption,
    schema: SchemaOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask: the tables a migration added are dropped.")
    ] = False,
) -> None:
    """Roll the schema back to REVISION, before installing an older wxpaykit."""
    from wxpaykit.storage import migrate

    known = (migrate.BASE, *migrate.revisions())
    if revision not in known:
        typer.echo(f"unknown revision {revision[:64]!r}; known: {', '.join(known)}", err=True)
        raise typer.Exit(2)
    undone = known[known.index(revision) + 1 :]
    if not undone:
        typer.echo(f"nothing to undo: {revision} is the latest revision")
        return
    if not yes and not typer.confirm(
        f"Undo {', '.join(reversed(undone))} (whichever are applied)? Tables they added are"
        " dropped with their rows.",
        default=False,
    ):
        typer.echo("nothing changed", err=True)
        raise typer.Exit(1)
    try:
        asyncio.run(migrate.downgrade(database_url, revision=revision, schema=schema))
        now = asyncio.run(migrate.applied_revisions(database_url, schema=schema))
    except (StorageError, ValueError) as exc:
        typer.echo(f"downgrade failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"schema is at {', '.join(now)}" if now else "no wxpaykit migration is applied")


@commands.command("current")
def current(database_url: UrlOption, schema: SchemaOption = None) -> None:
    """Exit 0 when the schema is at the latest revision, 1 otherwise."""
    from wxpaykit.storage import migrate

    try:
        ok = asyncio.run(migrate.is_current(database_url, schema=schema))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    heads = ", ".join(sorted(migrate.head_revisions()))
    typer.echo(f"current (at {heads})" if ok else f"not current (latest is {heads})")
    raise typer.Exit(0 if ok else 1)


@commands.command("purge-raw")
def purge_raw(
    database_url: UrlOption,
    older_than_days: Annotated[
        float, typer.Option(min=0, help="Delete raw requests older than this.")
    ] = 30,
    schema: SchemaOption = None,
) -> None:
    """Delete stored raw notification requests older than the retention period."""
    from wxpaykit.storage.ledger import SqlLedger
    from wxpaykit.storage.retention import DAY_MS

    async def run() -> int:
        async with SqlLedger.from_url(database_url, schema=schema) as ledger:
            return await ledger.purge_raw_requests(retention_ms=int(older_than_days * DAY_MS))

    try:
        deleted = asyncio.run(run())
    except (StorageError, ValueError) as exc:
        typer.echo(f"purge failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"deleted {deleted} raw request(s)")
