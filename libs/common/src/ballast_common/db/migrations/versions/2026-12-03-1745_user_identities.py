"""user_identities: external sign-in identities (OIDC issuer + subject, trusted proxy) of users (additive: a new table only)

Revision ID: 0006_user_identities
Revises: 0005_schema_lineage
Create Date: 2026-12-03 17:45:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ballast_common.models.base

revision: str = "0006_user_identities"
down_revision: str | None = "0005_schema_lineage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_identities",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "last_login_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_identities")),
        sa.UniqueConstraint(
            "issuer", "subject", name=op.f("uq_user_identities_issuer")
        ),
    )
    op.create_index(
        op.f("ix_user_identities_user_id"),
        "user_identities",
        ["user_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_user_identities_user_id"), table_name="user_identities")
    op.drop_table("user_identities")
