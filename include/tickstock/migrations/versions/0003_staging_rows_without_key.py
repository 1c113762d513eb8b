"""Staged rows without a per-row load key or a start for period bars.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The bulk upsert's staging COPY sent eleven columns per bar: the load key (the same string on every
row of a batch) and both ``bar_start`` and ``period``. The key now comes from the transaction's
``tickstock.load_key`` setting as the column default, and a day/week/month bar sends only its
``period``, so a staged row is the nine columns a raw COPY into the OHLCV table would send
(docs/benchmarks.md, measurement 1). Table definition only: no staged row changes.
"""

from __future__ import annotations

from alembic import op

from tickstock import schema
from tickstock.sqlfiles import read_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema.run_sql(op.get_context(), read_sql("ddl/staging_rows_without_key.sql"))


def downgrade() -> None:
    schema.run_sql(op.get_context(), read_sql("ddl/staging_rows_with_key.sql"))
