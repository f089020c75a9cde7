"""Chaos: the platform's misbehaviours, on purpose and reproducibly.

A merchant's gateway must survive what the real platform does now and then: send a
notification twice (a second later, or at the same moment), deliver out of order,
send signature probes (``WECHATPAY/SIGNTEST/...``, §3.4), and lose notifications. A
test also wants to see forgeries refused: stale timestamps, tampered bodies, unknown
serials. Each is a rate in [0, 1], set per merchant or globally (``*``).

Every decision is drawn from ``random.Random(f"{seed}:{notification_id}:{attempt}:{kind}")``,
so a given seed gives the same chaos whatever the order in which deliveries run.

Forged attempts (probe, stale timestamp, tampered body, unknown serial) are extra
requests sent *before* the genuine one; whatever the answer, the genuine attempt
follows. A correct gateway refuses every forged attempt (4xx/5xx); a 2xx to one is
recorded as ``acked`` on a ``forged`` attempt, which is what tests count.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

__all__ = ["FORGERIES", "ChaosSettings", "draw", "fraction"]

#: Chaos kinds that produce a request the merchant must refuse.
FORGERIES = ("probe", "stale_timestamp", "tampered", "unknown_serial")

DuplicateMode = Literal["spaced", "concurrent"]


@dataclass(frozen=True, kw_only=True)
class ChaosSettings:
    """Rates (0..1) of each misbehaviour, a seed, and the few knobs they need."""

    seed: int = 0
    duplicate_rate: float = 0.0
    duplicate_mode: DuplicateMode = "spaced"
    #: Platform seconds between the genuine delivery and a spaced duplicate (× time scale).
    duplicate_delay_seconds: float = 1.0
    reorder_rate: float = 0.0
    #: How long (platform seconds, × time scale) a reordered notification is held back.
    reorder_delay_seconds: float = 5.0
    probe_rate: float = 0.0
    stale_timestamp_rate: float = 0.0
    #: How far in the past a stale timestamp lies (beyond every SDK's 300 s window).
    stale_seconds: int = 600
    tampered_rate: float = 0.0
    unknown_serial_rate: float = 0.0
    drop_rate: float = 0.0
    #: The merchant's 2xx is treated as if it came after the ack timeout (then retried).
    slow_ack_rate: float = 0.0

    def __post_init__(self) -> None:
        for spec in fields(self):
            if spec.name.endswith("_rate"):
                value = getattr(self, spec.name)
                if not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f"{spec.name} must be between 0 and 1, got {value}")
        if self.duplicate_mode not in ("spaced", "concurrent"):
            raise ValueError("duplicate_mode must be 'spaced' or 'concurrent'")
        for name in ("duplicate_delay_seconds", "reorder_delay_seconds", "stale_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ChaosSettings:
        """Build from a JSON object; unknown keys are refused (a typo must not be silent)."""
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(document) - known)
        if unknown:
            raise ValueError(f"unknown chaos settings: {', '.join(unknown)}")
        return cls(**document)

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)

    @property
    def is_quiet(self) -> bool:
        """True when no misbehaviour is enabled."""
        return all(
            getattr(self, spec.name) == 0.0 for spec in fields(self) if spec.name.endswith("_rate")
        )


def draw(settings: ChaosSettings, notification_id: str, attempt: int, kind: str) -> bool:
    """Decide, reproducibly, whether misbehaviour ``kind`` hits this attempt."""
    rate = float(getattr(settings, f"{kind}_rate"))
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    rng = random.Random(f"{settings.seed}:{notification_id}:{attempt}:{kind}")  # noqa: S311 - test chaos, not crypto
    return rng.random() < rate


def fraction(seed: int, notification_id: str, kind: str) -> float:
    """A reproducible number in [0, 1) tied to a notification (e.g. the migration ramp)."""
    return random.Random(f"{seed}:{notification_id}:{kind}").random()  # noqa: S311
