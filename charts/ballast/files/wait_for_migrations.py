"""wait-for-migrations: block until the database schema is at or past this image's head.

Runs as an init container (`python -c "$(this file)"`) in every pod that opens the database.
"Past" matters for blue-green: under expand/contract the previous release keeps running
against the next release's schema, so a revision this image does not know is a newer one
and counts as ready. An empty or older schema means the migration Job has not finished:
wait, and fail after BALLAST_WAIT_TIMEOUT seconds so the pod restarts with a clear log.
"""

import sys
import time

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from ballast_common.config import load_config
from ballast_common.db.engine import DB
from ballast_common.db.migrate import alembic_config, current_revision


def schema_state(db: DB, script: ScriptDirectory) -> str:
    """'ready', 'behind' or 'unreachable'."""
    try:
        current = current_revision(db)
    except Exception as exc:  # the database is not up yet: keep waiting
        sys.stdout.write(
            f"wait-for-migrations: database unreachable: {type(exc).__name__}\n"
        )
        return "unreachable"
    head = script.get_current_head()
    if current == head:
        return "ready"
    if current is None:
        return "behind"
    try:
        script.get_revision(current)
    except CommandError:
        return "ready"  # a revision from a newer release (expand/contract)
    return "behind"


def main(timeout: float, interval: float) -> int:
    config = load_config()
    db = DB.from_config(
        config.database, application_name=f"{config.env.value}.wait-for-migrations"
    )
    script = ScriptDirectory.from_config(alembic_config())
    deadline = time.monotonic() + timeout
    try:
        while True:
            state = schema_state(db, script)
            if state == "ready":
                sys.stdout.write("wait-for-migrations: schema ready\n")
                return 0
            if time.monotonic() > deadline:
                sys.stdout.write(
                    f"wait-for-migrations: gave up after {timeout:.0f}s ({state})\n"
                )
                return 1
            if state == "behind":
                sys.stdout.write(
                    "wait-for-migrations: schema behind this image; waiting for the migration Job\n"
                )
            time.sleep(interval)
    finally:
        db.dispose()


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 600.0, 2.0))
