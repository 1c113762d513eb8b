"""Create the loader's tables, or adopt the design document's existing ones.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

An empty database gets symbols, ohlcv_staging and the four OHLCV tables. Existing tables (the
design document's ``symbols`` and ``ohlcv_*``, in whatever realistic variant: surrogate ids,
UNIQUE instead of a primary key, VARCHAR / NUMERIC(p,s) / BIGINT / timestamp without time zone)
keep their rows and types: missing columns are added nullable or defaulted, the upsert key's
unique index is added when missing, and an unusable table (a type that cannot hold what the API
sends, duplicate keys) stops the upgrade with a message naming it, changing nothing. Everything
added is marked with a comment, so the downgrade removes exactly that.
"""

from __future__ import annotations

from alembic import op

from tickstock import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    context = op.get_context()
    for statement in schema.adopt_or_create_statements():
        schema.run_sql(context, statement)


def downgrade() -> None:
    # Only what upgrade() added (each object carries the schema.ADDED_BY_0001 comment): the
    # columns and keys it gave existing tables, and the tables it created with their rows.
    context = op.get_context()
    for statement in schema.revert_0001_statements():
        schema.run_sql(context, statement)
