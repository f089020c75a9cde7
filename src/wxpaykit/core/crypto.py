"""Symmetric and asymmetric encryption used by APIv3 (protocol reference §5 and §8).

* AEAD_AES_256_GCM: notification ``resource`` and ``/v3/certificates`` payloads. The key
  is the APIv3 key's 32 ASCII bytes (not hex- or base64-decoded), the nonce the 12-byte
  ``nonce`` string, the associated data the ``associated_data`` string (may be empty),
  and ``ciphertext`` is base64 of ``encrypted || 16-byte tag``.
* RSA-OAEP with SHA-1 and MGF1-SHA-1, empty label: sensitive request fields (encrypted
  for WeChat with the platform key) and sensitive response fields (decrypted with the
  merchant key).
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wxpaykit.errors import ConfigurationError, DecryptionError

__all__ = [
    "ApiV3Key",
    "aes_gcm_open",
    "aes_gcm_seal",
    "rsa_oaep_decrypt",
    "rsa_oaep_encrypt",
]

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303 - WeChat's wire format
_AES_KEY_SIZES = (16, 24, 32)


class ApiV3Key:
    """The merchant's APIv3 key: exactly 32 bytes. Never printed."""

    __slots__ = ("_cipher", "_key")

    def __init__(self, key: str | bytes) -> None:
        raw = key.encode("utf-8") if isinstance(key, str) else key
        if len(raw) != 32:
            raise ConfigurationError(
                f"the APIv3 key must be 32 bytes, got {len(raw)} (check for spaces or a newline)"
            )
        self._key = raw
        self._cipher = AESGCM(raw)

    @property
    def cipher(self) -> AESGCM:
        """The AES-256-GCM cipher for this key (built once)."""
        return self._cipher

    def __repr__(self) -> str:
        return "ApiV3Key(***)"


@lru_cache(maxsize=64)
def _cipher_for(key: bytes) -> AESGCM:
    if len(key) not in _AES_KEY_SIZES:
        raise ConfigurationError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
    return AESGCM(key)


def _cipher(key: ApiV3Key | bytes | str) -> AESGCM:
    if isinstance(key, ApiV3Key):
        return key.cipher
    return _cipher_for(key.encode("utf-8") if isinstance(key, str) else key)


def aes_gcm_open(
    key: ApiV3Key | bytes | str,
    *,
    nonce: str | bytes,
    associated_data: str | bytes | None,
    ciphertext: str | bytes,
) -> bytes:
    """Decrypt and authenticate base64 ``ciphertext``; raise :class:`DecryptionError`.

    A failure almost always means a wrong (or recently reset) APIv3 key, or a tampered
    or truncated ciphertext; the error says so without echoing any input.
    """
    nonce_bytes = nonce.encode("utf-8") if isinstance(nonce, str) else nonce
    if isinstance(associated_data, str):
        aad: bytes | None = associated_data.encode("utf-8")
    else:
        aad = associated_data
    try:
        # strict_mode refuses non-alphabet characters and bad padding (like validate=True)
        # without the regular-expression pass of base64.b64decode.
        data = binascii.a2b_base64(ciphertext, strict_mode=True)
    except (binascii.Error, ValueError):
        raise DecryptionError("ciphertext is not valid base64") from None
    if len(nonce_bytes) != 12:
        raise DecryptionError(f"nonce must be 12 bytes, got {len(nonce_bytes)}")
    if len(data) < 16:
        raise DecryptionError("ciphertext is shorter than the 16-byte GCM tag")
    # The attribute directly, not the property: this runs for every notification.
    cipher = key._cipher if isinstance(key, ApiV3Key) else _cipher(key)
    try:
        return cipher.decrypt(nonce_bytes, data, aad or None)
    except InvalidTag:
        raise DecryptionError(
            "AES-GCM authentication failed: wrong APIv3 key, or tampered ciphertext,"
            " nonce or associated_data"
        ) from None


def aes_gcm_seal(
    key: ApiV3Key | bytes | str,
    *,
    nonce: str | bytes,
    associated_data: str | bytes | None,
    plaintext: bytes,
) -> str:
    """Encrypt ``plaintext`` as WeChat Pay does; returns base64 ``ciphertext || tag``."""
    nonce_bytes = nonce.encode("utf-8") if isinstance(nonce, str) else nonce
    if len(nonce_bytes) != 12:
        raise ValueError("nonce must be 12 bytes")
    aad = associated_data.encode("utf-8") if isinstance(associated_data, str) else associated_data
    sealed = _cipher(key).encrypt(nonce_bytes, plaintext, aad or None)
    return base64.b64encode(sealed).decode("ascii")


def rsa_oaep_encrypt(plaintext: str, public_key: rsa.RSAPublicKey) -> str:
    """Encrypt a sensitive field for WeChat Pay (OAEP SHA-1); empty stays empty (§8)."""
    if plaintext == "":
        return ""
    return base64.b64encode(public_key.encrypt(plaintext.encode("utf-8"), _OAEP)).decode("ascii")


def rsa_oaep_decrypt(ciphertext: str, private_key: rsa.RSAPrivateKey) -> str:
    """Decrypt a sensitive field WeChat Pay encrypted with the merchant's public key."""
    if ciphertext == "":
        return ""
    try:
        raw = base64.b64decode(ciphertext, validate=True)
        return private_key.decrypt(raw, _OAEP).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError("RSA-OAEP decryption failed (wrong key or corrupt data)") from exc
