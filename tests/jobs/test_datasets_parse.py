"""Parsing every supported format, and every kind of broken file, with clear errors."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import openpyxl  # type: ignore[import-untyped]
import pandas as pd  # type: ignore[import-untyped]
import pytest

from ballast_common.config import DatasetConfig
from ballast_jobs.datasets import Imported, ImportFailure, import_file

LIMITS = DatasetConfig()
ROWS = [{"city": "Oslo", "temp": 4.5, "n": 1}, {"city": "Rome", "temp": 18.0, "n": 2}]


def frame() -> pd.DataFrame:
    return pd.DataFrame(ROWS)


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def parse(
    path: Path, fmt: str, limits: DatasetConfig, progress: Callable[[float], None]
) -> tuple[Imported, pd.DataFrame]:
    """Import `path` next to itself; the result and the table as written."""
    out = path.with_name(path.name + ".out.parquet")
    imported = import_file(path, fmt, limits, out, progress)
    return imported, pd.read_parquet(out)


def parquet_bytes() -> bytes:
    buf = io.BytesIO()
    frame().to_parquet(buf, index=False)
    return buf.getvalue()


GOOD = {
    "csv": lambda: "\ufeffcity,temp,n\nOslo,4.5,1\nRome,18.0,2\n".encode(),
    "excel": lambda: xlsx_bytes(
        [["city", "temp", "n"], ["Oslo", 4.5, 1], ["Rome", 18.0, 2]]
    ),
    "json": lambda: json.dumps(ROWS).encode(),
    "parquet": parquet_bytes,
}


@pytest.mark.parametrize("fmt", sorted(GOOD))
def test_every_format_parses_to_the_same_table(tmp_path: Path, fmt: str) -> None:
    seen: list[float] = []
    imported, table = parse(
        write(tmp_path, f"f.{fmt}", GOOD[fmt]()), fmt, LIMITS, seen.append
    )
    assert list(table.columns) == ["city", "temp", "n"]
    assert table["temp"].tolist() == [4.5, 18.0]
    assert imported.rows == 2
    assert imported.preview[0] == {"city": "Oslo", "temp": 4.5, "n": 1}
    assert [c["name"] for c in imported.columns] == ["city", "temp", "n"]
    assert all(0 <= f <= 1 for f in seen)
    assert table.shape == (2, 3)


def test_json_lines_parse(tmp_path: Path) -> None:
    data = "\n".join(json.dumps(r) for r in ROWS).encode()
    assert parse(write(tmp_path, "f.jsonl", data), "json", LIMITS, print)[1].shape == (
        2,
        3,
    )


def test_large_csv_reports_progress(tmp_path: Path) -> None:
    body = "a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(120_000))
    seen: list[float] = []
    imported, table = parse(
        write(tmp_path, "big.csv", body.encode()), "csv", LIMITS, seen.append
    )
    assert imported.rows == 120_000
    assert table.shape == (120_000, 2)
    assert len(seen) > 3
    assert seen == sorted(seen)


BAD = [
    ("csv", b"", "empty"),
    ("csv", "a,b\n1,\xe9t\xe9\n".encode("latin-1"), "not UTF-8"),
    ("csv", b"a,b\n", "header but no rows"),
    ("csv", b'a,b\n1,"unterminated\n', "malformed"),
    ("csv", b"\n\n", "no columns"),
    ("excel", b"this is not a workbook", "not an Excel workbook"),
    ("excel", b"PK\x03\x04" + b"\x00" * 100, "not an Excel workbook"),
    ("json", b"{not json", "not valid JSON"),
    ("json", b'"just a string"', "array of objects"),
    ("json", b"[1, 2, 3]", "array of objects"),
    ("json", b"[]", "empty"),
    ("json", b"   ", "empty"),
    ("parquet", b"PAR1garbagePAR1", "corrupt"),
    ("parquet", b"definitely not parquet", "corrupt"),
    ("xml", b"<a/>", "unsupported format"),
]


@pytest.mark.parametrize(("fmt", "data", "message"), BAD)
def test_broken_files_fail_with_a_clear_message(
    tmp_path: Path, fmt: str, data: bytes, message: str
) -> None:
    with pytest.raises(ImportFailure, match=message) as err:
        parse(write(tmp_path, "bad", data), fmt, LIMITS, print)
    assert err.value.code == "bad_file"
    assert "upload it again" in err.value.action or "Fix the file" in err.value.action


def test_truncated_excel_and_empty_sheet(tmp_path: Path) -> None:
    whole = GOOD["excel"]()
    with pytest.raises(ImportFailure, match=r"not an Excel|corrupt"):
        parse(
            write(tmp_path, "cut.xlsx", whole[: len(whole) // 2]),
            "excel",
            LIMITS,
            print,
        )
    with pytest.raises(ImportFailure, match="empty"):
        parse(write(tmp_path, "empty.xlsx", xlsx_bytes([])), "excel", LIMITS, print)


def test_limits_are_enforced(tmp_path: Path) -> None:
    small = DatasetConfig(
        max_rows=1, max_columns=2, max_upload_mb=0.0001, max_direct_upload_mb=0.0001
    )
    csv = write(tmp_path, "f.csv", GOOD["csv"]())
    with pytest.raises(ImportFailure, match="too large"):
        parse(csv, "csv", small, print)
    with pytest.raises(ImportFailure, match="more than 1 rows"):
        parse(csv, "csv", DatasetConfig(max_rows=1), print)
    with pytest.raises(ImportFailure, match="3 columns"):
        parse(csv, "csv", DatasetConfig(max_columns=2), print)
