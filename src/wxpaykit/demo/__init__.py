"""``wxpaykit demo``: the simulator, the gateway and a few hundred chaotic payments.

:func:`wxpaykit.demo.scenario.run_demo` starts the WeChat Pay simulator and the
gateway (SQLite) on loopback ports, creates a merchant and orders through the
gateway's API, pays them with chaos on (duplicates, concurrent twins, probes,
reordering, forgeries), and proves from the database that every order was applied
exactly once.
"""

from __future__ import annotations
