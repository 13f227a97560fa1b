"""job schedules: recurring jobs and their handled ticks (additive: new tables only)

Revision ID: 0004_job_schedules
Revises: 0003_webhooks
Create Date: 2026-12-03 16:50:20.923255+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ballast_common.models.base

revision: str = "0004_job_schedules"
down_revision: str | None = "0003_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_schedules",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column(
            "kwargs",
            sa.JSON().with_variant(
                postgresql.JSONB(astext_type=sa.Text()), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("cron", sa.String(length=100), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "next_run_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "last_run_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("last_job_id", sa.Uuid(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("timeout", sa.Integer(), nullable=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_job_schedules_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["last_job_id"],
            ["jobs.id"],
            name=op.f("fk_job_schedules_last_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_job_schedules_project_id_projects"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_job_schedules_name")),
    )
    with op.batch_alter_table("job_schedules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_schedules_created_by"), ["created_by"], unique=False
        )
        batch_op.create_index(
            "ix_job_schedules_enabled_next_run_at",
            ["enabled", "next_run_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_job_schedules_project_id"), ["project_id"], unique=False
        )

    op.create_table(
        "job_schedule_runs",
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column(
            "tick",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("missed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            ballast_common.models.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_schedule_runs_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["job_schedules.id"],
            name=op.f("fk_job_schedule_runs_schedule_id_job_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "schedule_id", "tick", name=op.f("pk_job_schedule_runs")
        ),
    )
    with op.batch_alter_table("job_schedule_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_schedule_runs_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("job_schedule_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_schedule_runs_created_at"))

    op.drop_table("job_schedule_runs")
    with op.batch_alter_table("job_schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_schedules_project_id"))
        batch_op.drop_index("ix_job_schedules_enabled_next_run_at")
        batch_op.drop_index(batch_op.f("ix_job_schedules_created_by"))

    op.drop_table("job_schedules")
