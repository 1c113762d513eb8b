"""Each staged batch in an UNLOGGED table of its own, listed in ohlcv_staging_batches.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Staging into the one shared ``ohlcv_staging`` table maintained its load-key index on every row,
and each merge found its batch through that index: staging alone cost 1.4 times a raw COPY of the
same rows (docs/benchmarks.md, measurement 6). A batch now gets a bare heap of its own, created in
the transaction that fills it (``COPY ... FREEZE``) and read whole by its merge; the registry says
which tables hold which batches and how many bars each held. Rows still staged in the shared table
move to tables of their own, so a failed run's batches can still be merged by a cleared re-run;
the downgrade moves them back.
"""

from __future__ import annotations

from alembic import op

from tickstock import schema
from tickstock.sqlfiles import read_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema.run_sql(op.get_context(), read_sql("ddl/staging_batches.sql"))


def downgrade() -> None:
    context = op.get_context()
    schema.run_sql(context, schema.create_table_ddl("ohlcv_staging", read_sql("ddl/staging.sql")))
    schema.run_sql(context, read_sql("ddl/staging_batches_downgrade.sql"))
