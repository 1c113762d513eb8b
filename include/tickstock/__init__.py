"""TickStock historical loader: plain, Airflow-free domain code.

Everything here is importable and testable without Airflow: timeframes and their tables, the
NYSE calendar and load windows, bar parsing and validation, job messages and statuses, and the
SQL that the DAGs run. Airflow-facing code (hooks, operators, triggers) lives in
``plugins/tickstock_airflow``; DAG files in ``dags/`` only wire tasks together.
"""
