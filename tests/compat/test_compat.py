"""The previous release's code runs against the newest schema (expand/contract).

The mechanism is proven on synthetic schema pairs (an "old release" module with its own
models, and migrations that expand or break the contract); the git path runs the released
0.1.0 (tests/compat/releases.txt, or a tag v0.1.0) against the schema at head.
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ballast_common.db import DB
from ballast_common.db.migrate import head_revision, migrate
from ballast_testing.servers import PostgresServer
from tests.compat.compat import (
    extract,
    git,
    previous_release,
    recorded_releases,
    run_old_code,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"ballast_compat_{secrets.token_hex(4)}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


def _sqlalchemy(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


# --- the synthetic pair -------------------------------------------------------------------

OLD_MODELS = '''
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

metadata = MetaData()
widgets = Table(
    "widgets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
    Column("size", Integer, nullable=True),
)


def exercise(engine):
    """The old release's write and read path."""
    with engine.begin() as conn:
        conn.execute(insert(widgets).values(name="sprocket", size=3))
        assert conn.execute(select(widgets.c.name)).scalars().all()
'''
V1 = "CREATE TABLE widgets (id serial PRIMARY KEY, name varchar(50) NOT NULL, size integer)"
# Next releases' migrations: (id, SQL, compatible with the old code?)
V2 = [
    ("add-nullable-column", "ALTER TABLE widgets ADD COLUMN colour text", True),
    (
        "add-defaulted-column",
        "ALTER TABLE widgets ADD COLUMN weight integer NOT NULL DEFAULT 0",
        True,
    ),
    ("add-table", "CREATE TABLE gadgets (id serial PRIMARY KEY, label text)", True),
    ("drop-column", "ALTER TABLE widgets DROP COLUMN size", False),
    ("rename-column", "ALTER TABLE widgets RENAME COLUMN name TO title", False),
    (
        "add-required-column",
        # backfilled through a temporary default, which is then dropped
        "ALTER TABLE widgets ADD COLUMN owner integer NOT NULL DEFAULT 1;"
        " ALTER TABLE widgets ALTER COLUMN owner DROP DEFAULT",
        False,
    ),
    ("drop-table", "DROP TABLE widgets", False),
]


@pytest.fixture(scope="module")
def old_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("old-release")
    (src / "old_widgets.py").write_text(textwrap.dedent(OLD_MODELS))
    return src


@pytest.mark.parametrize(("change", "ddl", "compatible"), V2, ids=[v[0] for v in V2])
def test_mechanism_on_a_synthetic_schema_pair(
    database: str, old_release: Path, change: str, ddl: str, compatible: bool
) -> None:
    engine = create_engine(_sqlalchemy(database))
    with engine.begin() as conn:
        conn.execute(text(V1))
        conn.execute(text("INSERT INTO widgets (name, size) VALUES ('cog', 1)"))
        conn.execute(text(ddl))
    engine.dispose()
    proc = run_old_code(
        old_release,
        _sqlalchemy(database),
        "old_widgets:metadata",
        "old_widgets:exercise",
    )
    out = proc.stdout + proc.stderr
    if compatible:
        assert proc.returncode == 0, f"{change}: {out}"
        assert "checked 1 tables: 0 problems" in proc.stdout
    else:
        assert proc.returncode == 1, f"{change} must be refused: {out}"
        assert "problem: " in proc.stdout, out


def test_the_old_code_really_writes(database: str, old_release: Path) -> None:
    """The synthetic release's INSERT reaches the database (the check is not just reflection)."""
    engine = create_engine(_sqlalchemy(database))
    with engine.begin() as conn:
        conn.execute(text(V1))
        conn.execute(text(V2[0][1]))
    proc = run_old_code(
        old_release,
        _sqlalchemy(database),
        "old_widgets:metadata",
        "old_widgets:exercise",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, size, colour FROM widgets")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("sprocket", 3, None)]


# --- the real releases ----------------------------------------------------------------------


def _commit(repo: Path, message: str, **files: str) -> str:
    for name, content in files.items():
        (repo / name).write_text(content)
    git("add", *files, root=repo)
    git(
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        message,
        root=repo,
    )
    return git("rev-parse", "HEAD", root=repo)


def test_previous_release_is_found_in_the_history(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", root=repo)
    first = _commit(repo, "first", VERSION="0.1.0\n", a="1")
    # One version only, nothing released: no previous release.
    assert previous_release(root=repo, releases={}) is None
    last_of_0_1 = _commit(repo, "fix", a="2")
    _commit(repo, "bump", VERSION="0.2.0\n")
    _commit(repo, "work", a="3")
    # Without tags or records: the last commit before VERSION became 0.2.0.
    assert previous_release(root=repo, releases={}) == last_of_0_1
    # A recorded release wins over the history, the newest one at most the version.
    records = {"0.1.0": first, "0.3.0": last_of_0_1}
    assert previous_release(root=repo, releases=records) == first
    # A release tag wins over the record of the same version.
    git("tag", "v0.1.0", last_of_0_1, root=repo)
    assert previous_release(root=repo, releases=records) == last_of_0_1
    # The released commit of the current version counts, HEAD itself never does.
    assert previous_release("0.1.0", root=repo, releases={}) == last_of_0_1
    head = git("rev-parse", "HEAD", root=repo)
    assert previous_release("0.1.0", root=repo, releases={"0.1.0": head}) == (
        last_of_0_1
    )
    # A recorded commit the clone lacks is a clear error, not a silent fallback.
    with pytest.raises(LookupError, match="not in this clone"):
        previous_release(root=repo, releases={"0.1.5": "0" * 40})


def test_the_recorded_release_is_in_the_history() -> None:
    """releases.txt names commits of main: the compat test below runs 0.1.0's code."""
    releases = recorded_releases()
    assert "0.1.0" in releases
    assert previous_release() == releases["0.1.0"]


def test_previous_release_code_runs_against_the_head_schema(
    database: str, tmp_path: Path
) -> None:
    """The previous release's code on the schema at head."""
    ref = previous_release()
    assert ref is not None, "no previous release: tag one or record it in releases.txt"
    old_src = extract(ref, tmp_path)
    assert (old_src / "ballast_common" / "models" / "__init__.py").exists()
    db = DB(_sqlalchemy(database))
    try:
        assert migrate(db=db) == head_revision()
    finally:
        db.dispose()
    proc = run_old_code(
        old_src,
        _sqlalchemy(database),
        "ballast_common.models:Model.metadata",
        "ballast",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "0 problems" in proc.stdout
    # The old code's seed wrote through its unit of work into the new schema.
    engine = create_engine(_sqlalchemy(database))
    with engine.connect() as conn:
        users = conn.execute(text("SELECT count(*) FROM users")).scalar_one()
    engine.dispose()
    assert users == 3
