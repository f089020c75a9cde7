"""Flows that fetch platform certificates: at start, on schedule, on an unknown serial.

Single flight: callers yield :class:`~._flow.SingleFlight`, so refreshes run one at a
time per client; each refresh first compares the manager's ``generation`` with the one
the caller saw, and returns at once if another caller refreshed meanwhile. Fifty
requests that meet a new serial together therefore cause one download. With a shared
cache the same happens across processes: the cache is read first, and the download
runs under the cache's lock, re-reading the cache once the lock is held.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, Literal

import httpx

from wxpaykit.api import certificates
from wxpaykit.api.call import ApiCall
from wxpaykit.client._flow import Blocking, Flow, Holding, SingleFlight
from wxpaykit.client.key_cache import CachedCertificates
from wxpaykit.client.keys import PlatformKeyManager
from wxpaykit.core.verification import TrustedKeys, verify_signature
from wxpaykit.errors import ApiError, WxPayKitError

__all__ = ["KeyRefresh", "RefreshReason"]

logger = logging.getLogger("wxpaykit.keys")

RefreshReason = Literal["start", "scheduled", "unknown_serial"]


class KeyRefresh:
    """Mixin of the client base: certificate refresh flows over a :class:`PlatformKeyManager`."""

    keys: PlatformKeyManager
    _tolerance_seconds: int

    # Provided by the base: one attempt-and-retry loop for any call, and the clock.
    def _send_flow(self, call: ApiCall[Any], content: bytes | None) -> Flow[httpx.Response]:
        raise NotImplementedError  # pragma: no cover

    def _now(self) -> dt.datetime:
        raise NotImplementedError  # pragma: no cover

    def _ensure_keys_flow(self) -> Flow[None]:
        """Download at start and after each interval; a failed scheduled refresh keeps
        the current keys (logged) and is retried later, a failed first one raises."""
        keys = self.keys
        if not keys.download_due():
            return
        seen = keys.generation
        reason: RefreshReason = "scheduled" if keys.loaded_at > float("-inf") else "start"
        try:
            yield SingleFlight(self._refresh_factory(seen, reason, None))
        except WxPayKitError as exc:
            if reason == "start" and not keys.has_keys():
                raise
            logger.warning("platform certificate refresh failed, keeping current keys: %s", exc)
            keys.postpone_refresh()

    def _refresh_for_serial_flow(self, seen: int, serial: str | None) -> Flow[bool]:
        """After an unknown serial: refresh once (single flight); True if worth retrying."""
        if not self.keys.downloads_enabled:
            return False
        yield SingleFlight(self._refresh_factory(seen, "unknown_serial", serial))
        return self.keys.generation != seen

    def _refresh_factory(
        self, seen: int, reason: RefreshReason, serial: str | None
    ) -> Callable[[], Flow[None]]:
        return lambda: self._refresh_flow(seen, reason, serial)

    def _refresh_flow(self, seen: int, reason: RefreshReason, serial: str | None) -> Flow[None]:
        keys = self.keys
        if keys.generation != seen:
            return  # refreshed by someone else while we waited for the lock
        if reason != "unknown_serial" and not keys.download_due():
            return
        cache = keys.cache
        if cache is None:
            yield from self._download_flow(reason, serial)
            return
        if (yield from self._adopt_cached_flow(reason, serial)):
            return
        yield Holding(cache.lock, lambda: self._locked_download_flow(reason, serial))

    def _locked_download_flow(self, reason: RefreshReason, serial: str | None) -> Flow[None]:
        # Another worker may have downloaded while we waited for the cross-process lock.
        if (yield from self._adopt_cached_flow(reason, serial)):
            return
        yield from self._download_flow(reason, serial)

    def _adopt_cached_flow(self, reason: RefreshReason, serial: str | None) -> Flow[bool]:
        keys = self.keys
        assert keys.cache is not None  # noqa: S101 - guarded by the caller
        entry: CachedCertificates | None = yield Blocking(keys.cache.load)
        if entry is None:
            return False
        if reason == "unknown_serial":
            if entry.fetched_at <= keys.loaded_at:
                return False
        elif not keys.cache_entry_is_fresh(entry):
            return False
        keys.install(keys.decrypt(entry.payload), fetched_at=entry.fetched_at)
        # An unknown serial still unknown after adopting the cache: download after all.
        return reason != "unknown_serial" or not serial or keys.trusted.knows(serial)

    def _download_flow(self, reason: RefreshReason, serial: str | None) -> Flow[None]:
        keys = self.keys
        if reason == "unknown_serial":
            if not keys.may_download_for_unknown_serial():
                logger.warning("unknown serial %s: download skipped (rate limit)", serial)
                return
            keys.record_unknown_serial_download()
        call = certificates.download_raw()
        try:
            response = yield from self._send_flow(call, None)
        except ApiError as exc:
            if certificates.is_no_certificates_answer(exc.status_code, exc.code):
                keys.mark_certificates_unavailable()
                return
            raise
        content = response.content
        downloaded = keys.decrypt(content)
        # The certificates are authenticated by AES-GCM under the APIv3 key; the answer's
        # signature must then verify under them or the keys we already trust.
        trusted = TrustedKeys(
            certificates=[*keys.trusted.certificates, *downloaded],
            public_keys=keys.trusted.public_keys,
        )
        verify_signature(
            response.headers,
            content,
            trusted,
            now=self._now(),
            tolerance_seconds=self._tolerance_seconds,
        )
        fetched_at = keys.now()
        keys.install(downloaded, fetched_at=fetched_at)
        logger.info("platform certificates downloaded (%s)", reason)
        if keys.cache is not None:
            entry = CachedCertificates(content, fetched_at)
            cache = keys.cache
            yield Blocking(lambda: cache.store(entry))
