"""Parsing uploaded files (CSV, Excel, JSON, Parquet) into a table, with clear errors.

Every failure is an `ImportFailure` whose message says what is wrong with the file and
what to do; the caller keeps nothing of a failed import.
"""

from __future__ import annotations

import codecs
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from openpyxl import load_workbook  # type: ignore[import-untyped]

from ballast_common.config import DatasetConfig
from ballast_jobs.runtime import JobFailure

FORMATS = ("csv", "excel", "json", "parquet")
_CSV_CHUNK_ROWS = 50_000
Progress = Callable[[float], None]


class ImportFailure(JobFailure):
    """The file cannot be imported; the message tells the user why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_file")


@dataclass(frozen=True)
class Parsed:
    frame: pd.DataFrame

    @property
    def columns(self) -> list[dict[str, str]]:
        return [{"name": str(c), "dtype": str(t)} for c, t in self.frame.dtypes.items()]

    def preview(self, rows: int) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(
            self.frame.head(rows).to_json(orient="records", date_format="iso")
        )
        return data


def _check_utf8(path: Path, progress: Progress, share: float) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    total = max(1, path.stat().st_size)
    offset = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                raise ImportFailure(
                    f"the file is not UTF-8 text (byte 0x{chunk[exc.start]:02x} at "
                    f"position {at}); save it as UTF-8 (e.g. 'CSV UTF-8' in Excel) and "
                    "upload it again"
                ) from None
            offset += len(chunk)
            progress(share * offset / total)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ImportFailure(
                "the file is not UTF-8 text (it ends inside a character); save it as "
                "UTF-8 and upload it again"
            ) from None


def _csv(path: Path, limits: DatasetConfig, progress: Progress) -> pd.DataFrame:
    _check_utf8(path, progress, 0.3)
    total = max(1, path.stat().st_size)
    frames: list[pd.DataFrame] = []
    rows = 0
    try:
        with path.open("rb") as fh:
            reader = pd.read_csv(
                fh, encoding="utf-8-sig", chunksize=_CSV_CHUNK_ROWS, low_memory=False
            )
            for chunk in reader:
                frames.append(chunk)
                rows += len(chunk)
                _check_rows(rows, limits)
                progress(0.3 + 0.6 * min(1.0, fh.tell() / total))
    except pd.errors.EmptyDataError:
        raise ImportFailure("the file has no columns (it is empty or blank)") from None
    except pd.errors.ParserError as exc:
        raise ImportFailure(f"the CSV is malformed: {exc}".strip()) from None
    if not frames:
        raise ImportFailure("the file has a header but no rows")
    return pd.concat(frames, ignore_index=True)


def _excel(path: Path, limits: DatasetConfig, progress: Progress) -> pd.DataFrame:
    if not zipfile.is_zipfile(path):
        raise ImportFailure(
            "the file is not an Excel workbook (.xlsx); old .xls files must be saved "
            "as .xlsx first"
        )
    # Bytes, not the path or file: openpyxl judges those by their file name extension.
    try:
        book = load_workbook(
            io.BytesIO(path.read_bytes()), read_only=True, data_only=True
        )
    except Exception as exc:
        raise ImportFailure(
            f"the Excel workbook is corrupt or unreadable: {exc}"
        ) from None
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise ImportFailure("the workbook has no sheets")
        total = max(1, sheet.max_row or 1)
        rows_iter = sheet.iter_rows(values_only=True)
        header = next(rows_iter, None)
        if header is None or all(h is None for h in header):
            raise ImportFailure("the first sheet is empty")
        names = [
            str(h) if h is not None else f"column_{i + 1}" for i, h in enumerate(header)
        ]
        body: list[tuple[Any, ...]] = []
        for i, row in enumerate(rows_iter, start=1):
            body.append(row)
            if i % 5000 == 0:
                _check_rows(i, limits)
                progress(0.9 * i / total)
        _check_rows(len(body), limits)
    finally:
        book.close()
    if not body:
        raise ImportFailure("the first sheet has a header but no rows")
    return pd.DataFrame.from_records(body, columns=names)


def _json(path: Path, limits: DatasetConfig, progress: Progress) -> pd.DataFrame:
    _check_utf8(path, progress, 0.3)
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.strip()
    if not stripped:
        raise ImportFailure("the file is empty")
    try:
        if stripped.startswith("["):
            data = json.loads(stripped)
        else:  # JSON Lines: one object per line
            data = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ImportFailure(
            f"the file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "expected an array of objects or one object per line"
        ) from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ImportFailure("expected an array of objects (one object per row)")
    _check_rows(len(data), limits)
    progress(0.8)
    if not data:
        raise ImportFailure("the JSON array is empty")
    return pd.json_normalize(data, max_level=0)


def _parquet(path: Path, limits: DatasetConfig, progress: Progress) -> pd.DataFrame:
    try:
        handle = pq.ParquetFile(path)
        _check_rows(handle.metadata.num_rows, limits)
        batches = []
        groups = max(1, handle.num_row_groups)
        for i in range(handle.num_row_groups):
            batches.append(handle.read_row_group(i))
            progress(0.9 * (i + 1) / groups)
        table = (
            pa.concat_tables(batches) if batches else handle.schema_arrow.empty_table()
        )
    except (pa.ArrowException, OSError) as exc:
        raise ImportFailure(
            f"the Parquet file is corrupt or unreadable: {exc}"
        ) from None
    return table.to_pandas()


_PARSERS: dict[str, Callable[[Path, DatasetConfig, Progress], pd.DataFrame]] = {
    "csv": _csv,
    "excel": _excel,
    "json": _json,
    "parquet": _parquet,
}


def _check_rows(rows: int, limits: DatasetConfig) -> None:
    if rows > limits.max_rows:
        raise ImportFailure(
            f"the file is too large: more than {limits.max_rows:,} rows (the configured "
            "limit); split it or ask an operator to raise datasets.max_rows"
        )


def parse(path: Path, fmt: str, limits: DatasetConfig, progress: Progress) -> Parsed:
    """Parse `path` as `fmt` into a table.

    Raises:
        ImportFailure: wrong type, corrupt, wrong encoding, too large, empty.
    """
    if fmt not in _PARSERS:
        raise ImportFailure(
            f"unsupported format {fmt!r}; use one of {', '.join(FORMATS)}"
        )
    size = path.stat().st_size
    if size == 0:
        raise ImportFailure("the file is empty")
    if size > limits.max_upload_mb * 1024 * 1024:
        raise ImportFailure(
            f"the file is too large ({size / 1e6:.1f} MB; the limit is "
            f"{limits.max_upload_mb:g} MB)"
        )
    frame = _PARSERS[fmt](path, limits, progress)
    if frame.shape[1] == 0:
        raise ImportFailure("the file has no columns")
    if frame.shape[0] == 0:
        raise ImportFailure("the file has a header but no rows")
    if frame.shape[1] > limits.max_columns:
        raise ImportFailure(
            f"the file has {frame.shape[1]:,} columns; the limit is {limits.max_columns:,}"
        )
    # Column names become strings (Parquet and the preview need them unique text).
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise ImportFailure("column names must be unique")
    frame.columns = pd.Index(names)
    # Mixed-type object columns cannot be stored in Parquet as-is: keep them as text.
    for name in names:
        if frame[name].dtype == object:
            kinds = {type(v) for v in frame[name].dropna()}
            if len(kinds) > 1:
                frame[name] = frame[name].map(lambda v: None if v is None else str(v))
    return Parsed(frame)


def write_parquet(parsed: Parsed, target: Path) -> None:
    try:
        parsed.frame.to_parquet(target, index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ImportFailure(f"the data cannot be stored: {exc}") from None
