"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from alembic import op

from tickstock import schema
from tickstock.sqlfiles import read_sql

revision = "${up_revision}"
down_revision = ${'"%s"' % down_revision if down_revision else None}
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The change as SQL in include/sql/ddl, idempotent where it can be (IF NOT EXISTS); run_sql
    # sends it as is, so `python -m tickstock.schema sql` prints exactly what upgrade runs.
    schema.run_sql(op.get_context(), read_sql("ddl/CHANGE_ME.sql"))


def downgrade() -> None:
    # What upgrade() added, and only that (README: "Changing the schema").
    schema.run_sql(op.get_context(), read_sql("ddl/CHANGE_ME_downgrade.sql"))
