"""Offline simulator of the Massive (formerly Polygon.io) REST API: dev/test tooling only.

It serves Custom Bars, ticker details and grouped daily from deterministic simulated data, with
fault injection, so the loader, its tests, the demo and the benchmarks run without network. DAGs
never import it, and it never imports the ``tickstock`` package: it is an independent oracle the
loader is tested against. See README.md in this folder for the knobs and where it differs from
the real API.
"""

from __future__ import annotations

DEFAULT_API_KEY = "sim-key"
READY_PREFIX = "massive_sim ready "
