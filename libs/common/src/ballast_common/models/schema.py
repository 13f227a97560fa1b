from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ballast_common.models.base import Model, utcnow


class SchemaLineage(Model):
    """One migration revision a release of Ballast has applied to this database.

    `ballast_common.db.migrate.migrate()` records every revision of its script directory
    (parent and contract flag) after each upgrade. An older release, which has never heard
    of a newer release's revisions, reads this table to tell a newer schema that descends
    from its own head by expand-only steps (it may run) from a contracted or foreign one
    (it must not).
    """

    __tablename__ = "schema_lineage"

    revision: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The parent revision(s), comma-separated (a merge revision has several); None at the root.
    down_revision: Mapped[str | None] = mapped_column(String(400), default=None)
    # The migration removed or tightened what the release before it used (`contract = True`
    # in the migration file): code older than this revision must not run on the schema.
    contract: Mapped[bool] = mapped_column(default=False)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
