"""Streamed exports of a table (a stored Parquet file, or rows in memory) as CSV, Parquet
or Excel, in bounded memory.

- **Parquet**: the stored file's bytes, as they are (exact types and values).
- **CSV**: UTF-8 with a byte-order mark (so Excel reads it as UTF-8), RFC 4180 quoting,
  written one record batch at a time. Nulls are empty fields, timestamps ISO 8601,
  booleans ``true``/``false``, nested values JSON.
- **Excel** (.xlsx): XlsxWriter in ``constant_memory`` mode (each row goes to a temporary
  file as it is written; the workbook is zipped at the end and streamed from disk).
  Strings are always text cells (never formulas), control characters are escaped the
  way Excel reads them (``_x0000_``), integers beyond 2**53 are written as text (Excel
  keeps 15 digits), time zones become UTC. A sheet holds at most 1,048,575 data rows:
  a longer table is refused up front (use CSV or Parquet).

CSV and Excel neutralise formula injection (OWASP "CSV injection"): a text cell starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe, so
a spreadsheet shows it as text instead of running it. Parquet is exported unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import IO, Any, Literal
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter

ExportFormat = Literal["csv", "parquet", "xlsx"]
CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# Rows per record batch read from Parquet (bounded memory whatever the file size).
BATCH_ROWS = 8192
# Bytes per chunk of a streamed file.
CHUNK = 1 << 16
# Excel's sheet limit is 1,048,576 rows; one is the header.
EXCEL_MAX_ROWS = 1_048_575
EXCEL_MAX_COLUMNS = 16_384
# Excel keeps 15 significant digits: larger integers are exported as text.
EXACT_INT = 2**53
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """The text, with a leading apostrophe if a spreadsheet could read it as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def safe_filename(name: str, ext: str) -> tuple[str, str]:
    """An ASCII filename and its RFC 5987 UTF-8 form for Content-Disposition.

    Path separators, quotes, control characters and anything outside a small ASCII set
    become ``_`` in the ASCII form; the UTF-8 form keeps letters of any script.
    """
    cleaned = (
        "".join(
            "_" if unicodedata.category(c)[0] == "C" or c in "/\\\"'<>:|?*;%" else c
            for c in name
        ).strip(" ._")
        or "export"
    )
    cleaned = cleaned[:100]
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]+", "_", cleaned).strip(" ._") or "export"
    return f"{ascii_name}.{ext}", f"{cleaned}.{ext}"


def content_disposition(name: str, ext: str) -> str:
    ascii_name, utf8_name = safe_filename(name, ext)
    return (
        f'attachment; filename="{ascii_name}"; '
        f"filename*=UTF-8''{quote(utf8_name, safe='')}"
    )


# --------------------------------------------------------------------------- values


def _text(value: Any) -> str:
    """One CSV field."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value.total_seconds())
    if isinstance(value, bytes):
        return value.hex()
    return neutralise(json.dumps(value, default=str, ensure_ascii=False))


def _columns(batch: pa.RecordBatch) -> list[list[Any]]:
    return [column.to_pylist() for column in batch.columns]


# --------------------------------------------------------------------------- CSV


def csv_chunks(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """The table as CSV, one chunk of bytes per record batch."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([neutralise(str(name)) for name in schema.names])
    yield ("\ufeff" + buf.getvalue()).encode("utf-8")
    for batch in batches:
        buf.seek(0)
        buf.truncate()
        writer.writerows(
            [_text(v) for v in row] for row in zip(*_columns(batch), strict=True)
        )
        yield buf.getvalue().encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------- Excel


def check_excel_size(rows: int, columns: int) -> str | None:
    """Why a table does not fit one sheet, or None."""
    if rows > EXCEL_MAX_ROWS:
        return (
            f"the table has {rows:,} rows; an Excel sheet holds at most "
            f"{EXCEL_MAX_ROWS:,} (export CSV or Parquet instead)"
        )
    if columns > EXCEL_MAX_COLUMNS:
        return (
            f"the table has {columns:,} columns; an Excel sheet holds at most "
            f"{EXCEL_MAX_COLUMNS:,} (export CSV or Parquet instead)"
        )
    return None


def _cell(sheet: Any, row: int, col: int, value: Any, formats: dict[str, Any]) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif (isinstance(value, int) and abs(value) <= EXACT_INT) or (
        isinstance(value, float) and math.isfinite(value)
    ):
        sheet.write_number(row, col, value)
    elif isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        sheet.write_datetime(row, col, value, formats["datetime"])
    elif isinstance(value, date):
        sheet.write_datetime(row, col, value, formats["date"])
    else:
        sheet.write_string(row, col, _text(value))


def xlsx_file(
    schema: pa.Schema, batches: Iterable[pa.RecordBatch], sheet: str = "data"
) -> IO[bytes]:
    """The table as an .xlsx workbook in a temporary file (rewound; close it after use).

    The caller checks `check_excel_size` first.
    """
    out = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller
    try:
        book = xlsxwriter.Workbook(
            out,
            {
                # Rows are flushed to a temporary file as they are written.
                "constant_memory": True,
                # Never turn text into formulas, links or numbers.
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
                "remove_timezone": True,
            },
        )
        formats = {
            "datetime": book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
            "date": book.add_format({"num_format": "yyyy-mm-dd"}),
        }
        ws = book.add_worksheet(sheet[:31])
        for col, name in enumerate(schema.names):
            ws.write_string(0, col, neutralise(str(name)))
        row = 1
        for batch in batches:
            for values in zip(*_columns(batch), strict=True):
                for col, value in enumerate(values):
                    _cell(ws, row, col, value, formats)
                row += 1
        book.close()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


def file_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    """The rest of `fh` in chunks, closing it at the end (or when the client leaves)."""
    try:
        while chunk := fh.read(CHUNK):
            yield chunk
    finally:
        fh.close()


# --------------------------------------------------------------------------- sources


def parquet_batches(source: Any) -> tuple[pa.Schema, int, Iterator[pa.RecordBatch]]:
    """Schema, row count and record batches of a Parquet file (path or seekable file)."""
    # pre_buffer=False and a read buffer: otherwise pyarrow keeps the column chunks it
    # has read (the whole file by the end), not one batch at a time.
    handle = pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20)
    return (
        handle.schema_arrow,
        handle.metadata.num_rows,
        handle.iter_batches(batch_size=BATCH_ROWS, use_threads=False),
    )


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """A small table from JSON-like rows (nested values as JSON text)."""
    names: list[str] = []
    for r in rows:
        names.extend(k for k in r if k not in names)
    flat = [
        {
            k: (
                json.dumps(r.get(k), default=str)
                if isinstance(r.get(k), (dict, list))
                else r.get(k)
            )
            for k in names
        }
        for r in rows
    ]
    if not flat:
        return pa.table({})
    try:
        return pa.Table.from_pylist(flat)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types in a column: text for all (a result table is small).
        return pa.Table.from_pylist(
            [{k: None if v is None else str(v) for k, v in r.items()} for r in flat]
        )
