"""Dataset and job-result exports: CSV, Parquet and Excel round trips with awkward
values, formula neutralisation, access, the Excel row limit, and bounded memory."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ballast_api.exports import writers
from ballast_common.db import run_tx
from ballast_common.models import Dataset, Job, JobResult, User, utcnow
from ballast_common.storage import open_store
from tests.api.conftest import Api, open_session

FORMULA = "=cmd|' /C calc'!A0"
TEXT = [
    "plain",
    "with\x00nul",
    "ünïcødé 😀 中文",
    FORMULA,
    "+1",
    "-2",
    "@SUM(A1)",
    'line\r\nbreak, "quoted"',
    None,
    "_x0041_ literal",
]
INTS = [2**63 - 1, -(2**63), 0, 2**53 + 1, None, 1, -1, 42, 10**15, 7]
FLOATS = [1.5, -0.25, 1e300, None, 3.0, 0.1, -1e-300, 2.5, 1e15, 6.0]
DAYS = [date(1970, 1, 1), date(2026, 12, 31), None, date(9999, 12, 31)] + [
    date(2000, 2, 29)
] * 6
STAMPS = [datetime(2026, 3, 29, 1, 30, 15, tzinfo=UTC), None] + [
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)
] * 8
FLAGS = [True, False, None] + [True] * 7


def awkward() -> pa.Table:
    return pa.table(
        {
            "text": pa.array(TEXT, pa.string()),
            "=header": pa.array(INTS, pa.int64()),
            "amount": pa.array(FLOATS, pa.float64()),
            "day": pa.array(DAYS, pa.date32()),
            "at": pa.array(STAMPS, pa.timestamp("us", tz="UTC")),
            "flag": pa.array(FLAGS, pa.bool_()),
        }
    )


def add_dataset(
    api: Api,
    table: pa.Table | Path,
    name: str = 'Q3 ünï/../"report"\r\n',
    status: str = "READY",
    **extra: Any,
) -> uuid.UUID:
    dataset_id = uuid.uuid4()
    key = f"datasets/{dataset_id}/data.parquet"
    store = open_store(api.config)
    if isinstance(table, Path):
        with table.open("rb") as fh:
            store.put(key, fh)
        rows = pq.ParquetFile(table).metadata.num_rows
    else:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        sink.seek(0)
        store.put(key, sink)
        rows = table.num_rows

    def create(uow: Any) -> None:
        # The viewer's own dataset (in no project), unless the caller says otherwise.
        viewer = uow.session.query(User).filter_by(username="viewer").one()
        uow.repo(Dataset).create(
            id=dataset_id,
            name=name,
            format="parquet",
            status=status,
            source_key=key,
            data_key=key,
            row_count=rows,
            **{"created_by": viewer.id, **extra},
        )

    run_tx(create, db=api.db)
    return dataset_id


def get(api: Api, path: str, user: str = "viewer") -> Any:
    return api.client.get(path, headers=api.h(user))


def expected_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return writers.neutralise(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    return str(v)


_XSTRING = re.compile(r"_x([0-9A-Fa-f]{4})_")


def excel_text(value: str) -> str:
    """Decode the ECMA-376 ``_xHHHH_`` escapes (as Excel reads the cell)."""
    return _XSTRING.sub(lambda m: chr(int(m.group(1), 16)), value)


def expected_excel(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return v if abs(v) <= writers.EXACT_INT else str(v)
    if isinstance(v, str):
        return writers.neutralise(v)
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    return v


def test_three_formats_round_trip_awkward_values(api: Api) -> None:
    table = awkward()
    dataset_id = add_dataset(api, table)

    parquet = get(api, f"/v1/datasets/{dataset_id}/export?format=parquet")
    assert parquet.status_code == 200, parquet.text
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert pq.read_table(io.BytesIO(parquet.content)).equals(table)

    r = get(api, f"/v1/datasets/{dataset_id}/export?format=csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="Q3 _')
    assert disposition.endswith("%22report%22.csv") is False
    assert "\r" not in disposition
    assert "\n" not in disposition
    assert "/" not in disposition.split("filename*=")[0]
    assert "filename*=UTF-8''Q3%20%C3%BCn%C3%AF" in disposition
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["text", "'=header", "amount", "day", "at", "flag"]
    columns = table.to_pydict()
    expected = [
        [expected_text(columns[c][i]) for c in table.column_names]
        for i in range(table.num_rows)
    ]
    assert rows[1:] == expected
    assert rows[4][0] == "'" + FORMULA
    assert rows[2][0] == "with\x00nul"

    x = get(api, f"/v1/datasets/{dataset_id}/export?format=xlsx")
    assert x.status_code == 200, x.text
    assert x.headers["content-type"] == writers.CONTENT_TYPES["xlsx"]
    assert x.headers["content-disposition"].endswith(".xlsx")
    book = openpyxl.load_workbook(io.BytesIO(x.content), read_only=True)
    got = [
        [excel_text(v) if isinstance(v, str) else v for v in row]
        for row in book["data"].iter_rows(values_only=True)
    ]
    assert got[0] == ["text", "'=header", "amount", "day", "at", "flag"]
    want = [
        [expected_excel(columns[c][i]) for c in table.column_names]
        for i in range(table.num_rows)
    ]
    assert got[1:] == want
    # The formula-like cell is text, not a formula.
    sheet = book["data"]
    assert sheet.cell(row=5, column=1).data_type == "s"


def test_a_result_exports_too(api: Api) -> None:
    def add(uow: Any) -> uuid.UUID:
        editor = uow.session.query(User).filter_by(username="editor").one()
        job = uow.repo(Job).create(
            name="analysis.bootstrap",
            status="COMPLETED",
            created_by=editor.id,
            kwargs={},
            completed_at=utcnow(),
        )
        uow.session.add(
            JobResult(
                job_id=job.id,
                data={
                    "dataset_id": "d",
                    "mode": "fast",
                    "columns": {
                        "=x": {"estimate": 1.5, "low": 1.0, "high": 2.0},
                        "y": {"estimate": -3.0, "low": -4.0, "high": -2.0},
                    },
                },
            )
        )
        return job.id

    job_id = run_tx(add, db=api.db)
    r = get(api, f"/v1/jobs/{job_id}/result/export?format=csv", "editor")
    assert r.status_code == 200, r.text
    # (PostgreSQL's jsonb keeps keys in its own order: compare by name.)
    rows = sorted(
        csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))),
        key=lambda row: row["column"],
    )
    assert rows[0] == {
        "column": "'=x",
        "estimate": "1.5",
        "low": "1.0",
        "high": "2.0",
        "dataset_id": "d",
        "mode": "fast",
    }
    assert rows[1]["column"] == "y"
    for fmt in ("xlsx", "parquet"):
        assert get(api, f"/v1/jobs/{job_id}/result/export?format={fmt}", "editor")
    parquet = get(api, f"/v1/jobs/{job_id}/result/export?format=parquet", "editor")
    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 2
    # Another user's job is not there for them; an admin may read it.
    assert get(api, f"/v1/jobs/{job_id}/result/export", "viewer").status_code == 404
    assert get(api, f"/v1/jobs/{job_id}/result/export", "admin").status_code == 200


def test_access_and_state(api: Api) -> None:
    ready = add_dataset(api, awkward())
    pending = add_dataset(api, awkward(), status="IMPORTING")
    deleted = add_dataset(api, awkward())
    run_tx(lambda uow: uow.repo(Dataset).delete(deleted), db=api.db)
    assert get(api, f"/v1/datasets/{uuid.uuid4()}/export").status_code == 404
    assert get(api, f"/v1/datasets/{deleted}/export").status_code == 404
    assert get(api, f"/v1/datasets/{pending}/export").status_code == 409
    assert get(api, f"/v1/datasets/{ready}/export?format=exe").status_code == 422
    assert get(api, "/v1/datasets/not-a-uuid/export").status_code == 422
    assert api.client.get(f"/v1/datasets/{ready}/export").status_code == 401
    # Someone else's dataset in no project is not there for another user.
    assert get(api, f"/v1/datasets/{ready}/export", "editor").status_code == 404
    assert get(api, f"/v1/datasets/{ready}/export", "admin").status_code == 200

    # A user whose roles give no datasets:read.
    run_tx(
        lambda uow: uow.session.add(User(username="nobody", password_hash="x")),
        db=api.db,
    )
    token = open_session(api.db, api.config, "nobody")
    denied = api.client.get(
        f"/v1/datasets/{ready}/export",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert denied.status_code == 403


def test_excel_row_limit_is_refused_clearly(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "tall.parquet"
    pq.write_table(
        pa.table({"n": pa.array([1] * (writers.EXCEL_MAX_ROWS + 1), pa.int8())}), path
    )
    dataset_id = add_dataset(api, path, name="tall")
    r = get(api, f"/v1/datasets/{dataset_id}/export?format=xlsx")
    assert r.status_code == 422
    assert "1,048,575" in r.json()["message"]
    assert "CSV or Parquet" in r.json()["message"]


MEASURE = r"""
import json, sys
from ballast_api.exports import writers

def peak():
    # The high-water mark of this process's resident memory (getrusage's ru_maxrss
    # would carry the forking parent's over the exec).
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

path, fmt = sys.argv[1], sys.argv[2]
schema, rows, batches = writers.parquet_batches(path)
marks = {}
warm_at = max(1, min(10, rows // writers.BATCH_ROWS // 4))

def all_batches():
    # The first batches warm up (allocator arenas, imports); growth is counted after.
    for i, batch in enumerate(batches):
        if i == warm_at:
            marks["warm"] = peak()
        yield batch

out = 0
if fmt == "csv":
    for chunk in writers.csv_chunks(schema, all_batches()):
        out += len(chunk)
else:
    with writers.xlsx_file(schema, all_batches()) as fh:
        out = fh.seek(0, 2)
print(json.dumps({"growth": peak() - marks["warm"], "out": out, "rows": rows}))
"""


# The allocator's own growth after the warm-up is a few MiB whatever the size (8 MiB
# seen on a 13 MB file of 500,000 rows, over the bound): the file is large enough for
# that to stay well under half of it.
@pytest.mark.parametrize(("fmt", "rows"), [("csv", 1_500_000), ("xlsx", 40_000)])
def test_memory_stays_bounded_on_a_large_dataset(
    fmt: str, rows: int, tmp_path: Path
) -> None:
    """The writers hold one batch at a time: peak RSS grows far less than the table."""
    path = tmp_path / "large.parquet"
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "value": pa.array(rng.standard_normal(rows)),
            "label": pa.array(
                [f"label-{i:09d}-{i * 7919 % 10007}" for i in range(rows)]
            ),
        }
    )
    pq.write_table(table, path, row_group_size=50_000)
    in_memory = table.nbytes
    del table
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), fmt],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == rows
    size = path.stat().st_size
    # After the warm-up, memory grows by a fraction of the file (reading it whole
    # would grow by several times its size).
    if fmt == "csv":
        assert result["growth"] < size / 2, (result, size, in_memory)
    else:
        # XlsxWriter's constant_memory mode: a few MiB whatever the row count (Excel
        # is too slow to write a file large enough for a ratio in a unit test).
        assert result["growth"] < 8 << 20, (result, size, in_memory)
