"""Event dispatch: the outbox's events delivered to handlers, webhooks and brokers.

At-least-once delivery with stable event ids, per-order ordering, retries with full
jitter, a circuit breaker per sink shared through the database, dead letters and
replay. Start with :class:`wxpaykit.dispatch.worker.Worker` or ``wxpaykit worker``.

Nothing is imported here, so ``import wxpaykit.dispatch.events`` needs no driver.
"""

from __future__ import annotations
