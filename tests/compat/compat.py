"""Zero-downtime migrations, proven: the previous release's code against the newest schema.

Expand/contract (charts/ballast/README.md): a release only adds (nullable or defaulted columns,
new tables); removals follow one release later. So while the next release's migration Job has
run and the previous colour still serves, the previous release's code must work on the new
schema. This module finds that release in git, extracts its `libs/common/src` and runs
old_code_driver.py with it against a database migrated to head by the current code.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("old_code_driver.py")
RELEASES = Path(__file__).with_name("releases.txt")
OLD_SRC = "libs/common/src"


def git(*args: str, root: Path = ROOT) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def version_at(ref: str, root: Path = ROOT) -> str | None:
    try:
        return git("show", f"{ref}:VERSION", root=root).strip()
    except subprocess.CalledProcessError:
        return None


def recorded_releases(path: Path = RELEASES) -> dict[str, str]:
    """Version -> commit from `releases.txt` (comments and blank lines ignored)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            version, commit = line.split()
            out[version] = commit
    return out


def _is_strict_ancestor(commit: str, root: Path) -> bool:
    head = git("rev-parse", "HEAD", root=root)
    try:
        full = git(
            "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", root=root
        )
    except subprocess.CalledProcessError:
        raise LookupError(
            f"release commit {commit} is not in this clone (a shallow clone? "
            "fetch the history of main)"
        ) from None
    if full == head:
        return False
    proc = subprocess.run(
        ["git", "-C", str(root), "merge-base", "--is-ancestor", full, head],
        check=False,
        timeout=60,
    )
    return proc.returncode == 0


def previous_release(
    current: str | None = None,
    root: Path = ROOT,
    releases: dict[str, str] | None = None,
) -> str | None:
    """The commit of the newest release before HEAD whose version is at most `current`
    (default: the VERSION file), or None.

    Releases are tags `v<version>` reachable from HEAD, then `releases.txt` (CI clones
    carry the history of main, not always its tags); without either, the last commit
    before VERSION was bumped to `current`.
    """
    current = current or (root / "VERSION").read_text().strip()
    found: dict[str, str] = {
        v: c
        for v, c in (recorded_releases() if releases is None else releases).items()
        if _version_key(v) <= _version_key(current)
    }
    for tag in git("tag", "--list", "v*", "--merged", "HEAD", root=root).splitlines():
        if re.fullmatch(r"v\d+(\.\d+)*", tag) and _version_key(tag[1:]) <= _version_key(
            current
        ):
            found[tag[1:]] = git("rev-list", "-n", "1", tag, root=root)
    for version in sorted(found, key=_version_key, reverse=True):
        if _is_strict_ancestor(found[version], root):
            return git("rev-parse", found[version], root=root)
    for commit in git("rev-list", "HEAD", "--", "VERSION", root=root).splitlines():
        if version_at(commit, root) != current:
            continue
        before = version_at(f"{commit}^", root)
        if before is not None and before != current:
            return git("rev-parse", f"{commit}^", root=root)
    return None


def extract(ref: str, dest: Path) -> Path:
    """`libs/common/src` of `ref` under `dest` (git archive: no checkout, no worktree)."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, OLD_SRC],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / OLD_SRC


def run_old_code(
    pythonpath: Path, url: str, metadata: str, exercise: str
) -> subprocess.CompletedProcess[str]:
    """old_code_driver.py with `pythonpath` ahead of the installed packages."""
    env = {
        **os.environ,  # noqa: TID251 - the child needs PATH/HOME; Ballast settings are set below
        "PYTHONPATH": str(pythonpath),
        "BALLAST_ENV": "dev",
        "BALLAST_DATABASE__URL": url,
        "BALLAST_LOG_FORMAT": "console",
        "BALLAST_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [
            sys.executable,
            str(DRIVER),
            "--url",
            url,
            "--metadata",
            metadata,
            "--exercise",
            exercise,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        env=env,
        cwd=str(pythonpath),
    )
