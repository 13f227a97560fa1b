"""Download links for exports: CSV, Excel and Parquet.

Each link points to the ui's export route (`ballast_ui.exports`), which streams the
file from the api with the session of the HttpOnly cookie. Nothing is fetched, kept or
served by the Streamlit session that draws the links, so a click may land on any ui
replica. A link is an ``<a download>``: the browser saves the file and stays on the
page (no new tab, no rerun), and the links stand where buttons of the same size stood.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote, urlencode

import streamlit as st

from ballast_ui.client import ApiClient
from ballast_ui.exports import PATH, base_path

# (label, format) of each link.
FORMATS = (("CSV", "csv"), ("Excel", "xlsx"), ("Parquet", "parquet"))

# The api paths (under /v1) the pages pass, and the export route's kind of each.
_PATHS = (
    (re.compile(r"/datasets/([^/]+)/export"), "datasets"),
    (re.compile(r"/jobs/([^/]+)/result/export"), "jobs"),
)

# Drawn like Streamlit's secondary buttons, as tall as they are (2.5rem).
CSS = """<style>
.ballast-export a { display: flex; align-items: center; justify-content: center;
  box-sizing: border-box; width: 100%; min-height: 2.5rem; padding: 0.25rem 0.75rem;
  border: 1px solid rgba(128, 128, 128, 0.35); border-radius: 0.5rem;
  color: inherit; text-decoration: none; line-height: 1.6; user-select: none; }
.ballast-export a:hover { border-color: #ff4b4b; color: #ff4b4b; }
.ballast-export a:focus-visible { outline: 2px solid #1c64f2; outline-offset: 1px; }
</style>"""


def file_stem(name: str) -> str:
    """A harmless file name stem for the browser (the api's header says the same)."""
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip(" ._")
    return stem[:100] or "export"


def export_href(path: str, fmt: str) -> str:
    """The ui's route serving the api's export at `path` in `fmt`, as an absolute path
    under the app's base path (the page's own URL may be any depth under it).

    Raises:
        ValueError: `path` is not an export of a dataset or of a job's result.
    """
    for pattern, kind in _PATHS:
        match = pattern.fullmatch(path)
        if match:
            route = PATH.format(kind=kind, item_id=quote(match.group(1), safe=""))
            return f"{base_path()}{route}?{urlencode({'format': fmt})}"
    raise ValueError(f"no export route for {path!r}")


def _link(label: str, href: str, filename: str, fmt: str) -> str:
    return (
        f'<div class="ballast-export"><a href="{html.escape(href)}" '
        f'download="{html.escape(filename)}" target="_self" '
        f'data-format="{html.escape(fmt)}">{html.escape(label)}</a></div>'
    )


def download_buttons(api: ApiClient, path: str, name: str, key: str) -> None:
    """One download link per format for the export at `path` (under /v1).

    `api` is not used (the browser fetches the file through the ui's route, with its
    own session); it stays so the pages' calls keep their form. `key` names the links'
    container (class ``st-key-<key>``).
    """
    del api
    stem = file_stem(name)
    with st.container(key=key):
        st.html(CSS)
        st.caption("Download")
        for column, (label, fmt) in zip(st.columns(len(FORMATS)), FORMATS, strict=True):
            with column:
                st.markdown(
                    _link(label, export_href(path, fmt), f"{stem}.{fmt}", fmt),
                    unsafe_allow_html=True,
                )
