"""`ballast test e2e`: run the Workbench's browser tests on their own.

Loaded through the `ballast.cli` entry-point group. The suite lives in the source tree
(``tests/e2e``), not in the wheel: the repository root is looked for above this
package (editable install) and above the current directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Run test suites from the source tree.")

SUITE = Path("tests") / "e2e"


def find_root(*starts: Path) -> Path | None:
    """The first directory at or above one of ``starts`` holding ``tests/e2e``."""
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / SUITE / "conftest.py").is_file():
                return folder
    return None


@app.callback()
def _group() -> None:
    """Run test suites from the source tree."""


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def e2e(
    ctx: typer.Context,
    root: Annotated[
        Path | None,
        typer.Option(help="Repository root (default: found from here or the package)."),
    ] = None,
) -> None:
    """Run the end-to-end browser suite (`pytest -m e2e tests/e2e`); extra args go to pytest."""
    found = (
        root
        if root is not None and (root / SUITE).is_dir()
        else (
            None
            if root is not None
            else find_root(Path(__file__).resolve().parent, Path.cwd().resolve())
        )
    )
    if found is None:
        where = root or Path.cwd()
        typer.echo(
            f"error: the e2e tests are not here: no {SUITE}/ at or above {where} "
            "(run from a Ballast source checkout)",
            err=True,
        )
        raise typer.Exit(2)
    cmd = [sys.executable, "-m", "pytest", "-m", "e2e", str(SUITE), *ctx.args]
    typer.echo(f"$ (cd {found}) {' '.join(cmd[1:])}")
    code = subprocess.run(cmd, cwd=found, check=False).returncode
    raise typer.Exit(code)
