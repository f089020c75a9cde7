"""The ``wxpaykit`` command line; every subcommand calls library code."""

from __future__ import annotations
