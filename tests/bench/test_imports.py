"""The benchmarks stand on their own: they share servers with the tests through the
`ballast_testing` package, never by importing the test suite."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_bench_never_imports_the_tests() -> None:
    modules = sorted(BENCH.rglob("*.py"))
    assert len(modules) > 5
    offenders = {
        str(path.relative_to(BENCH)): sorted(
            name
            for name in _imports(path)
            if name == "tests" or name.startswith("tests.")
        )
        for path in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scan_sees_an_import_of_the_tests(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from tests.fixtures.servers import LocalPostgres\nimport tests\n"
    )
    assert {"tests.fixtures.servers", "tests"} <= _imports(sample)
