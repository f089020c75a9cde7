"""Test kit: throwaway keys (:mod:`.keys`) and the simulator as a fixture (:mod:`.simulator`).

Nothing here is for production: keys are generated on the fly and never persisted
unless the caller writes them out. The pytest plugin (:mod:`.pytest_plugin`) is
registered by entry point. Submodules are imported explicitly so that importing this
package stays free of the simulator's dependencies.
"""

from __future__ import annotations
