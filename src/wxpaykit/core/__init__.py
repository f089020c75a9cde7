"""The sans-I/O protocol core: bytes and values in, bytes and values out.

Nothing in this package opens a socket, reads the clock or reads a file on its own:
time, randomness and key material are passed in by the caller.
"""

from __future__ import annotations
