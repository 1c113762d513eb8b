"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Write the change as SQL in include/sql/ddl (idempotent where it can be) and run it with
schema.run_sql, so `python -m tickstock.schema sql` prints exactly what `upgrade` runs.
"""

from __future__ import annotations

from alembic import op

from tickstock import schema

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    context = op.get_context()
    ${upgrades if upgrades else "raise NotImplementedError  # schema.run_sql(context, read_sql('ddl/<file>.sql'))"}


def downgrade() -> None:
    ${downgrades if downgrades else "raise NotImplementedError"}
