"""Hooks: MassiveHook (Massive market-data REST API on top of the http provider)."""
