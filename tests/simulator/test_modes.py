"""The migration ramp of protocol reference §3.5, on the simulator's time scale."""

from __future__ import annotations

import pytest

from wxpaykit.simulator.modes import DAY_SECONDS, MIGRATION_RAMP, migration_share


@pytest.mark.parametrize(
    ("elapsed_days", "share"),
    [(0.0, 0.001), (0.99, 0.001), (1.0, 0.01), (5.5, 0.50), (6.0, 1.0), (40.0, 1.0)],
)
def test_share_follows_the_daily_ramp(elapsed_days: float, share: float) -> None:
    assert migration_share(elapsed_days * DAY_SECONDS, 1.0) == share


def test_time_scale_shortens_the_days() -> None:
    assert migration_share(2 * DAY_SECONDS * 0.01, 0.01) == MIGRATION_RAMP[2]


def test_a_clock_set_before_the_migration_began_stays_on_day_one() -> None:
    assert migration_share(-3 * DAY_SECONDS, 1.0) == MIGRATION_RAMP[0]
