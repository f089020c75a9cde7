"""The demo's proof: counts from the gateway, the ledger's tables, the simulator and the shop."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table
from sqlalchemy import func, select

from wxpaykit.demo.outbox import DeliveryTally
from wxpaykit.gateway.metrics import GatewayMetrics
from wxpaykit.storage.events import events
from wxpaykit.storage.ledger import SqlLedger

__all__ = ["DemoReport", "count_double_applications", "render_report"]


@dataclass(kw_only=True)
class DemoReport:
    """What happened, from three independent sources."""

    orders: int
    paid_in_simulator: int
    applied_in_ledger: int
    notifications_received: int
    acknowledged: dict[str, int] = field(default_factory=dict)
    duplicates_absorbed: int
    rejections: dict[str, int] = field(default_factory=dict)
    events: int
    double_applications: int
    chaos: dict[str, int] = field(default_factory=dict)
    forged_acknowledged: int
    forged_direct_status: int
    elapsed_seconds: float
    #: The outbox against the sample shop's webhook (None before delivery was tallied).
    delivery: DeliveryTally | None = None

    @property
    def exactly_once(self) -> bool:
        """Every paid order applied, none twice, no forgery accepted."""
        return (
            self.double_applications == 0
            and self.applied_in_ledger == self.paid_in_simulator == self.orders
            and self.forged_acknowledged == 0
            and self.forged_direct_status >= 400
        )

    @property
    def delivered_once(self) -> bool:
        """Every emitted event processed by the shop, no webhook refused by it."""
        return (
            self.delivery is not None
            and self.delivery.lost == 0
            and self.delivery.shop.refused == 0
            and len(self.delivery.emitted) == self.events
        )


def metric_totals(metrics: GatewayMetrics, name: str, label: str) -> dict[str, int]:
    """Sum a counter's samples by one label (``outcome``, ``reason``)."""
    totals: dict[str, int] = {}
    prefix = f"wxpaykit_notifications_{name}_total{{"
    for key, value in metrics.snapshot().items():
        if not key.startswith(prefix):
            continue
        labels = dict(part.split("=", 1) for part in key[len(prefix) : -1].split(","))
        totals[labels[label]] = totals.get(labels[label], 0) + int(value)
    return totals


async def count_double_applications(ledger: SqlLedger) -> int:
    """(order, event type) pairs that occur more than once in the outbox: must be 0."""
    pairs = (
        select(events.c.aggregate_key, events.c.type)
        .group_by(events.c.aggregate_key, events.c.type)
        .having(func.count() > 1)
        .subquery()
    )
    async with ledger.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(pairs)) or 0)


def render_report(report: DemoReport) -> Table:
    """The summary table."""
    table = Table(title="wxpaykit demo: every payment applied exactly once", show_lines=False)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    table.add_row("orders created through the gateway API", str(report.orders))
    table.add_row("orders paid in the simulator", str(report.paid_in_simulator))
    table.add_row("orders applied (SUCCESS) in the ledger", str(report.applied_in_ledger))
    table.add_row("notification requests received", str(report.notifications_received))
    for outcome, count in sorted(report.acknowledged.items()):
        table.add_row(f"  acknowledged: {outcome}", str(count))
    table.add_row("duplicates absorbed", str(report.duplicates_absorbed))
    for reason, count in sorted(report.rejections.items()):
        table.add_row(f"  rejected: {reason}", str(count))
    for kind, count in sorted(report.chaos.items()):
        table.add_row(f"  chaos injected: {kind}", str(count))
    table.add_row("forged attempts acknowledged", str(report.forged_acknowledged))
    table.add_row("hand-forged notification answered", str(report.forged_direct_status))
    table.add_row("outbox events emitted", str(report.events))
    style = "bold green" if report.double_applications == 0 else "bold red"
    table.add_row("double applications", f"[{style}]{report.double_applications}[/]")
    if report.delivery is not None:
        _delivery_rows(table, report.delivery)
    table.add_row("elapsed", f"{report.elapsed_seconds:.1f} s")
    return table


def _delivery_rows(table: Table, tally: DeliveryTally) -> None:
    table.add_row("events received by the shop (distinct ids)", str(tally.received))
    received_by_type = tally.shop.by_type
    for event_type, count in sorted(tally.emitted_by_type.items()):
        table.add_row(
            f"  {event_type}: emitted / received",
            f"{count} / {received_by_type.get(event_type, 0)}",
        )
    table.add_row("duplicate webhooks the shop deduplicated", str(tally.shop.duplicates))
    table.add_row("webhooks the shop refused (signature)", str(tally.shop.refused))
    style = "bold green" if tally.lost == 0 else "bold red"
    table.add_row("events lost", f"[{style}]{tally.lost}[/]")
