"""The database side of backups: dumps, restores, scratch databases, table checksums.

PostgreSQL: ``pg_dump -Fc`` streams into the object store from an exported snapshot, so
the table checksums taken in the same transaction describe exactly what was dumped;
``pg_restore`` reads the object as it streams back. SQLite: the online backup API copies
the file page by page while writers continue.

Content checksums are order independent (a sum of per-row hashes), computed by the
server on PostgreSQL (``md5`` of the row's text form) and in Python on SQLite, so
comparing a restored database with the source costs one scan per table.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from ballast_backup.manifest import BackupError
from ballast_common.db.engine import normalize_url

CHUNK = 1024 * 1024
Progress = Callable[[int], None]


def _noop(_n: int) -> None:
    return None


def libpq_url(url: URL) -> str:
    """A URL pg_dump/psycopg understand (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def find_pg_tool(name: str, bindir: Path | None = None) -> str:
    """pg_dump / pg_restore: the configured directory, then PATH, then the newest
    /usr/lib/postgresql/<version>/bin."""
    if bindir is not None:
        candidate = Path(bindir) / name
        if candidate.is_file():
            return str(candidate)
        raise BackupError(f"{name} not found in {bindir}")
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: (
            int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0
        ),
    )
    if versions:
        return str(versions[-1])
    raise BackupError(
        f"{name} not found: install the PostgreSQL client (apt-get install postgresql-client)"
    )


_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")


def tool_major(path: str) -> int:
    """The PostgreSQL major version a client tool (``pg_dump --version``) reports."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, timeout=30, check=False
        ).stdout.decode(errors="replace")
    except OSError as exc:
        raise BackupError(f"cannot run {path} --version: {exc}") from exc
    found = _VERSION.search(out)
    if found is None:
        shown = out.strip().replace("\x00", "")[:80]
        raise BackupError(f"{path} --version names no PostgreSQL version: {shown!r}")
    return int(found.group(1))


def server_major(target: Target) -> int:
    """The major version of the PostgreSQL server behind `target`."""
    with psycopg.connect(libpq_url(target.url), connect_timeout=10) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def check_pg_tool(name: str, target: Target, bindir: Path | None = None) -> str:
    """The path of `name` (pg_dump, pg_restore), checked to be no older than the server.

    An older pg_dump refuses a newer server, and an older pg_restore cannot read what a
    newer pg_dump wrote: say so before anything starts, naming the fix.

    Raises:
        BackupError: The tool is missing, names no version, or is older than the server.
    """
    path = find_pg_tool(name, bindir)
    tool, server = tool_major(path), server_major(target)
    if tool < server:
        raise BackupError(
            f"{name} {tool} is older than the PostgreSQL {server} server: build the "
            f"backup image with --build-arg PG_MAJOR={server}, or point "
            f"backup.pg_bindir at a PostgreSQL {server} client ({path})"
        )
    return path


class CountingReader:
    """A read-only stream that reports bytes read and hashes them."""

    def __init__(self, raw: IO[bytes], progress: Progress = _noop) -> None:
        self.raw = raw
        self.progress = progress
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.sha.update(data)
            self.size += len(data)
            self.progress(len(data))
        return data


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA foreign_keys=ON")
    dbapi_connection.execute("PRAGMA busy_timeout=10000")


@dataclass
class Target:
    """A database a backup comes from or is restored into."""

    url: URL

    @classmethod
    def parse(cls, raw: str | URL) -> Target:
        return cls(normalize_url(make_url(raw) if isinstance(raw, str) else raw))

    @property
    def backend(self) -> str:
        return "sqlite" if self.url.get_backend_name() == "sqlite" else "postgresql"

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    @property
    def name(self) -> str:
        return str(self.url.database or "")

    @property
    def path(self) -> Path:
        return Path(self.name).expanduser().resolve()

    def display(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def engine(self) -> Engine:
        """A small engine without statement timeout (dumps and checksums take long)."""
        if self.is_sqlite:
            engine = create_engine(self.url)
            # pysqlite opens transactions lazily (not for reads): issue BEGIN ourselves
            # so a capture reads one consistent snapshot; cascades need foreign keys on.
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
            return engine
        return create_engine(self.url, pool_size=1, max_overflow=1, pool_pre_ping=True)

    def with_database(self, name: str) -> Target:
        return Target(self.url.set(database=name))


# --------------------------------------------------------------------------- tables


def list_tables(conn: Connection) -> list[str]:
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type='table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    else:
        rows = conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "ORDER BY tablename"
        )
    return [str(r[0]) for r in rows]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# How a table's content checksum was computed (the manifest's per-table "method"; a
# table entry without one is MD5_TEXT, as every manifest before PG_HASH was).
MD5_TEXT = "md5-text"
# PostgreSQL's own hash of each row's values (hash_record_extended, PostgreSQL 14+):
# about five times faster than rendering every row as text for md5, which dominated
# verification. Row values are hashed by their types' hash functions, which
# PostgreSQL keeps stable across releases (hash partitions depend on them); equal
# values hash alike (a numeric 1.0 and 1.00 too).
PG_HASH = "pg-hash"


def _pg_checksum(
    conn: Connection, table: str, row: str, method: str
) -> tuple[int, str]:
    if method == PG_HASH:
        digest = f"coalesce(sum(hash_record_extended({row}, 0)), 0)"
    else:
        # 15 hex digits = 60 bits per row, summed as numeric: no overflow.
        digest = (
            f"coalesce(sum(('x' || substr(md5(({row})::text), 1, 15))::bit(60)"
            "::bigint), 0)"
        )
    # The identifiers come from the catalog, quoted; no value is spliced in.
    query = f"SELECT count(*), {digest}::text FROM {_quote(table)} AS t"  # noqa: S608
    count, total = conn.exec_driver_sql(query).one()
    return int(count), str(total)


def table_stats(
    conn: Connection,
    tables: Mapping[str, list[str] | None],
    methods: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Row count and an order-independent content checksum per table.

    Args:
        tables: table -> the columns to compare (None: the whole row).
        methods: PostgreSQL: table -> the method to compute it with, as a manifest
            recorded it (verification; absent or None: `MD5_TEXT`). None (a backup):
            `PG_HASH` where the server has it and every column type can be hashed
            (a type without a hash function, such as json, falls back to
            `MD5_TEXT` for that table). Entries of `PG_HASH` tables say so.
    """
    out: dict[str, dict[str, Any]] = {}
    for table, columns in sorted(tables.items()):
        if conn.dialect.name == "postgresql":
            row = (
                "t"
                if columns is None
                else "ROW(" + ", ".join(f"t.{_quote(c)}" for c in columns) + ")"
            )
            if methods is not None:
                method = methods.get(table) or MD5_TEXT
                count, total = _pg_checksum(conn, table, row, method)
            else:
                method, (count, total) = _preferred_checksum(conn, table, row)
            out[table] = {"rows": count, "checksum": total}
            if method != MD5_TEXT:
                out[table]["method"] = method
        else:
            cols = "*" if columns is None else ", ".join(_quote(c) for c in columns)
            count = 0
            acc = 0
            # Identifiers from the catalog, quoted; no value is spliced in.
            query = f"SELECT {cols} FROM {_quote(table)}"  # noqa: S608
            for values in conn.exec_driver_sql(query):
                count += 1
                blob = repr(tuple(values)).encode()
                acc += int(hashlib.sha256(blob).hexdigest()[:15], 16)
            out[table] = {"rows": count, "checksum": str(acc)}
    return out


def _preferred_checksum(
    conn: Connection, table: str, row: str
) -> tuple[str, tuple[int, str]]:
    """`PG_HASH` when it works for this table, else `MD5_TEXT`."""
    if (conn.dialect.server_version_info or (0,)) >= (14,):
        try:
            with conn.begin_nested():
                return PG_HASH, _pg_checksum(conn, table, row, PG_HASH)
        except DBAPIError:
            pass  # a column type without a hash function: md5 of the text form
    return MD5_TEXT, _pg_checksum(conn, table, row, MD5_TEXT)


def compare_stats(
    expected: Mapping[str, Mapping[str, Any]], actual: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Differences as readable lines (empty: equal)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want is None:
            problems.append(f"table {table} is not in the backup's manifest")
        elif got is None:
            problems.append(f"table {table} is missing")
        elif want["rows"] != got["rows"]:
            problems.append(
                f"table {table}: {got['rows']} rows, expected {want['rows']}"
            )
        elif want["checksum"] != got["checksum"]:
            problems.append(f"table {table}: content checksum differs")
    return problems


def schema_revision(conn: Connection) -> str | None:
    with contextlib.suppress(Exception), conn.begin_nested():
        value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        return None if value is None else str(value)
    return None


def identity(conn: Connection, target: Target) -> dict[str, str]:
    if target.is_sqlite:
        return {"backend": "sqlite", "database": str(target.path)}
    system_id, dbname, oid = conn.exec_driver_sql(
        "SELECT (SELECT system_identifier::text FROM pg_control_system()), "
        "current_database(), (SELECT oid::text FROM pg_database "
        "WHERE datname = current_database())"
    ).one()
    return {
        "backend": "postgresql",
        "system_identifier": str(system_id),
        "database": str(dbname),
        "database_oid": str(oid),
    }


def database_size(conn: Connection, target: Target) -> int:
    if target.is_sqlite:
        return target.path.stat().st_size if target.path.exists() else 0
    return int(
        conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
        or 0
    )


# --------------------------------------------------------------------------- server


class Server:
    """The PostgreSQL server that holds scratch and restored databases."""

    def __init__(self, admin: Target) -> None:
        self.admin = admin

    @classmethod
    def for_target(cls, target: Target, scratch_url: str | None) -> Server:
        if scratch_url:
            return cls(Target.parse(scratch_url))
        return cls(target.with_database("postgres"))

    @contextlib.contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(
            libpq_url(self.admin.url), autocommit=True, connect_timeout=10
        ) as conn:
            yield conn

    def exists(self, name: str) -> bool:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
        return row is not None

    def create(self, name: str) -> Target:
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.admin.with_database(name)

    def drop(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
            )

    def rename(self, old: str, new: str) -> None:
        with self.connect() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (old,),
            )
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(old), sql.Identifier(new)
                )
            )

    def swap(self, live: str, new: str, old: str, *, attempts: int = 5) -> None:
        """Rename `live` to `old` and `new` to `live` in one transaction: either both
        renames happen or neither does. Connections to `live` are refused during the
        switch and the open ones terminated (clients reconnect to the new copy)."""
        allow = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}")
        rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
        with self.connect() as conn:
            conn.execute(allow.format(sql.Identifier(live), sql.SQL("false")))
            swapped = False
            try:
                for attempt in range(attempts):
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (live,),
                    )
                    try:
                        with conn.transaction():
                            conn.execute(
                                rename.format(sql.Identifier(live), sql.Identifier(old))
                            )
                            conn.execute(
                                rename.format(sql.Identifier(new), sql.Identifier(live))
                            )
                    except psycopg.errors.ObjectInUse:
                        if attempt == attempts - 1:
                            raise BackupError(
                                f"database {live} is still in use: nothing was switched"
                            ) from None
                        time.sleep(0.5)
                        continue
                    swapped = True
                    break
            finally:
                # The kept (or about to be dropped) previous database accepts
                # connections again, whichever name it has now.
                conn.execute(
                    allow.format(
                        sql.Identifier(old if swapped else live), sql.SQL("true")
                    )
                )


def is_empty(target: Target) -> bool:
    """True when the database does not exist or has no tables."""
    if target.is_sqlite and (
        not target.path.exists() or target.path.stat().st_size == 0
    ):
        return True
    engine = target.engine()
    try:
        with engine.connect() as conn:
            return not list_tables(conn)
    except Exception:
        return True
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- dumps


def _pg_env(url: URL) -> dict[str, str]:
    # pg_dump/pg_restore inherit the environment; the password travels in PGPASSWORD
    # rather than on the command line (visible in ps).
    env = dict(os.environ)  # noqa: TID251 - the child process inherits our environment
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return env


def _pg_args_url(url: URL) -> str:
    return libpq_url(url.set(password=None))


def pg_dump_stream(
    target: Target,
    snapshot: str | None,
    sink: Callable[[IO[bytes]], Any],
    *,
    bindir: Path | None = None,
    progress: Progress = _noop,
) -> Any:
    """Run pg_dump -Fc and hand its output stream to `sink` (which uploads it)."""
    args = [check_pg_tool("pg_dump", target, bindir), "-Fc", "--no-password"]
    if snapshot:
        args += ["--snapshot", snapshot]
    args += ["-d", _pg_args_url(target.url)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=err, env=_pg_env(target.url)
        )
        assert proc.stdout is not None
        try:
            result = sink(cast(IO[bytes], CountingReader(proc.stdout, progress)))
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        code = proc.wait()
        if code != 0:
            err.seek(0)
            message = err.read().decode(errors="replace").strip().splitlines()
            raise BackupError(
                f"pg_dump failed ({code}): {message[-1] if message else 'no output'}"
            )
    return result


def _pg_restore_args(target: Target, bindir: Path | None) -> list[str]:
    return [
        check_pg_tool("pg_restore", target, bindir),
        "--no-password",
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "-d",
        _pg_args_url(target.url),
    ]


def _restore_failed(code: int, err: IO[bytes]) -> BackupError:
    err.seek(0)
    lines = err.read().decode(errors="replace").strip().splitlines()
    return BackupError(
        f"pg_restore failed ({code}): {lines[-1] if lines else 'no output'}"
    )


def pg_restore_stream(
    target: Target,
    source: IO[bytes],
    *,
    bindir: Path | None = None,
    progress: Progress = _noop,
) -> str:
    """Feed a custom-format dump into pg_restore; returns the stream's sha256."""
    args = _pg_restore_args(target, bindir)
    reader = CountingReader(source, progress)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stderr=err, env=_pg_env(target.url)
        )
        assert proc.stdin is not None
        try:
            while chunk := reader.read(CHUNK):
                proc.stdin.write(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
        if code != 0:
            raise _restore_failed(code, err)
    return reader.sha.hexdigest()


def pg_restore_file(
    target: Target, dump: Path, *, jobs: int, bindir: Path | None = None
) -> None:
    """Restore a custom-format dump file with `jobs` parallel pg_restore workers
    (tables' data and indexes in parallel; needs a file, not a pipe)."""
    args = [*_pg_restore_args(target, bindir), f"--jobs={jobs}", str(dump)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stderr=err, env=_pg_env(target.url)
        )
        try:
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if code != 0:
            raise _restore_failed(code, err)


def sqlite_copy(source: Path, dest: Path) -> None:
    """Online backup of a live SQLite database (consistent, writers keep going)."""
    if not source.exists():
        raise BackupError(f"database file {source} does not exist")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst, pages=4096)
    finally:
        dst.close()
        src.close()


def pg_name(base: str, suffix: str) -> str:
    """`base` + `suffix`, `base` shortened to fit PostgreSQL's 63-byte names."""
    room = 63 - len(suffix.encode())
    cut = base.encode()[:room].decode(errors="ignore")
    return cut + suffix


def scratch_name(prefix: str = "ballast_scratch") -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


def run_sql(target: Target, statement: str) -> None:
    engine = target.engine()
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()
