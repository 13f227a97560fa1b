"""project members and the project of a job (additive: a new table, a nullable column)

Projects are shared with users as viewer or editor (`project_members`); a job records
the project it works on (`jobs.project_id`), so who may see and change it follows the
project.

Revision ID: 0007_project_members
Revises: 0006_user_identities
Create Date: 2026-12-03 16:50:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ballast_common.models.base

revision: str = "0007_project_members"
down_revision: str | None = "0006_user_identities"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_members_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_project_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "project_id", "user_id", name=op.f("pk_project_members")
        ),
    )
    with op.batch_alter_table("project_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_project_members_user_id"), ["user_id"], unique=False
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("project_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_jobs_project_id"), ["project_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_project_id_projects"),
            "projects",
            ["project_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_jobs_project_id_projects"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_jobs_project_id"))
        batch_op.drop_column("project_id")

    with op.batch_alter_table("project_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_members_user_id"))

    op.drop_table("project_members")
