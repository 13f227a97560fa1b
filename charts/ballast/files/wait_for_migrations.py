"""wait-for-migrations: block until the database schema is one this image may run on.

Runs as an init container (`python -c "$(this file)"`) in every pod that opens the database.
Ready means: at this image's head, or at a newer release's revision that descends from it by
expand-only migrations (blue-green: the previous release keeps running on the next release's
schema). `ballast db migrate` records each release's revisions in schema_lineage, which is how
this image places a revision it has never heard of. An empty or older schema means the migration
Job has not finished: wait, and fail after the timeout so the pod restarts with a clear log.
A revision that is not a known successor of this image's head, or a newer schema that was
contracted, fails at once: waiting cannot fix it, and running on it could corrupt data.
"""

import sys
import time

from ballast_common.config import load_config
from ballast_common.db.engine import DB
from ballast_common.db.migrate import SchemaStatus, schema_status


def check(db: DB) -> SchemaStatus | None:
    """The schema's status, or None while the database cannot be reached."""
    try:
        return schema_status(db)
    except Exception as exc:  # the database is not up yet: keep waiting
        sys.stdout.write(
            f"wait-for-migrations: database unreachable: {type(exc).__name__}\n"
        )
        return None


def main(timeout: float, interval: float) -> int:
    config = load_config()
    db = DB.from_config(
        config.database, application_name=f"{config.env.value}.wait-for-migrations"
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            status = check(db)
            if status is not None and status.runnable:
                sys.stdout.write(
                    f"wait-for-migrations: schema ready ({status.detail})\n"
                )
                return 0
            if status is not None and status.final:
                sys.stdout.write(
                    f"wait-for-migrations: refusing to start: {status.detail}\n"
                )
                return 1
            state = "unreachable" if status is None else status.state
            if time.monotonic() > deadline:
                sys.stdout.write(
                    f"wait-for-migrations: gave up after {timeout:.0f}s ({state})\n"
                )
                return 1
            if status is not None:
                sys.stdout.write(
                    f"wait-for-migrations: schema behind this image ({status.detail}); "
                    "waiting for the migration Job\n"
                )
            time.sleep(interval)
    finally:
        db.dispose()


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 600.0, 2.0))
