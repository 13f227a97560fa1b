"""wait-for-migrations places a revision it has never heard of, on real PostgreSQL (and SQLite).

`migrate()` records each release's revisions in schema_lineage. An older image (here: the
shipped scripts) meeting a newer release's revision (here: revisions added through
``extra_versions``) runs on it only when the recorded lineage leads back to its own head by
expand-only migrations; a contracted schema, a revision no release recorded and a revision on
another branch fail at once with a clear message. The chart's init container script is run
as a process, as the pod runs it.
"""

from __future__ import annotations

import os
import runpy
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from ballast_common.db import DB, downgrade, head_revision, migrate
from ballast_common.db.migrate import schema_status
from ballast_common.models import SchemaLineage
from ballast_testing.servers import PostgresServer

ROOT = Path(__file__).resolve().parents[3]
WAIT = ROOT / "charts" / "ballast" / "files" / "wait_for_migrations.py"
HEAD = head_revision()

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None
contract = {contract}


def upgrade() -> None:
    op.create_table("{rev}_t", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("{rev}_t")
"""


@pytest.fixture
def pg(postgres_server: PostgresServer) -> Iterator[tuple[DB, str]]:
    """A database migrated to this release's head, and its URL."""
    name = f"ballast_lineage_{secrets.token_hex(5)}"
    url = postgres_server.create_database(name)
    db = DB(url)
    migrate(db=db)
    try:
        yield db, url
    finally:
        db.dispose()
        postgres_server.drop_database(name)


def _newer_release(tmp_path: Path, *revs: tuple[str, bool]) -> Path:
    """A versions directory with revisions after this release's head (name, contract)."""
    versions = tmp_path / "newer_versions"
    versions.mkdir()
    down = HEAD
    for rev, contract in revs:
        (versions / f"{rev}.py").write_text(
            REVISION.format(rev=rev, down=down, contract=contract)
        )
        down = rev
    return versions


def _wait_process(url: str, timeout: float = 60) -> tuple[int, str, float]:
    """Run the init container's script as the pod does; (exit code, output, seconds)."""
    inherited = os.environ.items()  # noqa: TID251 - the child's PATH, HOME, ...
    env = {k: v for k, v in inherited if not k.startswith("BALLAST_")}
    env |= {"BALLAST_ENV": "dev", "BALLAST_DATABASE__URL": url}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", WAIT.read_text(), str(timeout)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=timeout + 60,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


@pytest.fixture
def wait(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[str], tuple[int, str, float]]:
    """The script's main() in this process (its start-up costs seconds on a busy machine)."""
    main = runpy.run_path(str(WAIT), run_name="wait_for_migrations")["main"]

    def run(url: str) -> tuple[int, str, float]:
        monkeypatch.setenv("BALLAST_ENV", "dev")
        monkeypatch.setenv("BALLAST_DATABASE__URL", url)
        start = time.monotonic()
        code = main(60.0, 0.05)
        return code, capsys.readouterr().out, time.monotonic() - start

    return run


def _set_revision(db: DB, revision: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
        )


def test_migrate_records_every_revision_once(pg: tuple[DB, str]) -> None:
    db, _ = pg
    migrate(db=db)  # again: nothing new, nothing twice
    with db.engine.connect() as conn:
        rows = {
            r.revision: (r.down_revision, r.contract)
            for r in conn.execute(select(SchemaLineage.__table__))
        }
    assert HEAD in rows
    assert rows["0001_initial"] == (None, False)
    assert rows["0002_jobs_datasets"] == ("0001_initial", False)
    # The chain from the head leads back to the root.
    rev: str | None = HEAD
    chain = 0
    while rev is not None:
        rev = rows[rev][0]
        chain += 1
    assert chain == len(rows)


def test_the_image_runs_on_its_own_head(
    pg: tuple[DB, str], wait: Callable[[str], tuple[int, str, float]]
) -> None:
    _, url = pg
    code, out, _ = wait(url)
    assert code == 0, out
    assert f"schema ready (at this release's head {HEAD})" in out


def test_a_newer_expand_only_release_is_a_known_successor(
    pg: tuple[DB, str], tmp_path: Path, wait: Callable[[str], tuple[int, str, float]]
) -> None:
    db, url = pg
    newer = _newer_release(tmp_path, ("0100_expand", False), ("0101_expand", False))
    assert migrate(db=db, extra_versions=newer) == "0101_expand"
    code, out, _ = wait(url)
    assert code == 0, out
    assert "a newer release's revision that follows this release's head" in out
    assert "(2 newer)" in out


def test_a_contracted_newer_schema_is_refused_at_once(
    pg: tuple[DB, str], tmp_path: Path
) -> None:
    db, url = pg
    newer = _newer_release(tmp_path, ("0100_expand", False), ("0101_contract", True))
    migrate(db=db, extra_versions=newer)
    code, out, took = _wait_process(url, timeout=60)
    assert code == 1, out
    assert "refusing to start" in out
    assert "contracted the schema" in out
    assert "0101_contract" in out
    assert took < 50  # not after the 60 s timeout: waiting cannot fix it


def test_a_revision_no_release_recorded_is_refused_at_once(
    pg: tuple[DB, str], wait: Callable[[str], tuple[int, str, float]]
) -> None:
    db, url = pg
    _set_revision(db, "feedface0001")
    code, out, took = wait(url)
    assert code == 1, out
    assert "refusing to start" in out
    assert "feedface0001, which this release" in out
    assert "not a known successor" in out
    assert took < 10


def test_a_revision_on_another_branch_is_refused(
    pg: tuple[DB, str], wait: Callable[[str], tuple[int, str, float]]
) -> None:
    # Recorded, but it grew from an older revision, not from this release's head.
    db, url = pg
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO schema_lineage (revision, down_revision, contract, recorded_at)"
                " VALUES ('side_0001', '0001_initial', false, now())"
            )
        )
    _set_revision(db, "side_0001")
    code, out, _ = wait(url)
    assert code == 1, out
    assert "does not descend from this release's head" in out


def test_an_older_schema_is_behind_not_refused(pg: tuple[DB, str]) -> None:
    db, _ = pg
    downgrade("0002_jobs_datasets", db=db)
    status = schema_status(db)
    assert (status.state, status.final, status.runnable) == ("behind", False, False)
    migrate(db=db)
    assert schema_status(db).state == "ready"


def test_lineage_on_sqlite(tmp_path: Path) -> None:
    db = DB(f"sqlite:///{tmp_path}/lineage.db")
    try:
        newer = _newer_release(tmp_path, ("0100_expand", False))
        migrate(db=db, extra_versions=newer)
        status = schema_status(db)
        assert status.state == "ready"
        assert status.current == "0100_expand"
        assert status.head == HEAD
    finally:
        db.dispose()
