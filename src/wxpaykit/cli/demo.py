"""``wxpaykit demo``: simulator + gateway + shop webhook + chaotic payments, proven once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["commands", "demo"]


def demo(
    orders: Annotated[int, typer.Option(min=1, max=5000, help="How many orders.")] = 300,
    once: Annotated[bool, typer.Option("--once", help="Exit after the summary.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of amounts and chaos.")] = 7,
    workdir: Annotated[
        Path | None, typer.Option(help="Keep databases and config here (default: a temp dir).")
    ] = None,
) -> None:
    """Pay orders through the simulator with chaos on; prove each was applied exactly once.

    The gateway's embedded worker delivers every event to a sample shop's webhook; the
    summary compares the events emitted with those the shop verified and processed.
    """
    from rich.console import Console

    from wxpaykit.demo.scenario import DemoOptions, run_demo

    console = Console()
    options = DemoOptions(orders=orders, once=once, seed=seed, workdir=workdir)
    with contextlib.suppress(KeyboardInterrupt):
        report = asyncio.run(run_demo(options, console))
        raise typer.Exit(0 if report.exactly_once and report.delivered_once else 1)


#: Merged into the root ``wxpaykit`` app.
commands = typer.Typer()
commands.command("demo")(demo)
