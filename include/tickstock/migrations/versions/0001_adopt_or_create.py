"""Create the loader's tables, or adopt the design document's existing ones.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

An empty database gets symbols, ohlcv_staging and the four OHLCV tables. Existing tables (the
design document's ``symbols`` and ``ohlcv_*``, in whatever realistic variant: surrogate ids,
UNIQUE instead of a primary key, VARCHAR / NUMERIC(p,s) / BIGINT / timestamp without time zone)
keep their rows and types: missing columns are added nullable or defaulted, the upsert key's
unique index is added when missing, and an unusable table (a type that cannot hold what the API
sends, duplicate keys) stops the upgrade with a message naming it, changing nothing.
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
    # Which columns 0001 added depends on the database it met; the README's "Using an existing
    # TickStock database" gives the SQL that removes them. Refusing beats dropping user data.
    raise NotImplementedError(
        "revision 0001 has no automatic downgrade: see README, 'Using an existing TickStock database'"
    )
