"""Migration scripts; each module's ``revision`` is its file name without ``.py``."""

from __future__ import annotations
