"""Split-aware history: the split watermark and the adjustment basis of stored series.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

``split_watermark`` (one row) is the last split execution date every stored adjusted series is
known to reflect; nightly_refresh asks for splits after it and advances it only when a run
succeeded. ``adjustment_basis`` records per symbol and OHLCV table whether the stored bars are
split-adjusted, so a load with the other ``adjusted`` flag is rejected instead of mixing them.
Both are new tables: nothing existing changes, and the downgrade drops exactly them.
"""

from __future__ import annotations

from alembic import op

from tickstock import schema
from tickstock.sqlfiles import read_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema.run_sql(op.get_context(), read_sql("ddl/splits.sql"))


def downgrade() -> None:
    schema.run_sql(op.get_context(), read_sql("ddl/splits_downgrade.sql"))
