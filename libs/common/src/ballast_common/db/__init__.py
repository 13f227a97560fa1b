"""Database access: engines, unit of work, repositories, migrations."""

from ballast_common.db.engine import (
    DB,
    get_conn,
    get_db,
    init_db,
    normalize_url,
    reset_db,
)
from ballast_common.db.idempotency import Replay, WriteIdRace, fingerprint
from ballast_common.db.migrate import (
    current_revision,
    downgrade,
    head_revision,
    migrate,
)
from ballast_common.db.repository import (
    Conflict,
    PageResult,
    Repository,
    UpdateResult,
    row_dict,
)
from ballast_common.db.serialize import jsonable
from ballast_common.db.transient import (
    RETRY_AFTER_S,
    is_transient,
    is_unique_violation,
)
from ballast_common.db.uow import (
    UnitOfWork,
    WriteContext,
    bust_after_commit,
    on_commit,
    retry_db_async,
    run_tx,
    run_tx_async,
)

__all__ = [
    "DB",
    "RETRY_AFTER_S",
    "Conflict",
    "PageResult",
    "Replay",
    "Repository",
    "UnitOfWork",
    "UpdateResult",
    "WriteContext",
    "WriteIdRace",
    "bust_after_commit",
    "current_revision",
    "downgrade",
    "fingerprint",
    "get_conn",
    "get_db",
    "head_revision",
    "init_db",
    "is_transient",
    "is_unique_violation",
    "jsonable",
    "migrate",
    "normalize_url",
    "on_commit",
    "reset_db",
    "retry_db_async",
    "row_dict",
    "run_tx",
    "run_tx_async",
]
