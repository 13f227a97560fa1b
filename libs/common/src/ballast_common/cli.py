"""The `ballast` command line.

Service packages add command groups through the `ballast.cli` entry-point group
(`name = "package.module:typer_app"`), so ballast_common never imports a service.

Exit codes: 0 success, 1 a failure while doing the work (database unreachable, not
migrated, a component died), 2 bad usage or configuration, 130 interrupted before the
stack was up. Every error is one line on stderr starting with `error:`.

The heavy imports (SQLAlchemy, Alembic, pydantic) happen inside the commands, so
`--help` and `--version` answer at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ballast_common.errors import AppError, ConfigError

if TYPE_CHECKING:
    from ballast_common.app import AppContext
    from ballast_common.config import AppConfig

app = typer.Typer(
    name="ballast",
    help="Ballast: run a Streamlit data app in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app_cmd = typer.Typer(help="Run the application.", no_args_is_help=True)
db_cmd = typer.Typer(help="Database: migrations and seed data.", no_args_is_help=True)
cache_cmd = typer.Typer(
    help="The cache: clear values, show what it holds.", no_args_is_help=True
)
app.add_typer(app_cmd, name="app")
app.add_typer(db_cmd, name="db")
app.add_typer(cache_cmd, name="cache")

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def product_version() -> str:
    return version("ballast-common")


def _version_callback(value: bool) -> None:
    if value:
        print(f"ballast {product_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Ballast: run a Streamlit data app in production."""


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    print(f"error: {_one_line(message)}", file=sys.stderr)
    return typer.Exit(code)


@contextmanager
def _errors(doing: str) -> Iterator[None]:
    """Turn any failure inside into a one-line `error:` and an exit code (no traceback)."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except ConfigError as exc:
        raise fail(exc.message, EXIT_USAGE) from None
    except AppError as exc:
        raise fail(exc.message) from None
    except Exception as exc:
        raise fail(
            f"{doing} failed: {type(exc).__name__}: {_one_line(str(exc))}"
        ) from None


def _config() -> AppConfig:
    from ballast_common.config import load_config

    try:
        return load_config()
    except AppError as exc:
        raise fail(exc.message, EXIT_USAGE) from None


def _init(cfg: AppConfig, *, migrate_db: bool = False) -> AppContext:
    """init_app for a CLI process: logs go to stderr (stdout is the command's output),
    at WARNING unless BALLAST_LOG_LEVEL asks for more."""
    from ballast_common.app import init_app

    if "log_level" not in cfg.model_fields_set:
        cfg = cfg.model_copy(update={"log_level": "WARNING"})
    return init_app(
        "cli",
        config=cfg,
        migrate_db=migrate_db,
        log_stream=sys.stderr,
        listen_for_busts=False,
    )


@cache_cmd.command("clear")
def cache_clear(
    namespace: Annotated[
        str | None,
        typer.Option(help="Only this namespace (e.g. projects); default: all of them."),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(
            help="Every value tagged with this (e.g. project:42), everywhere."
        ),
    ] = None,
) -> None:
    """Drop cached values in Redis and in every replica's memory (by namespace or tag)."""
    from ballast_common.cache import build_cache

    if namespace and tag:
        raise fail("give --namespace or --tag, not both", EXIT_USAGE)
    cfg = _config()
    with _errors("cache clear"):
        cache = build_cache(cfg, listen=False)
        try:
            if cache.ping() == "down":
                raise fail("Redis does not answer: nothing was cleared")
            if tag:
                told = cache.clear(tag=tag)
                print(f"busted tag {tag}: {told} replica(s) acknowledged")
            else:
                deleted = cache.clear(namespace=namespace)
                where = f"namespace {namespace}" if namespace else "every namespace"
                print(
                    f"cleared {deleted} key(s) of {where} (version {cache.keys.version})"
                )
        finally:
            cache.close()


@cache_cmd.command("stats")
def cache_stats() -> None:
    """What the cache holds: L1 of this process, keys in Redis, Redis reachable."""
    from ballast_common.cache import build_cache

    cfg = _config()
    with _errors("cache stats"):
        cache = build_cache(cfg, listen=False)
        try:
            for name, value in cache.stats().items():
                print(f"{name}: {value}")
        finally:
            cache.close()


@db_cmd.command("migrate")
def db_migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database schema to REVISION (default: head)."""
    from ballast_common.db.migrate import current_revision, head_revision, migrate

    cfg = _config()
    with _errors("migration"):
        ctx = _init(cfg)
        try:
            before = current_revision(ctx.db)
            dbc = cfg.database
            after = migrate(
                revision,
                db=ctx.db,
                lock_timeout_s=dbc.migration_lock_timeout_s,
                lock_attempts=dbc.migration_lock_attempts,
                statement_timeout_s=dbc.migration_statement_timeout_s,
            )
            head = head_revision()
        finally:
            ctx.db.dispose()
    print(f"database at {after or 'base'} (was {before or 'empty'}; head is {head})")


@db_cmd.command("current")
def db_current() -> None:
    """Print the database's schema revision and whether it is behind."""
    from ballast_common.db.migrate import current_revision, head_revision

    cfg = _config()
    with _errors("reading the schema revision"):
        ctx = _init(cfg)
        try:
            rev = current_revision(ctx.db)
            head = head_revision()
        finally:
            ctx.db.dispose()
    state = "up to date" if rev == head else f"behind (head is {head})"
    print(f"{rev or 'empty'} — {state}")


@db_cmd.command("seed")
def db_seed(
    random_passwords: Annotated[
        bool,
        typer.Option(
            help="Give new demo users random passwords (required outside dev)."
        ),
    ] = False,
) -> None:
    """Create roles, demo users (admin / editor / viewer) and demo projects."""
    from ballast_common.config import Env
    from ballast_common.db.migrate import current_revision, head_revision
    from ballast_common.db.uow import run_tx
    from ballast_common.seed import seed_demo

    cfg = _config()
    if cfg.env is not Env.dev and not random_passwords:
        raise fail("outside dev, demo users need --random-passwords", EXIT_USAGE)
    with _errors("seeding"):
        ctx = _init(cfg)
        try:
            if current_revision(ctx.db) != head_revision():
                raise fail(
                    "the database is not migrated: run `ballast db migrate` first"
                )
            creds = run_tx(
                lambda uow: seed_demo(uow, random_passwords=random_passwords), db=ctx.db
            )
        finally:
            ctx.db.dispose()
    print("demo users (username / password / role):")
    for c in creds:
        note = "" if c.created else "  (already existed)"
        print(f"  {c.username:<8} {c.password:<20} {c.role}{note}")


@app_cmd.command("run")
def app_run(
    api_port: Annotated[
        int | None, typer.Option(help="API port (default 8000).")
    ] = None,
    ui_port: Annotated[int | None, typer.Option(help="UI port (default 8501).")] = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address (default 127.0.0.1).")
    ] = None,
    no_migrate: Annotated[
        bool, typer.Option(help="Do not run pending migrations first.")
    ] = False,
    start_timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for every component to become healthy."),
    ] = 60.0,
) -> None:
    """Run the local stack (api, ui, worker) on the configured database; Ctrl-C stops it."""
    from ballast_common.supervisor import Component, Supervisor
    from ballast_common.telemetry.pii import mask_value

    cfg = _config()
    with _errors("start-up"):
        ctx = _init(cfg, migrate_db=not no_migrate)
        ctx.db.dispose()
    bind = host or cfg.api.host
    api_p = api_port or cfg.api.port
    ui_p = ui_port or cfg.ui.port
    api_url = f"http://{bind}:{api_p}"
    env = {
        "BALLAST_API__HOST": bind,
        "BALLAST_API__PORT": str(api_p),
        "BALLAST_UI__HOST": bind,
        "BALLAST_UI__PORT": str(ui_p),
        "BALLAST_API_URL": api_url,
    }
    components = [
        Component("api", "ballast_api", health_url=f"{api_url}/healthz", env=env),
        Component(
            "ui",
            "ballast_ui",
            health_url=f"http://{bind}:{ui_p}/_stcore/health",
            env=env,
        ),
        Component("worker", "ballast_jobs", args=("worker",), env=env),
    ]
    sup = Supervisor(components)
    if not sup.components:
        raise fail("no service package is installed (run `make install`)")
    try:
        sup.start()
        bad = sup.wait_healthy(start_timeout)
    except BaseException:
        sup.stop()
        raise
    if sup.stopping:
        sup.stop()
        raise fail("interrupted before the stack was up; stopped it", EXIT_INTERRUPTED)
    if bad:
        sup.stop()
        raise fail(f"did not become healthy: {', '.join(bad)}")
    print(f"Ballast {product_version()} running ({cfg.env.value}, {ctx.db!r}):")
    from ballast_common.jobs import broker_url  # kombu only when the stack runs

    redis = broker_url(cfg)
    broker = (
        mask_value(redis)
        if redis
        else f"embedded broker in {Path(cfg.paths.data_dir) / 'broker'}"
    )
    for comp in sup.components:
        url = {
            "api": f"{api_url}  (docs: {api_url}/docs)",
            "ui": f"http://{bind}:{ui_p}",
            "worker": f"{cfg.jobs.concurrency} processes, {broker}",
        }.get(comp.name, "")
        print(f"  {comp.name:<7} {url}")
    if sup.skipped:
        print(f"  not installed yet: {', '.join(sup.skipped)}")
    print("Press Ctrl-C to stop.", flush=True)
    code = sup.run_forever()
    sys.stdout.flush()
    raise typer.Exit(code)


def _load_plugins() -> None:
    for ep in entry_points(group="ballast.cli"):
        try:
            sub = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            print(
                f"warning: command group {ep.name!r} failed to load: {exc}",
                file=sys.stderr,
            )
            continue
        app.add_typer(sub, name=ep.name)


def main() -> None:
    """Console-script entry point."""
    _load_plugins()
    try:
        app()
    except AppError as exc:
        code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE
        print(f"error: {_one_line(exc.message)}", file=sys.stderr)
        raise SystemExit(code) from None
