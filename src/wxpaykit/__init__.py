"""wxpaykit: WeChat Pay SDK, notification gateway and local simulator."""

from __future__ import annotations

__version__ = "0.1.0"
