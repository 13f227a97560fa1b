"""Run one release's code against a database whose schema a newer release migrated.

Executed in a subprocess whose PYTHONPATH puts the *old* code first (tests/compat/compat.py
extracts it with `git archive`), so every import below resolves to that release:

    python old_code_driver.py --metadata ballast_common.models:Model.metadata --exercise ballast

Checks, each printed as one `problem:` line (exit 1 when there is any):
1. schema: every table and column the old code maps exists; every column the old code does not
   know is nullable or has a server default (otherwise the old code's INSERTs fail);
2. reads: a SELECT of every old table with all of its old columns;
3. writes: the old code's own write path (`ballast`: the demo seed through its unit of work;
   `module:function`: a callable taking an Engine), then the reads again.
This file may only use what every release keeps: the seeds' public names.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, inspect, select


def _resolve(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def schema_problems(old: MetaData, engine: Engine) -> list[str]:
    problems: list[str] = []
    insp = inspect(engine)
    tables = set(insp.get_table_names())
    for table in old.sorted_tables:
        if table.name not in tables:
            problems.append(
                f"table {table.name} is gone (contract it one release later)"
            )
            continue
        live = {c["name"]: c for c in insp.get_columns(table.name)}
        for column in table.columns:
            if column.name not in live:
                problems.append(
                    f"column {table.name}.{column.name} is gone or renamed "
                    "(the previous release still reads it)"
                )
        known = {c.name for c in table.columns}
        for name, info in live.items():
            if (
                name not in known
                and not info["nullable"]
                and info.get("default") is None
                and info.get("autoincrement") is not True
                and not info.get("computed")
                and not info.get("identity")
            ):
                problems.append(
                    f"new column {table.name}.{name} is NOT NULL without a server default "
                    "(the previous release's INSERTs leave it out)"
                )
    return problems


def read_problems(old: MetaData, engine: Engine) -> list[str]:
    problems: list[str] = []
    with engine.connect() as conn:
        for table in old.sorted_tables:
            try:
                conn.execute(select(*table.columns).limit(5)).all()
            except Exception as exc:  # report every table, not only the first
                conn.rollback()
                problems.append(
                    f"reading {table.name} fails: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                )
    return problems


def _ballast_writes() -> Callable[[Engine], None]:
    """The release's own write path: the demo seed through its unit of work."""

    def run(_: Engine) -> None:
        from ballast_common.config import load_config
        from ballast_common.db import DB, run_tx
        from ballast_common.seed import seed_demo

        config = load_config()
        db = DB.from_config(config.database, application_name="compat.old-release")
        try:
            run_tx(lambda uow: seed_demo(uow, random_passwords=True), db=db)
        finally:
            db.dispose()

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the new schema")
    parser.add_argument(
        "--metadata", required=True, help="module:attr of the old MetaData"
    )
    parser.add_argument(
        "--exercise", required=True, help="'ballast' or module:function(engine)"
    )
    args = parser.parse_args()
    old: MetaData = _resolve(args.metadata)
    engine = create_engine(args.url)
    problems = schema_problems(old, engine) + read_problems(old, engine)
    if not problems:
        write = (
            _ballast_writes() if args.exercise == "ballast" else _resolve(args.exercise)
        )
        try:
            write(engine)
        except Exception as exc:
            problems.append(
                f"writing fails: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            )
        problems += read_problems(old, engine)
    engine.dispose()
    for line in problems:
        sys.stdout.write(f"problem: {line}\n")
    sys.stdout.write(
        f"checked {len(old.sorted_tables)} tables: {len(problems)} problems\n"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
