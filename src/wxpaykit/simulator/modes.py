"""How the platform signs for a merchant: the three key modes of protocol reference §3.5.

* ``certificate``: platform certificates, downloadable from ``/v3/certificates`` and
  rotatable (a new certificate overlaps the old one);
* ``public_key``: a WeChat Pay public key ``PUB_KEY_ID_...``; no platform certificate;
* ``migration``: both. Responses follow the request's ``Wechatpay-Serial``;
  notifications are signed by the public key for a growing share of them, day by
  day (:data:`MIGRATION_RAMP`).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DAY_SECONDS", "MIGRATION_RAMP", "MerchantMode", "migration_share"]

#: Share of notifications signed with the public key on day 1..7 of a migration (§3.5).
MIGRATION_RAMP = (0.001, 0.01, 0.05, 0.10, 0.20, 0.50, 1.0)
#: One platform day, before the simulator's time scale applies.
DAY_SECONDS = 86400.0


class MerchantMode(StrEnum):
    """How the platform signs for this merchant."""

    CERTIFICATE = "certificate"
    PUBLIC_KEY = "public_key"
    MIGRATION = "migration"


def migration_share(elapsed_seconds: float, time_scale: float) -> float:
    """The ramp's share on the (time-scaled) day ``elapsed_seconds`` after migration began."""
    day = int(elapsed_seconds / (DAY_SECONDS * max(time_scale, 1e-9)))
    return MIGRATION_RAMP[min(max(day, 0), len(MIGRATION_RAMP) - 1)]
