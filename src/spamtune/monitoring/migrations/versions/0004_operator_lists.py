"""Operator lists (allow / deny entries for senders, domains and patterns) and each decision's sender.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("sender", sa.String(256), nullable=True))  # NULL: not given, or recorded earlier
    op.create_table(
        "list_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("value", sa.String(1000), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_by", sa.String(64), nullable=True),
    )
    # one active entry per (action, kind, value): a partial unique index (SQLite and PostgreSQL both have them)
    active = sa.text("removed_at IS NULL")
    op.create_index("ux_list_entries_active", "list_entries", ["action", "kind", "value"], unique=True,
                    sqlite_where=active, postgresql_where=active)


def downgrade() -> None:
    op.drop_index("ux_list_entries_active", "list_entries")
    op.drop_table("list_entries")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("sender")
