"""Entry point of the ``wxpaykit`` command.

Each subcommand lives in its own module under ``wxpaykit.cli`` and is registered here
with one line, so the modules can grow independently.
"""

from __future__ import annotations

import typer

from wxpaykit.cli.db import commands as db_commands
from wxpaykit.cli.demo import commands as demo_commands
from wxpaykit.cli.doctor import app as doctor_app
from wxpaykit.cli.events import commands as events_commands
from wxpaykit.cli.serve import commands as serve_commands
from wxpaykit.cli.sim import app as sim_app

app = typer.Typer(
    name="wxpaykit",
    help="WeChat Pay toolkit: diagnose notifications, run the gateway, simulate WeChat Pay.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold keys
)


@app.callback()
def _root() -> None:
    """WeChat Pay (微信支付) toolkit."""


# --- subcommand registrations (one line each) ---
app.add_typer(db_commands)  # db upgrade/current/purge-raw
app.add_typer(sim_app, name="sim")  # sim, sim merchant/pay/chaos/...
app.add_typer(serve_commands)  # serve, init, replay
app.add_typer(demo_commands)  # demo
app.add_typer(events_commands)  # worker, events list/show/replay/schema
app.add_typer(doctor_app, name="doctor")  # doctor notification


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
