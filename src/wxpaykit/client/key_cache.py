"""A certificate cache shared by many workers, so a cluster downloads once.

What is cached is the ``/v3/certificates`` answer exactly as received: the
certificates inside are AES-256-GCM sealed under the APIv3 key, so the cache holds
nothing secret and nothing an attacker could forge without that key. Each worker
decrypts (and thereby authenticates) what it reads.

Two implementations: :class:`FileCertificateCache` (workers on one host, ``flock``)
and :class:`RedisCertificateCache` (any number of hosts, redis-py). Both also provide
the cross-process lock under which one worker downloads while the others wait and
then read its result.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from wxpaykit.errors import ConfigurationError

if TYPE_CHECKING:
    import redis

__all__ = [
    "CachedCertificates",
    "CertificateCache",
    "FileCertificateCache",
    "RedisCertificateCache",
]


@dataclass(frozen=True, slots=True)
class CachedCertificates:
    """A ``/v3/certificates`` answer and when it was fetched (Unix seconds)."""

    payload: bytes
    fetched_at: float

    def to_bytes(self) -> bytes:
        """Serialise for storage."""
        return json.dumps(
            {"fetched_at": self.fetched_at, "payload": self.payload.decode("utf-8")}
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedCertificates | None:
        """Parse stored bytes; ``None`` for anything unreadable (treated as a miss)."""
        try:
            document = json.loads(data)
            return cls(
                payload=str(document["payload"]).encode("utf-8"),
                fetched_at=float(document["fetched_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


class CertificateCache(Protocol):
    """Where workers share the certificate list (all methods block briefly)."""

    def load(self) -> CachedCertificates | None:
        """The cached answer, or ``None``."""
        ...

    def store(self, entry: CachedCertificates) -> None:
        """Replace the cached answer."""
        ...

    def lock(self) -> AbstractContextManager[object]:
        """An exclusive lock across processes, held while one worker downloads."""
        ...


class FileCertificateCache:
    """A JSON file plus an ``flock``-ed sibling ``.lock`` file (one host, many processes)."""

    def __init__(self, path: str | Path, *, lock_timeout_seconds: float = 30.0) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_timeout = lock_timeout_seconds

    def load(self) -> CachedCertificates | None:
        """Read the file; a missing or corrupt file is a miss."""
        try:
            return CachedCertificates.from_bytes(self.path.read_bytes())
        except FileNotFoundError:
            return None

    def store(self, entry: CachedCertificates) -> None:
        """Write atomically (temp file + rename) so readers never see half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(entry.to_bytes())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def lock(self) -> Iterator[object]:
        """Hold an exclusive ``flock``; give up with :class:`ConfigurationError` on timeout."""
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+b") as handle:
            deadline = time.monotonic() + self._lock_timeout
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ConfigurationError(
                            f"could not lock {self._lock_path} within {self._lock_timeout} s"
                        ) from None
                    time.sleep(0.02)
            try:
                yield handle
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class RedisCertificateCache:
    """One Redis key plus a redis-py lock (any number of hosts).

    ``client`` is a synchronous ``redis.Redis``; async clients call it from a worker
    thread. The lock expires after ``lock_timeout_seconds`` so a crashed worker cannot
    block the others for ever.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key: str = "wxpaykit:platform-certificates",
        lock_timeout_seconds: float = 30.0,
    ) -> None:
        self._client = client
        self.key = key
        self._lock_timeout = lock_timeout_seconds

    def load(self) -> CachedCertificates | None:
        """Read the key; a missing or corrupt value is a miss."""
        data = self._client.get(self.key)
        if data is None:
            return None
        return CachedCertificates.from_bytes(data if isinstance(data, bytes) else data.encode())

    def store(self, entry: CachedCertificates) -> None:
        """Write the key (no expiry: freshness is judged by ``fetched_at``)."""
        self._client.set(self.key, entry.to_bytes())

    def lock(self) -> AbstractContextManager[object]:
        """redis-py's lock; ``thread_local=False`` because async clients enter and leave
        it from different worker threads."""
        lock: AbstractContextManager[object] = self._client.lock(
            self.key + ":lock",
            timeout=self._lock_timeout,
            blocking_timeout=self._lock_timeout,
            thread_local=False,
        )
        return lock
