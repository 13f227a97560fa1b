"""Download buttons for exports: CSV, Excel and Parquet, fetched through the api only
when clicked (deferred data), never kept in the session."""

from __future__ import annotations

import re
from collections.abc import Callable

import streamlit as st

from ballast_ui.client import ApiClient

FORMATS = (
    ("CSV", "csv", "text/csv"),
    (
        "Excel",
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("Parquet", "parquet", "application/vnd.apache.parquet"),
)


def file_stem(name: str) -> str:
    """A harmless file name stem for the browser (the api's header says the same)."""
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip(" ._")
    return stem[:100] or "export"


def fetcher(api: ApiClient, path: str, fmt: str) -> Callable[[], bytes]:
    """What a button calls when clicked: the export in `fmt`."""

    def fetch() -> bytes:
        return api.download(path, params={"format": fmt})

    return fetch


def download_buttons(api: ApiClient, path: str, name: str, key: str) -> None:
    """One button per format for the export at `path` (under /v1)."""
    st.caption("Download")
    for column, (label, fmt, mime) in zip(
        st.columns(len(FORMATS)), FORMATS, strict=True
    ):
        with column:
            st.download_button(
                label,
                data=fetcher(api, path, fmt),
                file_name=f"{file_stem(name)}.{fmt}",
                mime=mime,
                key=f"{key}::{fmt}",
                on_click="ignore",
                width="stretch",
            )
