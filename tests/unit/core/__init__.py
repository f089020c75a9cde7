"""Tests of the sans-I/O protocol core, one file per module of ``wxpaykit.core``."""

from __future__ import annotations
