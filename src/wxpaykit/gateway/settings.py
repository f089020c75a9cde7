"""Gateway configuration: one TOML file, overridden by ``WXPAYKIT_...`` environment variables.

:meth:`GatewaySettings.from_env` is the only place that reads the environment; the
loader itself takes a mapping, so tests pass their own. Key material is loaded (and
checked) when the settings are built, so a wrong path fails at start-up, naming the file.

The ``[dispatch]`` table (``[dispatch.worker]``, ``[[dispatch.sinks]]``) is the event
dispatcher's own (see :mod:`wxpaykit.dispatch.config`); it is validated here too, so
``wxpaykit serve`` can run the worker in-process (``[gateway] embedded_worker``).

Secrets (APIv3 and APIv2 keys, the API bearer token, the merchant private key) come
from files or environment variables, never from the TOML text itself, and are held in
``repr=False`` fields: printing the settings cannot leak them.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wxpaykit.core.crypto import ApiV3Key
from wxpaykit.core.keys import (
    MerchantCredentials,
    WeChatPayPublicKey,
    load_platform_certificate,
    read_key_file,
)
from wxpaykit.core.verification import DEFAULT_TOLERANCE_SECONDS, TrustedKeys
from wxpaykit.dispatch.config import DispatchSettings, parse_dispatch_settings
from wxpaykit.errors import ConfigurationError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "GatewaySettings",
    "MerchantSettings",
    "PlatformKeyMode",
    "load_settings",
]

ENV_PREFIX = "WXPAYKIT_"
DEFAULT_CONFIG_PATH = "wxpaykit.toml"
#: Real notifications are about 1 KiB; 64 KiB leaves room for APIv2 coupon lists.
DEFAULT_MAX_BODY_BYTES = 64 * 1024

PlatformKeyMode = Literal["files", "auto"]

# [gateway] keys an environment variable WXPAYKIT_<KEY> may override, with their type.
_SCALARS: dict[str, type] = {
    "database_url": str,
    "redis_url": str,
    "redis_key_prefix": str,
    "host": str,
    "port": int,
    "public_url": str,
    "wechatpay_base_url": str,
    "max_body_bytes": int,
    "tolerance_seconds": int,
    "raw_retention_days": int,
    "log_level": str,
    "embedded_worker": bool,
}
#: [gateway] keys naming secret files (their values come from the file or the environment).
_SECRET_FILES = {"api_token_file", "admin_token_file"}
#: The dispatch admin router refuses shorter bearer tokens.
MIN_ADMIN_TOKEN_LENGTH = 16
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True, kw_only=True)
class MerchantSettings:
    """One merchant the gateway receives notifications for.

    ``trusted_keys`` holds the platform certificates and/or WeChat Pay public key the
    notifications are verified with; in ``auto`` mode it starts empty and the client's
    key manager fills it at start-up. ``credentials`` (merchant private key and serial)
    are needed for the orders API and for ``auto`` mode only.
    """

    mchid: str
    appids: frozenset[str]
    apiv3_key: ApiV3Key = field(repr=False)
    apiv2_key: str | None = field(default=None, repr=False)
    trusted_keys: TrustedKeys = field(default_factory=TrustedKeys, repr=False)
    platform_keys: PlatformKeyMode = "files"
    credentials: MerchantCredentials | None = field(default=None, repr=False)
    notify_url: str | None = None

    def allows_appid(self, appid: str | None) -> bool:
        """True when ``appid`` is one of the merchant's apps (absent appids are not checked)."""
        return appid is None or not self.appids or appid in self.appids


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewaySettings:
    """Everything ``create_app`` needs; build with :func:`load_settings` or directly in tests."""

    database_url: str = "sqlite+aiosqlite:///wxpaykit.db"
    redis_url: str | None = None
    #: Prefix of the gateway's Redis keys; None: one derived from ``database_url``.
    redis_key_prefix: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    #: Where WeChat Pay reaches this gateway, used to build each merchant's notify_url.
    public_url: str | None = None
    wechatpay_base_url: str = "https://api.mch.weixin.qq.com"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    raw_retention_days: int = 30
    log_level: str = "info"
    api_token: str | None = field(default=None, repr=False)
    merchants: tuple[MerchantSettings, ...] = ()
    #: Sinks and worker tuning of the event dispatcher (``[dispatch]``).
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    #: Run the dispatch worker inside the gateway's process; None: when sinks are configured.
    embedded_worker: bool | None = None
    #: Bearer token of the dispatch admin API at ``/admin`` (not mounted without one).
    admin_token: str | None = field(default=None, repr=False)

    @property
    def key_prefix(self) -> str:
        """The prefix of the nonce keys and committed markers in Redis.

        By default it names the ledger's database (a digest of ``database_url``): two
        deployments sharing one Redis database must not share committed markers, or
        one would answer a copy as a duplicate of a notification only the other has
        recorded, and never record it itself.
        """
        if self.redis_key_prefix:
            return self.redis_key_prefix
        tag = hashlib.sha256(self.database_url.encode()).hexdigest()[:12]
        return f"wxpaykit:{tag}:"

    @property
    def runs_embedded_worker(self) -> bool:
        """Whether ``wxpaykit serve`` delivers events in-process."""
        if self.embedded_worker is None:
            return bool(self.dispatch.sinks)
        return self.embedded_worker

    def merchant(self, mchid: str) -> MerchantSettings | None:
        """The merchant with this mchid, or None."""
        for merchant in self.merchants:
            if merchant.mchid == mchid:
                return merchant
        return None

    def notify_url(self, merchant: MerchantSettings, api_version: str = "v3") -> str:
        """The notify_url to send with prepay calls for ``merchant``."""
        if merchant.notify_url:
            return merchant.notify_url
        if not self.public_url:
            raise ConfigurationError("set gateway.public_url (or the merchant's notify_url)")
        return f"{self.public_url.rstrip('/')}/notify/{api_version}/{merchant.mchid}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        """Load ``$WXPAYKIT_CONFIG`` (default ``wxpaykit.toml``) with environment overrides.

        This is the only place the process environment is read.
        """
        import os

        env = dict(os.environ if environ is None else environ)
        path = env.get(ENV_PREFIX + "CONFIG", DEFAULT_CONFIG_PATH)
        return load_settings(path, env=env)


def load_settings(path: str | Path, *, env: Mapping[str, str] | None = None) -> GatewaySettings:
    """Read a TOML file and apply ``WXPAYKIT_...`` overrides from ``env``.

    Relative key-file paths are resolved against the TOML file's folder.
    """
    config_path = Path(path)
    try:
        document = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{config_path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{config_path}: cannot read configuration ({exc})") from exc
    return settings_from_document(document, base_dir=config_path.parent, env=env or {})


def settings_from_document(
    document: Mapping[str, Any], *, base_dir: Path, env: Mapping[str, str]
) -> GatewaySettings:
    """Build settings from a parsed TOML document (see :func:`load_settings`)."""
    gateway = dict(_table(document, "gateway"))
    for key, kind in _SCALARS.items():
        override = env.get(ENV_PREFIX + key.upper())
        if override is not None:
            gateway[key] = _convert(key, override, kind)
    unknown = set(gateway) - set(_SCALARS) - _SECRET_FILES
    if unknown:
        raise ConfigurationError(f"unknown [gateway] setting(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {key: gateway[key] for key in _SCALARS if key in gateway}
    if not isinstance(values.get("embedded_worker", False), bool):
        raise ConfigurationError("[gateway] embedded_worker must be true or false")
    if values.get("redis_url") == "":
        values["redis_url"] = None
    values["api_token"] = _secret(
        env, "API_TOKEN", gateway.get("api_token_file"), base_dir, required=False
    )
    values["admin_token"] = _secret(
        env, "ADMIN_TOKEN", gateway.get("admin_token_file"), base_dir, required=False
    )
    values["dispatch"] = _dispatch(document, base_dir=base_dir)
    merchants_doc = document.get("merchants", [])
    if not isinstance(merchants_doc, list):
        raise ConfigurationError("[[merchants]] must be an array of tables")
    merchants = tuple(_merchant(entry, base_dir=base_dir, env=env) for entry in merchants_doc)
    mchids = [m.mchid for m in merchants]
    if len(set(mchids)) != len(mchids):
        raise ConfigurationError("a mchid appears twice in [[merchants]]")
    settings = GatewaySettings(merchants=merchants, **values)
    return _checked(settings)


def _checked(settings: GatewaySettings) -> GatewaySettings:
    if settings.max_body_bytes < 1024:
        raise ConfigurationError("max_body_bytes must be at least 1024")
    if not 1 <= settings.tolerance_seconds <= 3600:
        raise ConfigurationError("tolerance_seconds must be between 1 and 3600")
    if settings.raw_retention_days < 0:
        raise ConfigurationError("raw_retention_days must be 0 (keep forever) or more")
    if settings.admin_token is not None and len(settings.admin_token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"the admin token must have at least {MIN_ADMIN_TOKEN_LENGTH} characters"
        )
    if settings.embedded_worker and not settings.dispatch.sinks:
        raise ConfigurationError("embedded_worker = true needs at least one [[dispatch.sinks]]")
    return settings


def _dispatch(document: Mapping[str, Any], *, base_dir: Path) -> DispatchSettings:
    """``[dispatch]``, with relative ``secret_files`` resolved against the config's folder."""
    return parse_dispatch_settings(_table(document, "dispatch"), base_dir=base_dir)


def _table(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"[{name}] must be a table")
    return value


def _convert(key: str, raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ConfigurationError(f"{ENV_PREFIX}{key.upper()} must be true or false")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{ENV_PREFIX}{key.upper()} must be an integer") from None
    return raw


def _secret(
    env: Mapping[str, str],
    env_name: str,
    file_value: object,
    base_dir: Path,
    *,
    required: bool,
    what: str = "",
) -> str | None:
    from_env = env.get(ENV_PREFIX + env_name)
    if from_env:
        return from_env.strip()
    if file_value:
        if not isinstance(file_value, str):
            raise ConfigurationError(f"{what or env_name.lower()} file must be a path string")
        text = read_key_file(_resolve(file_value, base_dir)).decode("utf-8", "replace").strip()
        if not text:
            raise ConfigurationError(f"{file_value}: the secret file is empty")
        return text
    if required:
        raise ConfigurationError(
            f"{what or env_name.lower()}: set {ENV_PREFIX}{env_name} or the *_file setting"
        )
    return None


def _resolve(path: str, base_dir: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base_dir / candidate


def _merchant(entry: object, *, base_dir: Path, env: Mapping[str, str]) -> MerchantSettings:
    if not isinstance(entry, Mapping):
        raise ConfigurationError("each [[merchants]] entry must be a table")
    mchid = str(entry.get("mchid", "")).strip()
    if not mchid.isdigit():
        raise ConfigurationError(f"merchant mchid {mchid!r} must be digits")
    if any(key in entry for key in ("apiv3_key", "apiv2_key", "api_token")):
        raise ConfigurationError(
            f"merchant {mchid}: keys never go in the TOML text; use *_file or the environment"
        )
    prefix = f"MERCHANT_{mchid}_"
    apiv3 = _secret(
        env,
        prefix + "APIV3_KEY",
        entry.get("apiv3_key_file"),
        base_dir,
        required=True,
        what=f"merchant {mchid} APIv3 key",
    )
    assert apiv3 is not None  # noqa: S101 - required=True guarantees it
    apiv2 = _secret(
        env, prefix + "APIV2_KEY", entry.get("apiv2_key_file"), base_dir, required=False
    )
    appids = entry.get("appids", [])
    if not isinstance(appids, list) or not all(isinstance(a, str) for a in appids):
        raise ConfigurationError(f"merchant {mchid}: appids must be a list of strings")
    mode = entry.get("platform_keys", "files")
    if mode not in ("files", "auto"):
        raise ConfigurationError(f"merchant {mchid}: platform_keys must be 'files' or 'auto'")
    credentials = _credentials(mchid, entry, base_dir, env)
    trusted = _trusted_keys(mchid, entry, base_dir) if mode == "files" else TrustedKeys()
    if mode == "auto" and credentials is None:
        raise ConfigurationError(f"merchant {mchid}: platform_keys = 'auto' needs private_key_file")
    if mode == "files" and not trusted.certificates and not trusted.public_keys:
        raise ConfigurationError(
            f"merchant {mchid}: configure platform_public_key_file + platform_public_key_id,"
            " platform_certificate_files, or platform_keys = 'auto'"
        )
    notify_url = entry.get("notify_url")
    return MerchantSettings(
        mchid=mchid,
        appids=frozenset(appids),
        apiv3_key=ApiV3Key(apiv3),
        apiv2_key=apiv2,
        trusted_keys=trusted,
        platform_keys=mode,
        credentials=credentials,
        notify_url=str(notify_url) if notify_url else None,
    )


def _credentials(
    mchid: str, entry: Mapping[str, Any], base_dir: Path, env: Mapping[str, str]
) -> MerchantCredentials | None:
    key_file = env.get(f"{ENV_PREFIX}MERCHANT_{mchid}_PRIVATE_KEY_FILE") or entry.get(
        "private_key_file"
    )
    if not key_file:
        return None
    certificate_file = entry.get("certificate_file")
    return MerchantCredentials.from_files(
        mchid=mchid,
        private_key_path=_resolve(str(key_file), base_dir),
        certificate_path=_resolve(str(certificate_file), base_dir) if certificate_file else None,
        serial_no=entry.get("certificate_serial"),
    )


def _trusted_keys(mchid: str, entry: Mapping[str, Any], base_dir: Path) -> TrustedKeys:
    public_keys: list[WeChatPayPublicKey] = []
    key_file = entry.get("platform_public_key_file")
    if key_file:
        key_id = entry.get("platform_public_key_id")
        if not key_id:
            raise ConfigurationError(f"merchant {mchid}: platform_public_key_id is required")
        path = _resolve(str(key_file), base_dir)
        public_keys.append(
            WeChatPayPublicKey.load(read_key_file(path), str(key_id), source=str(path))
        )
    certificates = []
    for cert_file in entry.get("platform_certificate_files", []):
        path = _resolve(str(cert_file), base_dir)
        certificates.append(load_platform_certificate(read_key_file(path), source=str(path)))
    return TrustedKeys(certificates=certificates, public_keys=public_keys)
