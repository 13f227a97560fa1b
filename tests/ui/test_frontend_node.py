"""The browser code's unit tests (node's test runner), run as part of the suite.

The component modules (``services/ui/src/ballast_ui/frontend``) are tested by
``services/ui/frontend/test/*.test.js`` with ``node:test`` only (no npm package), so
``make test`` runs them wherever node is (``make install`` installs it with npm).

``backmsg_cases.json`` holds BackMsgs the way Streamlit's browser sends them (rerun
requests with widget states), which the browser journal decodes by hand
(``lib/backmsg.js``): they are encoded here with the installed Streamlit's own protobuf
classes, so a Streamlit that renumbers those fields fails this test, not a user.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "services/ui/frontend/test"
BACKMSG_CASES = TESTS / "backmsg_cases.json"

EDIT_STATE = json.dumps(
    {
        "edited_rows": {"0": {"title": "Grüße 🚢"}},
        "added_rows": [{"title": "new"}],
        "deleted_rows": [2],
    }
)


def _rerun(widgets: list[dict[str, Any]], **client_state: Any) -> BackMsg:
    msg = BackMsg()
    msg.rerun_script.SetInParent()
    for name, value in client_state.items():
        setattr(msg.rerun_script, name, value)
    for fields in widgets:
        state = msg.rerun_script.widget_states.widgets.add()
        for name, value in fields.items():
            setattr(state, name, value)
    return msg


def backmsg_cases() -> list[dict[str, Any]]:
    """Recorded BackMsgs: name, the message (base64) and its string widget states."""
    editor = "$$ID-4f1c2a-None-projects.7.milestones"
    edit = _rerun(
        [
            {"id": "$$ID-aa01-None-projects.7.priority", "int_value": -5},
            {"id": "$$ID-aa02-None-projects.7.budget", "double_value": 2.5},
            {"id": "$$ID-aa03-None-projects.7.done", "bool_value": True},
            {"id": "$$ID-aa04-None-save", "trigger_value": True},
            {"id": "$$ID-aa05-None-ballast_nav", "json_value": '{"nav": "home"}'},
            {"id": editor, "string_value": EDIT_STATE},
            {"id": "$$ID-aa06-None-projects.7.notes", "string_value": "nul\x00 ok"},
            {"id": "$$ID-aa07-None-projects.7.name", "string_value": ""},
        ],
        query_string="page=projects&id=7",
        page_script_hash="e3b0c44298fc1c149afbf4c8996fb924",
        page_name="projects",
        fragment_id="frag-1",
        is_auto_rerun=False,
    )
    heartbeat = BackMsg()
    heartbeat.app_heartbeat = True
    cases = [
        {
            "name": "a rerun after a data-editor edit, among other widget states",
            "message": edit,
            "string_states": [
                [editor, EDIT_STATE],
                ["$$ID-aa06-None-projects.7.notes", "nul\x00 ok"],
                ["$$ID-aa07-None-projects.7.name", ""],
            ],
        },
        {
            "name": "a rerun without widget states",
            "message": _rerun([], query_string="page=home"),
            "string_states": [],
        },
        {"name": "a heartbeat", "message": heartbeat, "string_states": []},
        {
            "name": "a long edit state (multi-byte lengths)",
            "message": _rerun([{"id": editor, "string_value": "x" * 300}]),
            "string_states": [[editor, "x" * 300]],
        },
    ]
    return [
        {
            "name": c["name"],
            "b64": base64.b64encode(c["message"].SerializeToString()).decode(),
            "string_states": c["string_states"],
        }
        for c in cases
    ]


def test_recorded_backmsgs_are_what_this_streamlit_sends() -> None:
    recorded = json.loads(BACKMSG_CASES.read_text(encoding="utf-8"))["cases"]
    assert recorded == backmsg_cases(), (
        "Streamlit encodes these BackMsgs differently now: check the field numbers in "
        "ballast_ui/frontend/lib/backmsg.js, then rewrite backmsg_cases.json from "
        "tests.ui.test_frontend_node.backmsg_cases()"
    )


def test_node_unit_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: make install (Debian's npm brings it)")
    files = sorted(str(p) for p in TESTS.glob("*.test.js"))
    assert files, f"no *.test.js in {TESTS}"
    # Files, not the directory: node 18/20 search a directory, node 22 takes globs.
    run = subprocess.run(
        [node, "--test", "--test-reporter=spec", *files],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    ran = re.search(r"\btests (\d+)", run.stdout)
    assert ran, run.stdout[-2000:]
    assert int(ran.group(1)) > 0, run.stdout[-2000:]


FRONTEND = ROOT / "services/ui/src/ballast_ui/frontend"
# In Streamlit's DataFrame element: `{debouncedCallback:m,flush:h,cancel:g}=rn(p,150)`.
EDIT_DEBOUNCE = re.compile(
    r"\{debouncedCallback:[\w$]+,flush:[\w$]+,cancel:[\w$]+\}=[\w$]+\([\w$]+,(\d+)\)"
)


def test_the_data_editor_still_sends_edits_after_the_delay_the_journal_expects() -> (
    None
):
    """lib/edit_timers.js sends, as the page goes, an edit still waiting in timers of
    at most this delay: a Streamlit that waits longer would lose edits on a refresh
    again, so it fails here first."""
    import streamlit

    chunks = list(
        (Path(streamlit.__file__).parent / "static/static/js").glob("DataFrame.*.js")
    )
    assert len(chunks) == 1, chunks
    delays = EDIT_DEBOUNCE.findall(chunks[0].read_text(encoding="utf-8"))
    ours = re.search(
        r"export const EDIT_SYNC_MS = (\d+);",
        (FRONTEND / "lib/edit_timers.js").read_text(encoding="utf-8"),
    )
    assert ours is not None
    assert delays == [ours.group(1)], delays


# In glide-data-grid's overlay editor (Streamlit's data-grid-overlay-editor chunk), each
# keydown ends with `window.setTimeout(()=>{!I.current&&L.current!==void 0&&(P(t?k:void
# 0,L.current),I.current=!0)},0)`: the key's own timer commits its value (t: Enter/Tab)
# or nothing, once any key set the move ref L.
KEY_TIMER_COMMIT = re.compile(
    r"window\.setTimeout\(\(\)=>\{![\w$]+\.current&&([\w$]+)\.current!==void 0&&"
    r"\([\w$]+\([\w$]+\?[\w$]+:void 0,\1\.current\)"
)


def test_the_cell_editor_still_commits_in_a_timer_per_key() -> None:
    """lib/grid_keys.js holds Enter and Tab back one timer turn because the cell
    editor commits in a timer each key sets, and a character's timer that runs after
    Enter commits nothing. A Streamlit whose editor decides otherwise needs that
    looked at again, so it fails here first."""
    import streamlit

    chunks = list(
        (Path(streamlit.__file__).parent / "static/static/js").glob(
            "data-grid-overlay-editor.*.js"
        )
    )
    assert len(chunks) == 1, chunks
    found = KEY_TIMER_COMMIT.findall(chunks[0].read_text(encoding="utf-8"))
    assert len(found) == 1, found
