"""The platform key manager: which keys verify WeChat Pay, and when to fetch new ones.

Two sources, usable together (protocol reference §3.5):

* **public-key mode**: the WeChat Pay public key (``pub_key.pem``) and its
  ``PUB_KEY_ID_...``, configured once; it never needs downloading.
* **certificate mode**: platform certificates from ``GET /v3/certificates``, downloaded
  when the client starts, refreshed on a schedule (default every 12 h, the platform's
  advice), and refreshed at once when a response or notification names an unknown
  serial (rotation). However many requests see the unknown serial at once, one
  download serves them all (single flight, see ``_refresh.py``); an optional
  :mod:`shared cache <.key_cache>` lets a whole cluster download once.

A merchant onboarded since late 2024 has no certificates: ``/v3/certificates`` answers
404 and the manager simply stops asking, with no configuration needed, provided the
public key is configured. A certificate that expires within seven days is logged as a
warning at every refresh.

This class holds state and decisions only; the client performs the I/O.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.client.key_cache import CachedCertificates, CertificateCache
from wxpaykit.core.certificates import decrypt_certificates
from wxpaykit.core.crypto import ApiV3Key, rsa_oaep_encrypt
from wxpaykit.core.keys import PlatformCertificate, WeChatPayPublicKey
from wxpaykit.core.verification import TrustedKeys
from wxpaykit.errors import ConfigurationError

__all__ = ["CertificateMode", "PlatformKeyManager", "SensitiveEncryptor"]

logger = logging.getLogger("wxpaykit.keys")

CertificateMode = Literal["auto", "on", "off"]
DEFAULT_REFRESH_INTERVAL_SECONDS = 12 * 3600.0
#: After a failed scheduled refresh (keys still usable), try again this much later.
RETRY_FAILED_REFRESH_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class SensitiveEncryptor:
    """Encrypts sensitive fields for WeChat Pay with one key (protocol reference §8).

    Send ``serial`` as ``Wechatpay-Serial`` with the request (``client.request(...,
    wechatpay_serial=encryptor.serial)``): it tells the platform which key was used.
    """

    serial: str
    public_key: rsa.RSAPublicKey = field(repr=False)

    def encrypt(self, plaintext: str) -> str:
        """RSA-OAEP (SHA-1) then base64; an empty string stays empty."""
        return rsa_oaep_encrypt(plaintext, self.public_key)


class PlatformKeyManager:
    """Trusted platform keys plus the decisions about downloading certificates.

    ``certificate_mode``: ``"auto"`` downloads when an APIv3 key is given and accepts a
    404 (public-key-only merchant); ``"on"`` requires certificates; ``"off"`` never
    downloads. ``min_download_interval_seconds`` bounds how often unknown serials may
    trigger downloads, so forged notifications cannot make us hammer the API.
    """

    def __init__(
        self,
        *,
        apiv3_key: ApiV3Key | str | bytes | None = None,
        public_keys: Iterable[WeChatPayPublicKey] = (),
        certificates: Iterable[PlatformCertificate] = (),
        certificate_mode: CertificateMode = "auto",
        refresh_interval_seconds: float = DEFAULT_REFRESH_INTERVAL_SECONDS,
        min_download_interval_seconds: float = 10.0,
        expiry_warning_days: int = 7,
        cache: CertificateCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if certificate_mode not in ("auto", "on", "off"):
            raise ValueError("certificate_mode must be 'auto', 'on' or 'off'")
        self.apiv3_key = (
            apiv3_key
            if isinstance(apiv3_key, ApiV3Key) or apiv3_key is None
            else ApiV3Key(apiv3_key)
        )
        if certificate_mode == "on" and self.apiv3_key is None:
            raise ConfigurationError("certificate mode needs the APIv3 key to decrypt certificates")
        self.trusted = TrustedKeys(certificates=certificates, public_keys=public_keys)
        self.mode: CertificateMode = certificate_mode
        self.refresh_interval_seconds = refresh_interval_seconds
        self.min_download_interval_seconds = min_download_interval_seconds
        self.expiry_warning = dt.timedelta(days=expiry_warning_days)
        self.cache = cache
        self._clock = clock
        self._certificates_unavailable = False
        #: Bumped at every install; waiters compare it to skip a refresh done meanwhile.
        self.generation = 0
        #: ``fetched_at`` of the installed certificate list (-inf: none yet).
        self.loaded_at = -math.inf
        self._last_download_at = -math.inf
        self._next_refresh_at = -math.inf
        if (
            not self.downloads_enabled
            and not self.trusted.public_keys
            and not self.trusted.certificates
        ):
            raise ConfigurationError(
                "no way to verify WeChat Pay: configure the WeChat Pay public key"
                " (pub_key.pem and its PUB_KEY_ID_...), platform certificates, or the APIv3 key"
            )

    # --- decisions -------------------------------------------------------------------

    @property
    def downloads_enabled(self) -> bool:
        """True when certificates are (still) fetched from ``/v3/certificates``."""
        return (
            self.mode != "off" and self.apiv3_key is not None and not self._certificates_unavailable
        )

    def now(self) -> float:
        """The manager's clock (Unix seconds)."""
        return self._clock()

    def download_due(self) -> bool:
        """True at start and once the refresh interval has passed."""
        return self.downloads_enabled and self.now() >= self._next_refresh_at

    def may_download_for_unknown_serial(self) -> bool:
        """True when an unknown serial may trigger a download now."""
        return (
            self.downloads_enabled
            and self.now() - self._last_download_at >= self.min_download_interval_seconds
        )

    def has_keys(self) -> bool:
        """True when at least one key can verify."""
        return bool(self.trusted.public_keys or self.trusted.certificates)

    def cache_entry_is_fresh(self, entry: CachedCertificates) -> bool:
        """A cached list is adopted when it is newer than ours and not past its interval."""
        return (
            entry.fetched_at > self.loaded_at
            and self.now() - entry.fetched_at < self.refresh_interval_seconds
        )

    def request_serial(self) -> str | None:
        """The ``Wechatpay-Serial`` to send: the key we want responses signed with.

        During a migration the platform signs the response with the public key when the
        request names its id (§3.5), so the public key wins when configured.
        """
        for key in self.trusted.public_keys:
            return key.key_id
        newest = self.trusted.newest_certificate()
        return newest.serial_no if newest else None

    def encryptor(self) -> SensitiveEncryptor:
        """The encryptor for sensitive fields (public key first, else newest certificate)."""
        serial, key = self.trusted.encryption_key()
        return SensitiveEncryptor(serial, key)

    # --- state changes ---------------------------------------------------------------

    def decrypt(self, payload: bytes) -> list[PlatformCertificate]:
        """Decrypt a ``/v3/certificates`` answer, dropping certificates not valid now."""
        if self.apiv3_key is None:
            raise ConfigurationError("the APIv3 key is needed to decrypt platform certificates")
        now = dt.datetime.fromtimestamp(self.now(), dt.UTC)
        return decrypt_certificates(payload, self.apiv3_key, now=now)

    def install(self, certificates: list[PlatformCertificate], *, fetched_at: float) -> None:
        """Trust exactly ``certificates`` (plus the public keys) from now on."""
        self.trusted.replace_certificates(certificates)
        self.loaded_at = fetched_at
        self._next_refresh_at = fetched_at + self.refresh_interval_seconds
        self.generation += 1
        self._warn_expiring(certificates)
        logger.info(
            "platform certificates installed: %s",
            ", ".join(c.serial_no for c in certificates) or "none",
        )

    def record_unknown_serial_download(self) -> None:
        """Note a download caused by an unknown serial (they are rate limited; the start
        and scheduled downloads are not, so a rotation right after start is followed)."""
        self._last_download_at = self.now()

    def mark_certificates_unavailable(self) -> None:
        """``/v3/certificates`` answered 404: a public-key-only merchant.

        Fine when the public key is configured (downloads simply stop); otherwise there
        is nothing to verify with, which is a configuration error worth a clear message.
        """
        if self.mode == "on" or not self.trusted.public_keys:
            raise ConfigurationError(
                "this merchant has no platform certificates (/v3/certificates answered 404):"
                " configure the WeChat Pay public key (pub_key.pem and its PUB_KEY_ID_...)"
            )
        self._certificates_unavailable = True
        self.generation += 1
        logger.info("no platform certificates for this merchant; using the public key only")

    def postpone_refresh(self, seconds: float = RETRY_FAILED_REFRESH_SECONDS) -> None:
        """After a failed scheduled refresh, keep the current keys and try again later."""
        self._next_refresh_at = self.now() + seconds

    def _warn_expiring(self, certificates: list[PlatformCertificate]) -> None:
        now = dt.datetime.fromtimestamp(self.now(), dt.UTC)
        newest = max((c.not_after for c in certificates), default=None)
        for certificate in certificates:
            remaining = certificate.not_after - now
            if remaining <= self.expiry_warning:
                successor = newest is not None and newest > certificate.not_after
                logger.warning(
                    "platform certificate %s expires on %s (in %.1f days); %s",
                    certificate.serial_no,
                    certificate.not_after.isoformat(),
                    remaining.total_seconds() / 86400,
                    "a newer certificate is already trusted"
                    if successor
                    else "no successor yet: check the merchant portal or move to the public key",
                )
