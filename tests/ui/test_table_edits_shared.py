"""The server's table-edit logic against the cases the browser journal runs too.

A data editor's edit state ``{edited_rows, added_rows, deleted_rows}`` over the rows it
started from is turned into stored rows twice: by the server
(`ballast_ui.widgets._apply_edits` + `_jsonable_rows`) and by the browser journal
(``ballast_ui/frontend/lib/table_edits.js``). Both run the cases in
``services/ui/frontend/test/table_edits_cases.json`` (the node side:
``table_edits.test.js``), so the two cannot diverge unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ballast_ui.widgets import _apply_edits, _jsonable_rows

CASES_FILE = (
    Path(__file__).resolve().parents[2]
    / "services/ui/frontend/test/table_edits_cases.json"
)
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))[
    "cases"
]


def test_the_cases_cover_the_edge_cases() -> None:
    assert len(CASES) >= 20
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_server_rows_match_the_shared_case(case: dict[str, Any]) -> None:
    rows = _jsonable_rows(_apply_edits(case["base"], case["edits"]), case["columns"])
    # Key order too: the browser compares rows as JSON text.
    assert [list(r.items()) for r in rows] == [
        list(r.items()) for r in case["expected"]
    ]
