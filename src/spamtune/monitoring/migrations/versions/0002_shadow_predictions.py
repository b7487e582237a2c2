"""Shadow predictions: a second model's decision on a request, linked to the answer the client got.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("shadow_of", sa.String(32), nullable=True))
        batch.create_index("ix_predictions_shadow_of", ["shadow_of"])


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_shadow_of")
        batch.drop_column("shadow_of")
