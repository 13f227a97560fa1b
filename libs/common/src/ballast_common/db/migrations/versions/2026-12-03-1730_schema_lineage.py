"""schema lineage: the revisions each release migrated with (additive: a new table only)

Revision ID: 0005_schema_lineage
Revises: 0004_job_schedules
Create Date: 2026-12-03 17:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ballast_common.models.base

revision: str = "0005_schema_lineage"
down_revision: str | None = "0004_job_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schema_lineage",
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column("down_revision", sa.String(length=400), nullable=True),
        sa.Column("contract", sa.Boolean(), nullable=False),
        sa.Column(
            "recorded_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_schema_lineage")),
    )


def downgrade() -> None:
    op.drop_table("schema_lineage")
