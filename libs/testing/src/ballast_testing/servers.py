"""Real PostgreSQL and Redis servers for the test suite.

Each server comes from an environment variable when one is set
(``BALLAST_TEST_POSTGRES_URL``, ``BALLAST_TEST_REDIS_URL``); otherwise the harness
starts a throwaway one on a free loopback port and removes it at the end of the
session. Fault tests get private PostgreSQL servers they may stop or kill.

Only loopback addresses are ever started or targeted.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from psycopg.rows import TupleRow

POSTGRES_URL_ENV = "BALLAST_TEST_POSTGRES_URL"
REDIS_URL_ENV = "BALLAST_TEST_REDIS_URL"
LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
POSTGRES_USER = "postgres"
START_TIMEOUT = 30.0

POSTGRES_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them with "
    "`apt-get install postgresql` (or `scripts/bootstrap.sh postgresql` as root), or point "
    f"{POSTGRES_URL_ENV} at a running server, e.g. postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_INSTALL_HINT = (
    "redis-server was not found. Install it with `apt-get install redis-server` "
    "(or `scripts/bootstrap.sh redis-server` as root), or point "
    f"{REDIS_URL_ENV} at a running server, e.g. redis://127.0.0.1:6379/0"
)


class ServerUnavailableError(RuntimeError):
    """A test server could not be found or started."""


# --------------------------------------------------------------------------- helpers


def _env(name: str) -> str | None:
    # The test harness is not application code: it reads its own switches directly.
    value = os.environ.get(name, "").strip()  # noqa: TID251
    return value or None


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _require_loopback(host: str | None, url: str) -> None:
    if host and host not in LOOPBACK_HOSTS and not host.startswith("/"):
        raise ServerUnavailableError(
            f"refusing to use {url!r}: the test harness only talks to loopback servers"
        )


def _replace_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _libpq_url(url: str) -> str:
    """Drop a SQLAlchemy driver suffix (``postgresql+psycopg://``) so libpq accepts the URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def _process_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``Z`` for a zombie), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    state = _process_state(pid)
    if state is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").is_dir()
    return state not in {"Z", "X"}


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ServerUnavailableError(
                f"timed out after {timeout:.0f}s waiting for {what}"
            )
        time.sleep(0.02)


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresServer:
    """A PostgreSQL server reachable with trust (or URL-embedded) authentication."""

    host: str
    port: int
    admin_url: str
    pid: int | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresServer:
        parts = urlsplit(url)
        host = parts.hostname or LOOPBACK
        _require_loopback(host, url)
        return cls(host=host, port=parts.port or 5432, admin_url=url)

    def url_for(self, dbname: str) -> str:
        """The admin URL pointed at another database on the same server."""
        return _replace_path(self.admin_url, "/" + dbname)

    def connect(self, dbname: str | None = None) -> psycopg.Connection[TupleRow]:
        """An autocommit connection to ``dbname`` (default: the admin database)."""
        url = self.admin_url if dbname is None else self.url_for(dbname)
        return psycopg.connect(_libpq_url(url), autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> str:
        """Create ``name`` and return its URL."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Terminate every connection to ``name``, then drop it if it exists."""
        with self.connect() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
            )


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; newest version wins."""

    def usable(path: Path) -> bool:
        return (path / "initdb").is_file() and (path / "pg_ctl").is_file()

    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            )
            candidates.append(Path(out.stdout.strip()))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))

    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if usable(candidate):
            return candidate
    raise ServerUnavailableError(POSTGRES_INSTALL_HINT)


def _base_tmpdir() -> Path:
    """A temp root every user can traverse (the ``postgres`` user must reach its data dir)."""
    root = Path(tempfile.gettempdir())
    if os.geteuid() == 0 and not all(
        p.stat().st_mode & 0o001 for p in (root, *root.parents) if p.exists()
    ):
        root = Path("/tmp")  # world-traversable by definition
    return root


class LocalPostgres(PostgresServer):
    """A throwaway PostgreSQL cluster owned by the test session.

    As root the cluster runs as the ``postgres`` user (initdb refuses root).
    """

    def __init__(self, bindir: Path, base_dir: Path) -> None:
        port = free_port()
        super().__init__(
            host=LOOPBACK,
            port=port,
            admin_url=f"postgresql://{POSTGRES_USER}@{LOOPBACK}:{port}/postgres",
        )
        self.bindir = bindir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_file = base_dir / "postgres.log"
        self.settings: dict[str, str] = {}
        self._as_postgres = os.geteuid() == 0

    # ---- lifecycle

    @classmethod
    @contextlib.contextmanager
    def throwaway(
        cls, settings: Mapping[str, str] | None = None
    ) -> Iterator[LocalPostgres]:
        """Create, start and finally destroy a private cluster."""
        server = cls.create(settings)
        try:
            yield server
        finally:
            server.destroy()

    @classmethod
    def create(
        cls, settings: Mapping[str, str] | None = None, template: Path | None = None
    ) -> LocalPostgres:
        """initdb (or copy ``template``, a never-started data dir) and start a new cluster.

        The caller must call :meth:`destroy`.
        """
        server = cls.initialised(template)
        server.settings.update(settings or {})
        try:
            server._start_on_free_port()
        except BaseException:
            server.destroy()
            raise
        return server

    @classmethod
    def initialised(cls, template: Path | None = None) -> LocalPostgres:
        """A new, not yet started cluster."""
        bindir = find_postgres_bindir()
        base_dir = Path(tempfile.mkdtemp(prefix="ballast-pg-", dir=_base_tmpdir()))
        server = cls(bindir, base_dir)
        try:
            server._initdb(template)
        except BaseException:
            server.destroy()
            raise
        return server

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", POSTGRES_USER, "--", *cmd]
        return subprocess.run(
            cmd,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _initdb(self, template: Path | None = None) -> None:
        if self._as_postgres:
            try:
                user = pwd.getpwnam(POSTGRES_USER)
            except KeyError as exc:
                raise ServerUnavailableError(
                    f"running as root but there is no {POSTGRES_USER!r} user to own the cluster; "
                    "install the `postgresql` Debian package or run the tests as a normal user"
                ) from exc
            if shutil.which("runuser") is None:
                raise ServerUnavailableError("running as root but `runuser` is missing")
            os.chown(self.base_dir, user.pw_uid, user.pw_gid)
        if template is not None:
            # `cp -a` keeps the postgres ownership; much faster than a fresh initdb.
            copied = subprocess.run(
                ["cp", "-a", str(template), str(self.data_dir)],
                capture_output=True,
                text=True,
            )
            if copied.returncode == 0:
                return
            shutil.rmtree(self.data_dir, ignore_errors=True)
        result = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            POSTGRES_USER,
            "-E",
            "UTF8",
            "--no-sync",
        )
        if result.returncode != 0:
            raise ServerUnavailableError(
                f"initdb failed:\n{result.stdout}\n{result.stderr}"
            )

    def _options(self) -> str:
        opts = {
            "listen_addresses": LOOPBACK,
            "fsync": "off",
            "max_connections": "200",
            **self.settings,
        }
        flags = [f"-p {self.port}", f"-k {self.base_dir}"]
        flags += [f"-c {key}={value}" for key, value in opts.items()]
        return " ".join(flags)

    def _start_on_free_port(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                self.start()
                return
            except ServerUnavailableError:
                if attempt == attempts - 1:
                    raise
                self.port = free_port()
                self.admin_url = (
                    f"postgresql://{POSTGRES_USER}@{LOOPBACK}:{self.port}/postgres"
                )

    def _read_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        return int(first) if first.strip().isdigit() else None

    @property
    def running(self) -> bool:
        pid = self._read_pid()
        return pid is not None and _alive(pid)

    def start(self) -> None:
        """Start the (stopped or killed) cluster on its port and wait until it accepts connections."""
        if self.running:
            return
        result = self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            self._options(),
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "start",
            timeout=START_TIMEOUT + 10,
        )
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise ServerUnavailableError(
                f"pg_ctl start failed on port {self.port}:\n{result.stdout}\n{result.stderr}\n{log}"
            )
        self.pid = self._read_pid()

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster cleanly (``pg_ctl stop -m MODE``)."""
        if self.running:
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                mode,
                "-w",
                "stop",
            )
        self.pid = None

    def kill(self) -> None:
        """SIGKILL the postmaster, like a crash, and wait until its backends are gone too."""
        pid = self._read_pid()
        if pid is None or not _alive(pid):
            self.pid = None
            return
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        _wait_until(lambda: not _alive(pid), 10, f"postmaster {pid} to die")
        try:
            _wait_until(
                lambda: not any(_alive(c) for c in children), 10, "backends to exit"
            )
        except ServerUnavailableError:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            _wait_until(
                lambda: not any(_alive(c) for c in children), 10, "backends to die"
            )
        # An unreaped (zombie) postmaster still answers kill(pid, 0), which would make the
        # next postmaster refuse its stale lock files; it is dead, so drop them ourselves.
        for lock in (
            self.data_dir / "postmaster.pid",
            self.base_dir / f".s.PGSQL.{self.port}.lock",
            self.base_dir / f".s.PGSQL.{self.port}",
        ):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        self.pid = None

    def destroy(self) -> None:
        """Stop immediately and delete the cluster's files."""
        with contextlib.suppress(Exception):
            self.stop(mode="immediate")
        with contextlib.suppress(Exception):
            if self.running:
                self.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)


@contextlib.contextmanager
def provide_postgres() -> Iterator[PostgresServer]:
    """The server named by ``BALLAST_TEST_POSTGRES_URL``, else a throwaway one."""
    url = _env(POSTGRES_URL_ENV)
    if url:
        server = PostgresServer.from_url(url)
        try:
            with server.connect() as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise ServerUnavailableError(
                f"{POSTGRES_URL_ENV}={url} is not reachable: {exc}"
            ) from exc
        yield server
        return
    with LocalPostgres.throwaway() as local:
        yield local


# --------------------------------------------------------------------------- Redis


@dataclass
class RedisServer:
    """A Redis server; ``url`` selects database 0 unless the env URL says otherwise."""

    host: str
    port: int
    url: str
    pid: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def ping(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        proc = self._process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._process = None


def find_redis_server() -> Path:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    if found is None:
        raise ServerUnavailableError(REDIS_INSTALL_HINT)
    return Path(found)


@contextlib.contextmanager
def throwaway_redis(extra_args: tuple[str, ...] = ()) -> Iterator[RedisServer]:
    """Start ``redis-server`` on a free loopback port without persistence (by default)."""
    binary = find_redis_server()
    tmp = Path(tempfile.mkdtemp(prefix="ballast-redis-"))
    server: RedisServer | None = None
    try:
        port = free_port()
        with (tmp / "redis.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    str(binary),
                    "--port",
                    str(port),
                    "--bind",
                    LOOPBACK,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(tmp),
                    "--daemonize",
                    "no",
                    *extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started = RedisServer(
            host=LOOPBACK,
            port=port,
            url=f"redis://{LOOPBACK}:{port}/0",
            pid=proc.pid,
            _process=proc,
        )
        server = started

        def ready() -> bool:
            if proc.poll() is not None:
                raise ServerUnavailableError(
                    f"redis-server exited with {proc.returncode}:\n{(tmp / 'redis.log').read_text()}"
                )
            return started.ping()

        _wait_until(ready, START_TIMEOUT, f"redis-server on port {port}")
        yield started
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def provide_redis() -> Iterator[RedisServer]:
    """The server named by ``BALLAST_TEST_REDIS_URL``, else a throwaway one."""
    url = _env(REDIS_URL_ENV)
    if url:
        parts = urlsplit(url)
        _require_loopback(parts.hostname, url)
        server = RedisServer(
            host=parts.hostname or LOOPBACK, port=parts.port or 6379, url=url
        )
        if not server.ping():
            raise ServerUnavailableError(f"{REDIS_URL_ENV}={url} does not answer PING")
        yield server
        return
    with throwaway_redis() as local:
        yield local
