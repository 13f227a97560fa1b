"""session_handoffs: login hand-off nonces shared by every ui replica (additive: new table)

Revision ID: 0008_session_handoffs
Revises: 0007_project_members
Create Date: 2026-12-03 18:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ballast_common.models.base

revision: str = "0008_session_handoffs"
down_revision: str | None = "0007_project_members"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_handoffs",
        sa.Column("nonce_sha256", sa.String(length=64), nullable=False),
        sa.Column("sealed_token", sa.Text(), nullable=False),
        sa.Column("max_age_s", sa.Integer(), nullable=False),
        sa.Column(
            "expires_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("nonce_sha256", name=op.f("pk_session_handoffs")),
    )
    op.create_index(
        op.f("ix_session_handoffs_expires_at"),
        "session_handoffs",
        ["expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_session_handoffs_expires_at"), table_name="session_handoffs")
    op.drop_table("session_handoffs")
