"""Importing uploaded files (CSV, Excel, JSON, Parquet) into a Parquet table, with clear
errors and bounded memory.

Every format is read in chunks of about ``datasets.chunk_mb`` of table; each chunk is
written to Parquet as one row group (pyarrow ``ParquetWriter``) before the next one is
read, so the worker's memory does not grow with the file. Column types are inferred per
chunk; when a later chunk needs a wider type (an integer column meets a fraction or a
word, a new JSON key appears), the chunks written so far are rewritten once, row group by
row group, with the unified types.

Excel workbooks are zip archives: their declared sizes and compression ratios are checked
before anything is unpacked, and every member is counted again while it is read (headers
can lie), so a zip bomb fails in milliseconds with a clear message.

Every failure is an `ImportFailure` whose message says what is wrong with the file and
what to do; the caller keeps nothing of a failed import.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from openpyxl.reader.excel import ExcelReader

from ballast_common.config import DatasetConfig
from ballast_jobs.runtime import JobFailure

FORMATS = ("csv", "excel", "json", "parquet")
Progress = Callable[[float], None]
Chunks = Iterator["pd.DataFrame | pa.Table"]

# Rows of the first chunk (later chunks are sized from the memory the first one took).
_FIRST_ROWS = 1_000
_MIN_ROWS, _MAX_ROWS = 100, 2_000_000
# Zip members smaller than this are not judged by their compression ratio (tiny XML
# parts of a workbook legitimately compress very well).
_RATIO_FLOOR = 1 << 20
_BLOCK = 1 << 20
# Python objects parsed from JSON take about this many times the bytes of their text.
_JSON_INFLATION = 8


class ImportFailure(JobFailure):
    """The file cannot be imported; the message tells the user why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_file")


@dataclass(frozen=True)
class Imported:
    """What an import wrote: the row count, the columns and the first rows."""

    rows: int
    columns: list[dict[str, str]]
    preview: list[dict[str, Any]]


# --------------------------------------------------------------------------- helpers


def _check_rows(rows: int, limits: DatasetConfig) -> None:
    if rows > limits.max_rows:
        raise ImportFailure(
            f"the file is too large: more than {limits.max_rows:,} rows (the configured "
            "limit); split it or ask an operator to raise datasets.max_rows"
        )


class _Sizer:
    """Rows per chunk so that a chunk takes about `chunk_bytes` of memory."""

    def __init__(self, chunk_bytes: int) -> None:
        self.chunk_bytes = chunk_bytes
        self.rows = _FIRST_ROWS

    def seen(self, frame: pd.DataFrame | pa.Table) -> None:
        n = len(frame)
        if n == 0:
            return
        if isinstance(frame, pa.Table):
            size = frame.nbytes
        else:
            size = int(frame.memory_usage(index=False, deep=True).sum())
        per_row = max(1.0, size / n)
        self.rows = int(min(_MAX_ROWS, max(_MIN_ROWS, self.chunk_bytes / per_row)))


def _check_utf8(path: Path, progress: Progress, share: float) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    total = max(1, path.stat().st_size)
    offset = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_BLOCK):
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


# --------------------------------------------------------------------------- CSV


def _csv(path: Path, _: DatasetConfig, progress: Progress, sizer: _Sizer) -> Chunks:
    _check_utf8(path, progress, 0.3)
    total = max(1, path.stat().st_size)
    with path.open("rb") as fh:
        try:
            reader = pd.read_csv(
                fh, encoding="utf-8-sig", iterator=True, low_memory=False
            )
        except pd.errors.EmptyDataError:
            raise ImportFailure(
                "the file has no columns (it is empty or blank)"
            ) from None
        except pd.errors.ParserError as exc:
            raise ImportFailure(f"the CSV is malformed: {exc}".strip()) from None
        with reader:
            while True:
                try:
                    chunk = reader.get_chunk(sizer.rows)
                except StopIteration:
                    return
                except pd.errors.ParserError as exc:
                    raise ImportFailure(
                        f"the CSV is malformed: {exc}".strip()
                    ) from None
                yield chunk
                progress(0.3 + 0.6 * min(1.0, fh.tell() / total))


# --------------------------------------------------------------------------- Excel


class _Budget:
    """Bytes unpacked from a zip so far, against the configured limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise ImportFailure(
                f"the workbook unpacks to more than {self.limit / 1e6:g} MB (the "
                "configured limit datasets.max_unpacked_mb); it may be a zip bomb, or "
                "split it into smaller workbooks"
            )


class _CountedMember(io.BufferedIOBase):
    """A zip member being read, counted against its declared size and the budget."""

    def __init__(self, inner: IO[bytes], name: str, declared: int, budget: _Budget):
        super().__init__()
        self._inner = inner
        self._name = name
        self._left = declared
        self._budget = budget

    def readable(self) -> bool:
        return True

    def _count(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            raise ImportFailure(
                f"the workbook is corrupt: member {self._name!r} unpacks to more than "
                "its header says (a zip bomb?)"
            )
        self._budget.take(len(data))
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while part := self._count(self._inner.read(_BLOCK)):
                parts.append(part)
            return b"".join(parts)
        return self._count(self._inner.read(size))

    def read1(self, size: int = -1) -> bytes:
        return self.read(size if size >= 0 else _BLOCK)

    def close(self) -> None:
        self._inner.close()
        super().close()


class _BoundedZip(zipfile.ZipFile):
    """A zip whose members are counted while they are read (see `_CountedMember`)."""

    def __init__(self, file: str | os.PathLike[str], budget: _Budget) -> None:
        super().__init__(file, "r")
        self.budget = budget

    def open(self, name: Any, mode: Any = "r", pwd: Any = None, **kw: Any) -> Any:
        if mode != "r":
            raise ValueError("read only")
        info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
        inner = super().open(info, "r", pwd, **kw)
        return _CountedMember(inner, info.filename, info.file_size, self.budget)


def _check_zip(archive: zipfile.ZipFile, limits: DatasetConfig, size: int) -> None:
    """Refuse a zip bomb from its central directory, before unpacking anything."""
    limit = int(limits.max_unpacked_mb * 1024 * 1024)
    ratio = limits.max_compression_ratio
    total = 0
    for info in archive.infolist():
        total += info.file_size
        if info.file_size > _RATIO_FLOOR and info.file_size > ratio * max(
            1, info.compress_size
        ):
            raise ImportFailure(
                f"the workbook member {info.filename!r} is compressed "
                f"{info.file_size / max(1, info.compress_size):,.0f} times (the limit "
                f"is {ratio:g}, datasets.max_compression_ratio); it looks like a zip "
                "bomb and is refused"
            )
    if total > limit:
        raise ImportFailure(
            f"the workbook unpacks to {total / 1e6:,.1f} MB, more than the "
            f"{limit / 1e6:g} MB allowed (datasets.max_unpacked_mb); it may be a zip "
            "bomb, or split it into smaller workbooks"
        )
    if total > _RATIO_FLOOR and total > ratio * max(1, size):
        raise ImportFailure(
            f"the workbook is compressed {total / max(1, size):,.0f} times (the limit "
            f"is {ratio:g}, datasets.max_compression_ratio); it looks like a zip bomb "
            "and is refused"
        )


def open_workbook(path: Path, limits: DatasetConfig) -> Any:
    """The workbook at `path` in read-only mode, its unpacking bounded (see module doc).

    Raises:
        ImportFailure: not a workbook, a zip bomb, corrupt.
    """
    if not zipfile.is_zipfile(path):
        raise ImportFailure(
            "the file is not an Excel workbook (.xlsx); old .xls files must be saved "
            "as .xlsx first"
        )
    budget = _Budget(int(limits.max_unpacked_mb * 1024 * 1024))
    try:
        archive = _BoundedZip(path, budget)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImportFailure(
            f"the Excel workbook is corrupt or unreadable: {exc}"
        ) from None
    try:
        _check_zip(archive, limits, path.stat().st_size)
        # openpyxl opens archives itself; hand it ours (counted) before it reads any part.
        with path.open("rb") as fh:
            reader = ExcelReader(fh, read_only=True, data_only=True)
            reader.archive.close()
        reader.archive = archive
        reader.valid_files = archive.namelist()
        reader.read()
    except ImportFailure:
        archive.close()
        raise
    except Exception as exc:
        archive.close()
        raise ImportFailure(
            f"the Excel workbook is corrupt or unreadable: {exc}"
        ) from None
    return reader.wb


def _excel(
    path: Path, limits: DatasetConfig, progress: Progress, sizer: _Sizer
) -> Chunks:
    book = open_workbook(path, limits)
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise ImportFailure("the workbook has no sheets")
        try:
            total = max(1, sheet.max_row or 1)
            rows_iter = sheet.iter_rows(values_only=True)
            header = next(rows_iter, None)
            if header is None or all(h is None for h in header):
                raise ImportFailure("the first sheet is empty")
            names = [
                str(h) if h is not None else f"column_{i + 1}"
                for i, h in enumerate(header)
            ]
            body: list[tuple[Any, ...]] = []
            done = 0
            for row in rows_iter:
                if len(row) > len(names):
                    names += [f"column_{i + 1}" for i in range(len(names), len(row))]
                body.append(row)
                if len(body) >= sizer.rows:
                    done += len(body)
                    yield _records(body, names)
                    body = []
                    progress(0.9 * min(1.0, done / total))
            if body:
                yield _records(body, names)
        except ImportFailure:
            raise
        except Exception as exc:
            raise ImportFailure(
                f"the Excel workbook is corrupt or unreadable: {exc}"
            ) from None
    finally:
        book.close()


def _records(body: list[tuple[Any, ...]], names: list[str]) -> pd.DataFrame:
    width = len(names)
    rows = [r + (None,) * (width - len(r)) if len(r) < width else r for r in body]
    return pd.DataFrame.from_records(rows, columns=names)


# --------------------------------------------------------------------------- JSON


def _json_error(exc: json.JSONDecodeError, line_base: int = 0) -> ImportFailure:
    return ImportFailure(
        f"the file is not valid JSON (line {line_base + exc.lineno}, column "
        f"{exc.colno}: {exc.msg}); expected an array of objects or one object per line"
    )


def _not_objects() -> ImportFailure:
    return ImportFailure("expected an array of objects (one object per row)")


def _json_array(fh: _Prefixed) -> Iterator[tuple[Any, int]]:
    """The items of the JSON array in `fh`, one at a time (memory: about one item),
    each with the length of its text."""
    decoder = json.JSONDecoder()
    buf = ""
    pos = 0
    eof = False
    line_base = 0  # newlines before buf[0], for error messages

    def more() -> bool:
        nonlocal buf, pos, eof, line_base
        if eof:
            return False
        if pos:
            line_base += buf.count("\n", 0, pos)
            buf, pos = buf[pos:], 0
        data = fh.read(max(_BLOCK, len(buf)))
        if not data:
            eof = True
            return False
        buf += data
        return True

    def skip_ws() -> str:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if not more():
                return ""

    def fail(msg: str) -> ImportFailure:
        return _json_error(json.JSONDecodeError(msg, buf, pos), line_base)

    if skip_ws() != "[":
        raise fail("Expecting '['")
    pos += 1
    first = True
    while True:
        ch = skip_ws()
        if ch == "]":
            pos += 1
            if skip_ws():
                raise fail("Extra data")
            return
        if not first:
            if ch != ",":
                raise fail("Expecting ',' delimiter")
            pos += 1
            if not skip_ws():
                raise fail("Expecting value")
        while True:
            try:
                item, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                incomplete = exc.pos >= len(buf) - 64 or exc.msg.startswith(
                    "Unterminated string"
                )
                if incomplete and more():
                    continue
                raise _json_error(exc, line_base) from None
            # A number at the very end of the buffer may go on in the next block.
            if end == len(buf) and more():
                continue
            break
        size, pos = end - pos, end
        first = False
        yield item, size


def _json(
    path: Path, limits: DatasetConfig, progress: Progress, sizer: _Sizer
) -> Chunks:
    _check_utf8(path, progress, 0.3)
    total = max(1, path.stat().st_size)
    with path.open("rb") as raw:
        fh = io.TextIOWrapper(raw, encoding="utf-8-sig")
        start = fh.read(_BLOCK)
        while start and not start.strip():
            more = fh.read(_BLOCK)
            if not more:
                break
            start = more
        stripped = start.lstrip()
        if not stripped:
            raise ImportFailure("the file is empty")
        items: Iterator[tuple[Any, int]]
        if stripped.startswith("["):
            items = _json_array(_Prefixed(start, fh))
        else:  # JSON Lines: one object per line
            items = _json_lines(_Prefixed(start, fh))
        batch: list[dict[str, Any]] = []
        seen = text = 0
        # Parsed JSON objects take several times their text in memory: the batch is
        # cut at a fraction of the chunk size measured in text.
        text_limit = max(1, sizer.chunk_bytes // _JSON_INFLATION)
        for item, size in items:
            if not isinstance(item, dict):
                raise _not_objects()
            batch.append(item)
            text += size
            if len(batch) >= sizer.rows or text >= text_limit:
                seen += len(batch)
                _check_rows(seen, limits)
                yield pd.json_normalize(batch, max_level=0)
                batch, text = [], 0
                progress(0.3 + 0.6 * min(1.0, raw.tell() / total))
        if batch:
            yield pd.json_normalize(batch, max_level=0)
        elif not seen:
            raise ImportFailure("the JSON array is empty")


class _Prefixed:
    """A text stream with `head` (already read) put back in front."""

    def __init__(self, head: str, rest: IO[str]) -> None:
        self.head = head
        self.rest = rest

    def read(self, n: int = -1) -> str:
        if self.head:
            data, self.head = self.head, ""
            return data
        return self.rest.read(n)

    def __iter__(self) -> Iterator[str]:
        pending = ""
        while chunk := self.read(_BLOCK):
            lines = (pending + chunk).split("\n")
            pending = lines.pop()
            yield from lines
        if pending:
            yield pending


def _json_lines(fh: _Prefixed) -> Iterator[tuple[Any, int]]:
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line), len(line)
        except json.JSONDecodeError as exc:
            raise _json_error(exc, number - 1) from None


# --------------------------------------------------------------------------- Parquet


def _parquet(
    path: Path, limits: DatasetConfig, progress: Progress, sizer: _Sizer
) -> Chunks:
    try:
        handle = pq.ParquetFile(path)
        meta = handle.metadata
        _check_rows(meta.num_rows, limits)
        # A pandas index stored as a column is not data (pandas drops it too).
        index = (handle.schema_arrow.pandas_metadata or {}).get("index_columns", [])
        columns = [n for n in handle.schema_arrow.names if n not in index]
        size = sum(
            meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)
        )
        per_row = max(1.0, size / max(1, meta.num_rows))
        batch = int(min(_MAX_ROWS, max(_MIN_ROWS, sizer.chunk_bytes / per_row)))
        done = 0
        for record_batch in handle.iter_batches(batch_size=batch, columns=columns):
            done += record_batch.num_rows
            yield pa.Table.from_batches([record_batch])
            progress(0.9 * done / max(1, meta.num_rows))
    except (pa.ArrowException, OSError) as exc:
        raise ImportFailure(
            f"the Parquet file is corrupt or unreadable: {exc}"
        ) from None


_PARSERS: dict[str, Callable[[Path, DatasetConfig, Progress, _Sizer], Chunks]] = {
    "csv": _csv,
    "excel": _excel,
    "json": _json,
    "parquet": _parquet,
}


# --------------------------------------------------------------------------- writing


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _is_text(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
    )


def _unify_type(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The narrowest type holding both: null < integer < float < text."""
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return pa.int64()
    if _is_number(a) and _is_number(b):
        return pa.float64()
    return pa.string()


def _unify(current: pa.Schema, new: pa.Schema) -> pa.Schema:
    fields = []
    for f in current:
        i = new.get_field_index(f.name)
        fields.append(
            pa.field(
                f.name, _unify_type(f.type, new.field(i).type) if i >= 0 else f.type
            )
        )
    fields += [f for f in new if current.get_field_index(f.name) < 0]
    return pa.schema(fields)


def _cast(column: pa.ChunkedArray[Any], target: pa.DataType) -> pa.ChunkedArray[Any]:
    if column.type.equals(target):
        return column
    if pa.types.is_null(column.type):
        nulls: Any = pa.nulls  # the stubs list one overload per concrete type
        return pa.chunked_array([nulls(len(column), target)], cast(Any, target))
    try:
        return pc.cast(column, target)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        if not pa.types.is_string(target):
            raise
        # Nested values (lists, objects) have no Arrow cast to text: Python's str().
        text = [None if v is None else str(v) for v in column.to_pylist()]
        return pa.chunked_array([pa.array(text, pa.string())], pa.string())


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    n = table.num_rows
    columns = []
    for f in schema:
        i = table.schema.get_field_index(f.name)
        if i < 0:
            columns.append(pa.chunked_array([pa.nulls(n, f.type)], f.type))
        else:
            columns.append(_cast(table.column(i), f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _to_table(chunk: pd.DataFrame | pa.Table, limits: DatasetConfig) -> pa.Table:
    """One parsed chunk as an Arrow table with text column names and storable types."""
    if isinstance(chunk, pd.DataFrame):
        names = [str(c) for c in chunk.columns]
        if len(set(names)) != len(names):
            raise ImportFailure("column names must be unique")
        chunk.columns = pd.Index(names)
        # Mixed-type object columns cannot be stored in Parquet as-is: keep them as text.
        for name in names:
            if chunk[name].dtype == object:
                kinds = {type(v) for v in chunk[name].dropna()}
                if len(kinds) > 1:
                    chunk[name] = chunk[name].map(
                        lambda v: None if v is None else str(v)
                    )
        try:
            table = pa.Table.from_pandas(chunk, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise ImportFailure(f"the data cannot be stored: {exc}") from None
    else:
        table = chunk
        names = table.schema.names
        if len(set(names)) != len(names):
            raise ImportFailure("column names must be unique")
    if table.num_columns > limits.max_columns:
        raise ImportFailure(
            f"the file has {table.num_columns:,} columns; the limit is "
            f"{limits.max_columns:,}"
        )
    table = table.replace_schema_metadata(None)
    # One text type everywhere (pandas may hand out large or view strings).
    if any(_is_text(f.type) and not pa.types.is_string(f.type) for f in table.schema):
        schema = pa.schema(
            pa.field(f.name, pa.string()) if _is_text(f.type) else f
            for f in table.schema
        )
        table = _conform(table, schema)
    return table


class _Spool:
    """Writes chunks as row groups; a chunk needing wider types starts a new segment
    file, and `finish` rewrites the segments once into one file with unified types."""

    def __init__(self, out: Path, limits: DatasetConfig) -> None:
        self.out = out
        self.limits = limits
        self.segments: list[Path] = []
        self.schema: pa.Schema | None = None
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def _open(self, schema: pa.Schema) -> None:
        self._close()
        path = self.out.with_name(f"{self.out.name}.part{len(self.segments)}")
        self.segments.append(path)
        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def add(self, chunk: pd.DataFrame | pa.Table) -> None:
        _check_rows(self.rows + len(chunk), self.limits)
        table = _to_table(chunk, self.limits)
        if table.num_rows == 0:
            if self.schema is None and table.num_columns:
                self.schema = table.schema  # a header without rows so far
            return
        if self.writer is None or self.schema is None:
            schema = (
                table.schema
                if self.schema is None
                else _unify(self.schema, table.schema)
            )
            self._open(schema)
        else:
            schema = _unify(self.schema, table.schema)
            if not schema.equals(self.schema):
                self._open(schema)
        assert self.writer is not None
        assert self.schema is not None
        if len(self.schema) > self.limits.max_columns:
            raise ImportFailure(
                f"the file has {len(self.schema):,} columns; the limit is "
                f"{self.limits.max_columns:,}"
            )
        try:
            table = _conform(table, self.schema)
            self.writer.write_table(table, row_group_size=max(1, table.num_rows))
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise ImportFailure(f"the data cannot be stored: {exc}") from None
        self.rows += table.num_rows
        _check_rows(self.rows, self.limits)

    def finish(self, progress: Progress) -> None:
        self._close()
        if self.schema is None or len(self.schema) == 0:
            raise ImportFailure("the file has no columns")
        if self.rows == 0:
            raise ImportFailure("the file has a header but no rows")
        if len(self.segments) == 1:
            self.segments[0].replace(self.out)
            return
        with pq.ParquetWriter(self.out, self.schema) as writer:
            for k, segment in enumerate(self.segments):
                handle = pq.ParquetFile(segment)
                for i in range(handle.num_row_groups):
                    part = _conform(handle.read_row_group(i), self.schema)
                    writer.write_table(part, row_group_size=max(1, part.num_rows))
                    progress(k / len(self.segments))
                segment.unlink()

    def discard(self) -> None:
        self._close()
        for segment in self.segments:
            segment.unlink(missing_ok=True)


def import_file(
    path: Path,
    fmt: str,
    limits: DatasetConfig,
    out: Path,
    progress: Progress,
) -> Imported:
    """Parse `path` as `fmt` and write it to the Parquet file `out`, chunk by chunk.

    `progress` gets the fraction done (0..1) between chunks; whatever it raises (a
    cancelled job) stops the import.

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
    # Through the api or straight to the object store, each with its own limit.
    limit_mb = max(limits.max_upload_mb, limits.max_direct_upload_mb)
    if size > limit_mb * 1024 * 1024:
        raise ImportFailure(
            f"the file is too large ({size / 1e6:.1f} MB; the limit is "
            f"{limit_mb:g} MB)"
        )
    sizer = _Sizer(int(limits.chunk_mb * 1024 * 1024))
    spool = _Spool(out, limits)
    try:
        for chunk in _PARSERS[fmt](path, limits, progress, sizer):
            sizer.seen(chunk)
            spool.add(chunk)
        progress(0.92)
        spool.finish(lambda f: progress(0.92 + 0.07 * f))
    except BaseException:
        spool.discard()
        out.unlink(missing_ok=True)
        raise
    return describe(out, limits.preview_rows, spool.rows)


def describe(path: Path, preview_rows: int, rows: int | None = None) -> Imported:
    """Row count, columns (pandas dtypes) and the first rows of a Parquet file."""
    handle = pq.ParquetFile(path)
    schema = handle.schema_arrow
    dtypes = schema.empty_table().to_pandas().dtypes
    columns = [{"name": str(c), "dtype": str(t)} for c, t in dtypes.items()]
    head = next(handle.iter_batches(batch_size=preview_rows), None)
    frame = (
        pa.Table.from_batches([head]).to_pandas()
        if head is not None
        else schema.empty_table().to_pandas()
    )
    preview: list[dict[str, Any]] = json.loads(
        frame.head(preview_rows).to_json(orient="records", date_format="iso")
    )
    return Imported(
        rows=handle.metadata.num_rows if rows is None else rows,
        columns=columns,
        preview=preview,
    )
