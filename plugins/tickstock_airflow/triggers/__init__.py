"""Triggers that run in the Airflow triggerer's asyncio loop."""
