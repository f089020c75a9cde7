"""Tests of the notification doctor (library call and CLI)."""

from __future__ import annotations
