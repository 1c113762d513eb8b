"""Airflow-facing code of the TickStock loader: hooks, operators, sensors, triggers."""
