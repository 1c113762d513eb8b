"""Airflow-facing code of the TickStock loader: the Massive hook and the bars operator."""
