"""Test kit: throwaway keys and certificates, and (later) an in-process simulator.

Nothing here is for production: keys are generated on the fly and never persisted
unless the caller writes them out.
"""

from __future__ import annotations
