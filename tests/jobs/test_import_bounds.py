"""Imports are bounded: zip bombs fail fast in little memory, every format is parsed in
chunks written to Parquet as they come, and types stay right across chunks."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import openpyxl  # type: ignore[import-untyped]
import pandas as pd  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from ballast_common.config import DatasetConfig
from ballast_jobs.datasets import (
    ImportFailure,
    _BoundedZip,
    _Budget,
    import_file,
)

pytestmark = pytest.mark.serial  # peak memory and time of imports

MB = 1024 * 1024
SHEET = "xl/worksheets/sheet1.xml"


def _workbook_parts() -> dict[str, bytes]:
    book = openpyxl.Workbook()
    book.active.append(["a", "b"])
    book.active.append([1, 2])
    buf = io.BytesIO()
    book.save(buf)
    with zipfile.ZipFile(buf) as z:
        return {name: z.read(name) for name in z.namelist()}


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def bomb_xlsx(
    path: Path, compressed_mb: float = 2.5, declared: int | None = None
) -> int:
    """A valid-looking workbook whose sheet inflates ~1000x (2.5 MB -> ~2.5 GB).

    The sheet's deflate stream is one 1 MiB block of rows compressed once and repeated
    (full flushes make the segments independent), so building it takes a second.
    `declared`: the uncompressed size the headers claim (a lying header), default the
    true size. Returns the true uncompressed size of the sheet.
    """
    head = (
        b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas'
        b'.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    )
    row = b'<row><c t="inlineStr"><is><t>boom</t></is></c><c><v>1</v></c></row>'
    # Rows padded with whitespace (valid XML): deflate's best case, ~1000x.
    block = row + b" " * (MB - len(row))
    tail = b"</sheetData></worksheet>"
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    segment = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    last = c.compress(tail) + c.flush(zlib.Z_FINISH)
    repeat = int(compressed_mb * MB / len(segment))
    crc = zlib.crc32(head)
    for _ in range(repeat):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + repeat * len(block) + len(tail)
    sheet_data = first + segment * repeat + last

    entries = []
    for name, data in _workbook_parts().items():
        if name == SHEET:
            entries.append((name, sheet_data, crc, declared or size))
        else:
            entries.append((name, _deflate(data), zlib.crc32(data), len(data)))
    with path.open("wb") as out:
        central = b""
        for name, data, crc_, usize in entries:
            offset = out.tell()
            raw = name.encode()
            out.write(
                struct.pack(
                    "<IHHHHHIIIHH",
                    0x04034B50,
                    20,
                    0,
                    8,
                    0,
                    0x21,
                    crc_,
                    len(data),
                    usize,
                    len(raw),
                    0,
                )
                + raw
            )
            out.write(data)
            central += (
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    20,
                    20,
                    0,
                    8,
                    0,
                    0x21,
                    crc_,
                    len(data),
                    usize,
                    len(raw),
                    0,
                    0,
                    0,
                    0,
                    0,
                    offset,
                )
                + raw
            )
        start = out.tell()
        out.write(central)
        out.write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                len(entries),
                len(entries),
                len(central),
                start,
                0,
            )
        )
    return size


# VmHWM of the child's own memory map. Not ru_maxrss: Linux carries that over from the
# parent's memory at fork/exec, so a child of a big pytest process reports pytest's peak.
CHILD = """
import sys, time
from pathlib import Path
from ballast_common.config import DatasetConfig
from ballast_jobs.datasets import ImportFailure, import_file
started = time.monotonic()
src, fmt = sys.argv[1], sys.argv[2]
try:
    done = import_file(
        Path(src), fmt, DatasetConfig(), Path(src + ".parquet"),
        lambda f: None,
    )
    print("OK", done.rows)
except ImportFailure as exc:
    print("FAILED", exc.message)
print("SECONDS", time.monotonic() - started)
status = open("/proc/self/status").read().split("VmHWM:")[1]
print("PEAK_KB", int(status.split()[0]))
"""


def rss_mb(pid: int) -> float:
    """A live process's resident memory (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_import(
    src: Path,
    fmt: str,
    *,
    kill_above_mb: float,
    timeout: float = 120,
) -> tuple[str, float]:
    """Import `src` in a child process; its output and peak RSS (in MB, the kernel's
    VmHWM of the child). A watchdog kills the child (and fails the test) past
    `kill_above_mb` or `timeout`, so an unbounded import cannot take the machine down.
    """
    with (
        (src.parent / "child.out").open("w+") as out,
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(src), fmt],
            stdout=out,
            stderr=subprocess.STDOUT,
        ) as proc,
    ):
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                watched = rss_mb(proc.pid)
                assert watched < kill_above_mb, f"import took {watched:.0f} MB (killed)"
                assert time.monotonic() < deadline, "import took too long (killed)"
                time.sleep(0.05)
        finally:
            proc.kill()
        out.seek(0)
        text = out.read()
    assert "PEAK_KB" in text, text
    return text, int(text.split("PEAK_KB")[1].split()[0]) / 1024


def test_zip_bomb_fails_fast_in_little_memory(tmp_path: Path) -> None:
    src = tmp_path / "bomb.xlsx"
    unpacked = bomb_xlsx(src)
    assert 2 * MB < src.stat().st_size < 3 * MB
    assert unpacked > 2000 * MB
    out, peak = run_import(src, "excel", kill_above_mb=600, timeout=60)
    assert out.startswith("FAILED"), out
    assert "zip bomb" in out
    assert "compressed" in out or "unpacks to" in out
    assert float(out.split("SECONDS")[1].split()[0]) < 5
    assert peak < 300, f"peak RSS {peak:.0f} MB"


def test_zip_bomb_with_a_lying_header_fails_cleanly(tmp_path: Path) -> None:
    """The headers claim a small sheet: the reader stops at the claimed size and the
    member is corrupt (its checksum does not match), without unpacking the rest."""
    src = tmp_path / "liar.xlsx"
    bomb_xlsx(src, compressed_mb=2.5, declared=50_000)
    out, peak = run_import(src, "excel", kill_above_mb=600, timeout=60)
    assert out.startswith("FAILED"), out
    assert "corrupt" in out
    assert peak < 300, f"peak RSS {peak:.0f} MB"


def drain(member: io.BufferedIOBase) -> None:
    while member.read(4096):
        pass


def test_members_are_counted_while_read(tmp_path: Path) -> None:
    """Counting does not trust the headers: a budget smaller than the members stops
    the read at the budget."""
    src = tmp_path / "book.xlsx"
    parts = _workbook_parts()
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
        z.writestr("xl/big.xml", b"x" * 100_000)
    with _BoundedZip(src, _Budget(50_000)) as archive:
        member = archive.open("xl/big.xml")
        with pytest.raises(ImportFailure, match="unpacks to more than"):
            drain(member)
    with _BoundedZip(src, _Budget(10 * MB)) as archive:
        assert archive.read("xl/big.xml") == b"x" * 100_000


def test_ratio_and_size_limits_are_configurable(tmp_path: Path) -> None:
    src = tmp_path / "dense.xlsx"
    book = openpyxl.Workbook()
    for i in range(60_000):
        book.active.append([i, "same text in every row", 1.5])
    book.save(src)
    assert import_file(
        src, "excel", DatasetConfig(), tmp_path / "ok.parquet", print
    ).rows
    with pytest.raises(ImportFailure, match="max_unpacked_mb"):
        import_file(
            src,
            "excel",
            DatasetConfig(max_unpacked_mb=1),
            tmp_path / "o.parquet",
            print,
        )
    with pytest.raises(ImportFailure, match="max_compression_ratio"):
        import_file(
            src,
            "excel",
            DatasetConfig(max_compression_ratio=2),
            tmp_path / "o.parquet",
            print,
        )


def _row_groups(path: Path) -> int:
    return int(pq.ParquetFile(path).num_row_groups)


def test_csv_is_written_in_chunks(tmp_path: Path) -> None:
    rows = 200_000
    src = tmp_path / "big.csv"
    src.write_text(
        "a,b,c\n" + "".join(f"{i},{i * 2},word{i % 13}\n" for i in range(rows))
    )
    out = tmp_path / "out.parquet"
    done = import_file(src, "csv", DatasetConfig(chunk_mb=1), out, print)
    assert done.rows == rows
    assert _row_groups(out) >= 5
    table = pd.read_parquet(out)
    assert table.shape == (rows, 3)
    assert table["a"].tolist() == list(range(rows))
    assert table["c"].iloc[-1] == f"word{(rows - 1) % 13}"


@pytest.mark.parametrize("fmt", ["csv", "json", "excel"])
def test_types_widen_across_chunks(tmp_path: Path, fmt: str) -> None:
    """A column of integers that later holds a fraction, then words; a column that is
    empty at first; a JSON key that appears late: the whole column gets one type."""
    n = 3000
    records: list[dict[str, object]] = []
    for i in range(n):
        rec: dict[str, object] = {"id": i, "x": i, "late": None}
        if i == n // 2:
            rec["x"] = 2.5
        if i == n - 1:
            rec["x"] = "many"
        if i > n - 10:
            rec["late"] = f"v{i}"
        records.append(rec)
    src = tmp_path / f"f.{fmt}"
    if fmt == "csv":
        lines = ["id,x,late"] + [
            f"{r['id']},{r['x']},{r['late'] or ''}" for r in records
        ]
        src.write_text("\n".join(lines) + "\n")
    elif fmt == "json":
        for r in records[: n - 10]:
            del r["late"]
        src.write_text("\n".join(json.dumps(r) for r in records))
    else:
        book = openpyxl.Workbook()
        book.active.append(["id", "x", "late"])
        for r in records:
            book.active.append([r["id"], r["x"], r["late"]])
        book.save(src)
    out = tmp_path / "out.parquet"
    done = import_file(src, fmt, DatasetConfig(chunk_mb=0.01), out, print)
    assert done.rows == n
    assert _row_groups(out) > 3
    table = pd.read_parquet(out)
    assert list(table.columns) == ["id", "x", "late"]
    assert table["id"].tolist() == list(range(n))
    assert table["x"].iloc[n - 1] == "many"
    assert table["x"].iloc[0] == "0"
    assert table["late"].iloc[n - 1] == f"v{n - 1}"
    assert table["late"].isna().sum() == n - 9
    assert {c["name"]: c["dtype"] for c in done.columns}["id"] == "int64"


def test_json_array_is_streamed_across_blocks(tmp_path: Path) -> None:
    """Items larger than the read block, numbers cut at a block edge, whitespace."""
    records = [
        {"i": i, "text": "é" * (1_500_000 if i == 3 else 5), "n": 10**12 + i}
        for i in range(40_000)
    ]
    src = tmp_path / "f.json"
    src.write_text("  [\n" + ",\n ".join(json.dumps(r) for r in records) + "\n]  \n")
    out = tmp_path / "out.parquet"
    done = import_file(src, "json", DatasetConfig(chunk_mb=0.5), out, print)
    assert done.rows == len(records)
    table = pd.read_parquet(out)
    assert table["n"].tolist() == [r["n"] for r in records]
    assert len(table["text"].iloc[3]) == 1_500_000
    assert _row_groups(out) > 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'[{"a": 1}, {"a": 2}', "not valid JSON"),
        (b'[{"a": 1} {"a": 2}]', "not valid JSON"),
        (b'[{"a": 1}, 3]', "array of objects"),
        (b'[{"a": 1}] trailing', "not valid JSON"),
        (b'{"a": 1}\n{"a": }\n', "line 2"),
    ],
)
def test_broken_json_streams_fail_clearly(
    tmp_path: Path, data: bytes, message: str
) -> None:
    src = tmp_path / "bad.json"
    src.write_bytes(data)
    with pytest.raises(ImportFailure, match=message):
        import_file(src, "json", DatasetConfig(), tmp_path / "o.parquet", print)
    assert not (tmp_path / "o.parquet").exists()


def test_parquet_is_read_in_batches(tmp_path: Path) -> None:
    src = tmp_path / "f.parquet"
    pd.DataFrame({"a": range(100_000), "b": ["x"] * 100_000}).to_parquet(src)
    out = tmp_path / "out.parquet"
    done = import_file(src, "parquet", DatasetConfig(chunk_mb=0.1), out, print)
    assert done.rows == 100_000
    assert _row_groups(out) > 3
    assert pd.read_parquet(out)["a"].sum() == sum(range(100_000))


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_memory_stays_bounded(tmp_path: Path, fmt: str) -> None:
    """~50-70 MB files in bounded memory. Parsed whole, the JSON took ~580 MB (the
    objects of every row at once); in chunks both stay near the interpreter's baseline
    (~250 MB with pandas, pyarrow and openpyxl loaded)."""
    src = tmp_path / f"big.{fmt}"
    n = 1_200_000 if fmt == "csv" else 600_000
    with src.open("w") as out:
        if fmt == "csv":
            out.write("id,value,label,flag\n")
        else:
            out.write("[")
        for start in range(0, n, 100_000):
            rows = range(start, start + 100_000)
            if fmt == "csv":
                text = "".join(
                    f"{i},{i / 7},text {i % 997},{i % 2 == 0}\n" for i in rows
                )
            else:
                text = ",".join(
                    json.dumps(
                        {
                            "id": i,
                            "value": i / 7,
                            "label": f"text {i % 997}",
                            "flag": i % 2 == 0,
                        }
                    )
                    for i in rows
                )
                text = ("," if start else "") + text
            out.write(text)
        if fmt == "json":
            out.write("]")
    assert src.stat().st_size > 40 * MB
    out_text, peak = run_import(src, fmt, kill_above_mb=1500, timeout=240)
    assert out_text.startswith(f"OK {n}"), out_text
    assert peak < 400, f"peak RSS {peak:.0f} MB"
