"""Data page: upload a file into a project's dataset, follow its import, preview it.

The file field's upload goes to ``POST /v1/datasets`` (raw body, up to the api's body
limit); the api stores the file and starts an import job. The direct upload below it
(`ballast_ui.components.upload`) takes any size: the browser sends the file's parts
straight to the object store, with a progress bar, resumable after a refresh, and the
api starts the same import when the last part is in. The selected dataset (``?id=``) is polled by a ``run_every`` fragment
until it is READY or FAILED; then the answer (with its preview rows) comes from the cache
(`ballast_ui.cache`, shared by the UI's replicas) until the dataset is written again.
"""

from __future__ import annotations

import base64
from pathlib import PurePath
from typing import Any

import streamlit as st

from ballast_common.errors import AppError
from ballast_ui import cache, components
from ballast_ui.client import ApiUnavailable, Dataset, DatasetDetail
from ballast_ui.downloads import download_buttons
from ballast_ui.i18n import t
from ballast_ui.pages.jobs import api_error_text, flash, job_panel
from ballast_ui.router import Page, Router
from ballast_ui.state import Ctx, get_config, track, values
from ballast_ui.widgets import file_bytes_key, s_file, s_select, s_text

FORM = "data-import"
EXTENSIONS = ("csv", "xlsx", "xls", "json", "parquet")
LIST_SIZE = 10
POLL_S = 1.0
_FLASH = "data::flash"
_DETAILS = "data::details"
_UPLOAD = "data::upload"

CSS = """<style>
.st-key-data-flash { min-height: 3.5rem; max-height: 3.5rem; overflow: hidden; }
.st-key-data-detail { min-height: 30rem; }
</style>"""


def upload_bytes(key: str) -> tuple[str, bytes] | None:
    """The chosen file's name and content (sent in this session, or the kept draft)."""
    kept = values().get(key)
    if not isinstance(kept, dict) or not kept.get("name"):
        return None
    data = st.session_state.get(file_bytes_key(key))
    if isinstance(data, bytes) and len(data) == kept.get("size"):
        return str(kept["name"]), data
    if kept.get("content_b64") is not None:
        return str(kept["name"]), base64.b64decode(kept["content_b64"])
    return None


def max_upload_bytes() -> int:
    """The largest file the api takes into a dataset (``datasets.max_upload_mb``)."""
    return int(get_config().datasets.max_upload_mb * 1024 * 1024)


def check_file(name: str, data: bytes) -> str | None:
    """A reason to refuse the file before uploading it, or ``None``."""
    ext = PurePath(name).suffix.lower().lstrip(".")
    if ext not in EXTENSIONS:
        return (
            f"{name!r} is not a supported file: use CSV, Excel (.xlsx/.xls), JSON or "
            "Parquet."
        )
    if not data:
        return f"{name!r} is empty: choose a file with data."
    return None


class DataPage(Page):
    name = "data"
    title = "Data"
    icon = "🗃️"
    permission = "datasets:read"
    params = ("id", "job")

    def render(self, ctx: Ctx, router: Router) -> None:
        """Import form, the dataset list, and the selected dataset's status/preview."""
        st.html(CSS)
        params = router.state.params_by_page.get(self.name, {})
        st.header(t(ctx, "Data"))
        left, right = st.columns([2, 3])
        with left:
            self._import_form(ctx, router)
        with right:
            self._list(ctx, router, params.get("id"))
        with st.container(key="data-detail"):
            dataset_id = params.get("id")
            if dataset_id:

                def dataset_detail() -> None:
                    self._detail(ctx, dataset_id)

                st.fragment(dataset_detail, run_every=POLL_S)()
            else:
                st.caption("Import a file or pick a dataset to see its preview here.")

    # ------------------------------------------------------------------ import

    def _import_form(self, ctx: Ctx, router: Router) -> None:
        can_write = ctx.can("datasets:write")
        st.subheader("Import a file")
        assert ctx.user is not None  # the page needs datasets:read
        try:
            projects = cache.list_projects(
                ctx.api, ctx.user.id, size=100, order_by="name"
            ).items
        except AppError:
            projects = []
        # Only the projects I may import into (those I own or edit as a member).
        names = {
            str(p.id): p.name for p in projects if ctx.may(p, "write", "datasets:write")
        }
        s_select(
            "Project",
            f"{FORM}.project",
            ["", *names],
            default="",
            format_func=lambda v: names.get(v, "(no project)") if v else "(no project)",
            disabled=not can_write,
        )
        s_text(
            "Dataset name",
            f"{FORM}.name",
            max_chars=200,
            placeholder="defaults to the file name",
            disabled=not can_write,
        )
        s_file(
            "File (CSV, Excel, JSON, Parquet)",
            f"{FORM}.file",
            type=EXTENSIONS,
            disabled=not can_write,
            # The content reaches this session whole, up to what the api takes.
            inline_limit=max_upload_bytes(),
            max_bytes=max_upload_bytes(),
        )

        def start() -> None:
            self._start(ctx, router)

        st.button(
            "Import",
            key="data::import",
            type="primary",
            on_click=start,
            disabled=not can_write,
        )
        with st.container(key="data-flash"):
            flash(_FLASH)
        st.caption(
            "Large file? Upload it straight to storage (any size, resumable after a "
            "refresh):"
        )
        store = values()

        def uploaded() -> None:
            self._uploaded(ctx, router)

        components.upload(
            user=str(ctx.user.id),
            project=str(store.get(f"{FORM}.project") or "") or None,
            name=str(store.get(f"{FORM}.name") or "").strip(),
            enabled=can_write,
            on_done=uploaded,
            key=_UPLOAD,
        )

    def _uploaded(self, ctx: Ctx, router: Router) -> None:
        """A direct upload completed: follow its dataset's import."""
        done = getattr(st.session_state.get(_UPLOAD), "done", None)
        if not isinstance(done, dict) or not done.get("dataset"):
            return
        cache.written("datasets", f"datasets:{done['dataset']}")
        track(ctx, "workbench.dataset_imported", {"direct": True})
        st.session_state[_FLASH] = ("info", "Uploaded; importing…")
        router.navigate(
            self.name, {"id": str(done["dataset"]), "job": str(done.get("job") or "")}
        )

    def _start(self, ctx: Ctx, router: Router) -> None:
        picked = upload_bytes(f"{FORM}.file")
        if picked is None:
            st.session_state[_FLASH] = ("error", "Choose a file first.")
            return
        filename, data = picked
        problem = check_file(filename, data)
        if problem:
            st.session_state[_FLASH] = ("error", problem)
            return
        store = values()
        name = str(store.get(f"{FORM}.name") or "").strip() or PurePath(filename).stem
        project = store.get(f"{FORM}.project") or None
        try:
            started = ctx.api.import_dataset(
                data, name=name, filename=filename, project_id=project
            )
        except ApiUnavailable:
            st.session_state[_FLASH] = (
                "error",
                "The server is unreachable; try the import again in a moment.",
            )
            return
        except AppError as exc:
            st.session_state[_FLASH] = ("error", f"Not imported: {api_error_text(exc)}")
            return
        cache.written("datasets", f"datasets:{started.dataset.id}")
        track(ctx, "workbench.dataset_imported", {"format": PurePath(filename).suffix})
        st.session_state[_FLASH] = ("info", f"Importing {filename} as {name!r}…")
        router.navigate(
            self.name, {"id": str(started.dataset.id), "job": str(started.job.id)}
        )

    # ------------------------------------------------------------------ list

    def _list(self, ctx: Ctx, router: Router, selected: str | None) -> None:
        st.subheader("Datasets")
        try:
            items: list[Dataset] = ctx.api.list_datasets(size=LIST_SIZE).items
        except AppError as exc:
            st.warning(api_error_text(exc))
            items = []
        items.sort(key=lambda d: d.created_at, reverse=True)
        rows = [
            {
                "name": d.name,
                "status": d.status,
                "format": d.format,
                "rows": d.row_count,
                "size": f"{d.size_bytes:,} B",
                "created": d.created_at.strftime("%Y-%m-%d %H:%M"),
            }
            for d in items
        ]
        st.dataframe(
            rows,
            height=36 * (LIST_SIZE + 1),
            hide_index=True,
            width="stretch",
            column_order=["name", "status", "format", "rows", "size", "created"],
        )
        ids = [str(d.id) for d in items]
        labels = {str(d.id): f"{d.name} ({d.status.lower()})" for d in items}
        if selected and selected not in labels:
            ids.append(selected)
            labels[selected] = f"dataset {selected[:8]}"

        def pick() -> None:
            router.update(self.name, {"id": st.session_state.get("data::open")})

        st.session_state["data::open"] = selected
        st.selectbox(
            "Open dataset",
            ids,
            key="data::open",
            on_change=pick,
            format_func=lambda v: labels.get(v, v),
            placeholder="choose a dataset",
        )

    # ------------------------------------------------------------------ detail

    def _detail(self, ctx: Ctx, dataset_id: str) -> None:
        # The last answer shown stays at hand for when the api is away.
        shown: dict[str, Any] = st.session_state.setdefault(_DETAILS, {})
        dataset: DatasetDetail | None = shown.get(dataset_id)
        assert ctx.user is not None  # the page needs datasets:read
        try:
            dataset = shown[dataset_id] = cache.get_dataset(
                ctx.api, ctx.user.id, dataset_id
            )
        except AppError as exc:
            if dataset is None:
                st.warning(api_error_text(exc))
                return
        assert dataset is not None
        st.subheader(f"{dataset.name} · {dataset.status.lower()}")
        st.caption(
            f"{dataset.filename} · {dataset.format} · {dataset.size_bytes:,} bytes"
            + (
                f" · {dataset.row_count:,} rows"
                if dataset.row_count is not None
                else ""
            )
        )
        if dataset.status == "READY":
            st.dataframe(
                dataset.preview,
                height=36 * 11,
                hide_index=True,
                width="stretch",
                column_order=[c["name"] for c in dataset.columns] or None,
            )
            st.caption(
                "Columns: "
                + ", ".join(
                    f"{c['name']} ({c.get('dtype', '?')})" for c in dataset.columns
                )
            )
            download_buttons(
                ctx.api,
                f"/datasets/{dataset.id}/export",
                dataset.name,
                key=f"data::download::{dataset.id}",
            )
            return
        if dataset.status == "FAILED":
            st.error(
                f"The import failed: {dataset.error_message or 'unknown error'}  \n"
                "Fix the file and upload it again; nothing of it was kept."
            )
        if dataset.job_id is not None:
            try:
                job = ctx.api.get_job(dataset.job_id)
            except AppError as exc:
                st.caption(api_error_text(exc))
                return
            job_panel(ctx, job, key="data::job")
            flash("data::job::flash")
