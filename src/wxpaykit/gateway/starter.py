"""The commented starter configuration that ``wxpaykit init`` writes."""

from __future__ import annotations

__all__ = ["STARTER_CONFIG"]

STARTER_CONFIG = """\
# wxpaykit gateway configuration.
#
# Every [gateway] setting can be overridden by an environment variable named
# WXPAYKIT_<SETTING> (e.g. WXPAYKIT_DATABASE_URL); WXPAYKIT_CONFIG names this file.
# Secrets never go in this file: give a *_file path (chmod 600) or an environment
# variable (WXPAYKIT_MERCHANT_<MCHID>_APIV3_KEY, ..._APIV2_KEY, WXPAYKIT_API_TOKEN).

[gateway]
# sqlite:///path.db (embedded, WAL), postgresql://user@host/db or mysql://user@host/db
database_url = "sqlite:///wxpaykit.db"
# Optional: replay-guard nonces in Redis (SET NX EX) instead of the database.
# redis_url = "redis://127.0.0.1:6379/0"
# Prefix of the Redis keys; by default one derived from database_url, so deployments
# sharing a Redis database never share nonces or committed markers.
# redis_key_prefix = "wxpaykit:prod:"
host = "127.0.0.1"
port = 8000
# The public HTTPS address WeChat Pay reaches; notify_url = <public_url>/notify/v3/<mchid>
# public_url = "https://pay.example.com"
# The WeChat Pay API (or a local simulator: http://127.0.0.1:8900)
wechatpay_base_url = "https://api.mch.weixin.qq.com"
# Refuse bodies above this many bytes (real notifications are about 1 KiB).
max_body_bytes = 65536
# Accept Wechatpay-Timestamp within this many seconds of our clock.
tolerance_seconds = 300
# Keep raw requests (headers + body as received) for audit this long; each gateway
# process deletes older ones at start and hourly. 0 keeps them forever.
raw_retention_days = 30
log_level = "info"
# Bearer token protecting /api/* (or set WXPAYKIT_API_TOKEN).
# api_token_file = "secrets/api_token"
# Bearer token of the event admin API at /admin (list, show, replay deliveries);
# at least 16 characters (or set WXPAYKIT_ADMIN_TOKEN). Not mounted without one.
# admin_token_file = "secrets/admin_token"
# Deliver events from this process (wxpaykit serve --worker/--no-worker, or
# WXPAYKIT_EMBEDDED_WORKER). Default: yes when [[dispatch.sinks]] are configured;
# set false when you run `wxpaykit worker` processes instead.
# embedded_worker = true

[[merchants]]
mchid = "1900000001"
# Apps whose payments this merchant accepts (an empty list accepts any appid).
appids = ["wx0000000000000000"]
# The 32-character APIv3 key (or WXPAYKIT_MERCHANT_1900000001_APIV3_KEY).
apiv3_key_file = "secrets/apiv3.key"
# The APIv2 key, only for /notify/v2 (or WXPAYKIT_MERCHANT_1900000001_APIV2_KEY).
# apiv2_key_file = "secrets/apiv2.key"

# How notifications are verified, choose one or both (during a migration):
#  - the WeChat Pay public key downloaded from the merchant portal, with its id
platform_public_key_file = "secrets/pub_key.pem"
platform_public_key_id = "PUB_KEY_ID_0000000000000000000000000000000000"
#  - platform certificates you downloaded
# platform_certificate_files = ["secrets/wechatpay_5157F09EFDC096DE15EBE81A47057A72.pem"]
#  - or platform_keys = "auto": download and refresh certificates with the API key
# platform_keys = "auto"

# The merchant API key: needed for the orders API (prepay) and platform_keys = "auto".
# private_key_file = "secrets/apiclient_key.pem"
# certificate_serial = "5157F09EFDC096DE15EBE81A47057A72"
# notify_url = "https://pay.example.com/notify/v3/1900000001"

# Events (payment.succeeded, refund.succeeded, ...) go to your shop through sinks;
# see docs/events.md for the schema, the sink types and how to verify webhooks.
# [dispatch.worker]
# poll_interval_seconds = 0.02   # idle poll; a commit wakes an embedded worker at once
# listen = true                  # PostgreSQL: LISTEN, woken by each commit; false behind
#                                # PgBouncer in transaction mode (polling only)
# batch_size = 200
# delivered_retention_days = 30  # delete delivered history (deliveries, attempts) older
#                                # than this, at start and hourly; default 0: keep all

# A Standard Webhooks endpoint (webhook-id / webhook-timestamp / webhook-signature).
# Make a secret: python -c "from wxpaykit.dispatch.webhooks import generate_webhook_secret as g; print(g().render())"
# [[dispatch.sinks]]
# name = "shop"
# type = "http"
# url = "https://shop.example/hooks/wxpay"
# secret_files = ["secrets/webhook_secret"]   # newest first during a rotation
# timeout_seconds = 5
# event_types = ["payment.*", "refund.*"]
"""
