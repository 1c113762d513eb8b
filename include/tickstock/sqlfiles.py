"""Locate and read the SQL files in ``include/sql``.

SQL lives in files (reviewable, highlighted, usable from ``template_searchpath``); Python only
loads them. Values always travel as bind parameters; identifiers are filled in with
``psycopg.sql`` where a file needs one per timeframe.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


@cache
def read_sql(relative_path: str) -> str:
    """Return the text of ``include/sql/<relative_path>``."""
    path = SQL_DIR / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"SQL file not found: {relative_path} (looked in {SQL_DIR})")
    return path.read_text()
