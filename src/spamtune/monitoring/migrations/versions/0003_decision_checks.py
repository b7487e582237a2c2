"""Every decision's per-check verdicts (the decision pipeline: check, label, score, reason, evidence).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("checks", sa.JSON, nullable=True))  # NULL: recorded before checks existed


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("checks")
