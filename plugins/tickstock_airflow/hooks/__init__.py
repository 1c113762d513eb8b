"""Hooks: MassiveHook (Massive market-data REST API on top of the http provider).

The names DAG files and the operator's module need at import time live here, not in
``hooks.massive``: importing that module loads the http provider's HttpHook and with it aiohttp
(about a second of CPU), which every DAG parse and every task start would pay for a string.
"""

MASSIVE_CONN_ID = "massive_default"
MASSIVE_POOL = "massive_api"
