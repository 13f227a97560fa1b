"""Jobs page: my background jobs (admins: all), polled in place; job finish toasts.

The list is drawn by a fragment with ``run_every``: only that fragment reruns while jobs
progress, never the page or the app. Rows have a fixed height and the list always has
``PAGE_SIZE`` rows, so nothing moves when a job appears, progresses or fails. While the
page is hidden (another page is shown) the poll redraws the last answer without asking
the api.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from ballast_common.errors import AppError
from ballast_ui.client import ApiUnavailable, Job, PageOf
from ballast_ui.i18n import BLANK, t
from ballast_ui.metrics import timed_run
from ballast_ui.router import Page, Router
from ballast_ui.state import CTX, Ctx

PAGE_SIZE = 10
POLL_S = 1.0
TOAST_POLL_S = 3.0
FILTERS: dict[str, tuple[str, ...]] = {
    "all": (),
    "active": ("PENDING", "RUNNING"),
    "finished": ("COMPLETED",),
    "failed": ("FAILED", "CANCELLED"),
}
STATUS_COLOR = {
    "PENDING": "gray",
    "RUNNING": "blue",
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELLED": "orange",
}
# Where a job's result is shown: (page, param) by task name; others on the Jobs page.
RESULT_PAGES = {
    "analysis.bootstrap": ("analysis", "job"),
    "datasets.import": ("data", "job"),
}
_CACHE = "jobs::cache"
_FLASH = "jobs::flash"
_TOASTS = "_ballast_job_toasts"

CSS = """<style>
[class*="st-key-jobs-row-"] { min-height: 6.2rem; max-height: 6.2rem; overflow: hidden; }
.st-key-jobs-flash { min-height: 2.2rem; max-height: 2.2rem; overflow: hidden; }
.st-key-jobs-detail { min-height: 16rem; max-height: 16rem; overflow: auto; }
</style>"""


# --------------------------------------------------------------------------- shared


def status_badge(job: Job) -> str:
    """Markdown for the job's status (colored)."""
    label = job.status.lower()
    if job.status == "RUNNING" and job.cancel_requested:
        label = "cancelling"
    return f":{STATUS_COLOR.get(job.status, 'gray')}[● {label}]"


def progress_text(job: Job) -> str:
    pct = f"{job.progress:.0%}"
    return f"{pct} · {job.progress_message}" if job.progress_message else pct


def error_text(job: Job) -> str:
    """The failure, what to do about it, and the trace id (one line each)."""
    parts = [job.error_message or "The job failed."]
    if job.error_action:
        parts.append(f"What to do: {job.error_action}")
    if job.trace_id:
        parts.append(f"Trace id: `{job.trace_id}`")
    return "  \n".join(parts)


def api_error_text(exc: AppError) -> str:
    """An api error with its trace id, for ``st.error``."""
    trace = (exc.details or {}).get("trace_id")
    return f"{exc.message} (trace id {trace})" if trace else exc.message


def cancel(ctx: Ctx, job_id: str, flash_key: str) -> None:
    """Button callback: ask the api to cancel a job."""
    try:
        ctx.api.cancel_job(job_id)
        st.session_state[flash_key] = ("info", "Cancel requested.")
    except AppError as exc:
        st.session_state[flash_key] = ("error", api_error_text(exc))


def retry(ctx: Ctx, job_id: str, flash_key: str) -> None:
    """Button callback: run a failed or cancelled job again."""
    try:
        ctx.api.retry_job(job_id)
        st.session_state[flash_key] = ("info", "Started again.")
    except AppError as exc:
        st.session_state[flash_key] = ("error", api_error_text(exc))


def flash(key: str) -> None:
    """The last action's outcome, in a line of fixed height (or a blank line)."""
    kind, text = st.session_state.get(key) or ("", BLANK)
    if kind == "error":
        st.error(text)
    elif kind == "info":
        st.info(text)
    else:
        st.markdown(text)


def job_panel(ctx: Ctx, job: Job, *, key: str) -> None:
    """Status, progress and cancel/retry of one job (for the Data and Analysis pages)."""
    can_write = ctx.can("jobs:write")
    head, act = st.columns([4, 1], vertical_alignment="center")
    head.markdown(f"{status_badge(job)} · `{job.name}`")
    if job.retryable:
        act.button(
            "Retry",
            key=f"{key}::retry::{job.id}",
            on_click=retry,
            args=(ctx, str(job.id), f"{key}::flash"),
            disabled=not can_write,
        )
    else:
        act.button(
            "Cancel",
            key=f"{key}::cancel::{job.id}",
            on_click=cancel,
            args=(ctx, str(job.id), f"{key}::flash"),
            disabled=not can_write or job.finished or job.cancel_requested,
        )
    st.progress(min(max(job.progress, 0.0), 1.0), text=progress_text(job))
    if job.status == "FAILED":
        st.error(error_text(job))
    elif job.status == "CANCELLED":
        st.warning("Cancelled.")


# --------------------------------------------------------------------------- toasts


def notify_finished(ctx: Ctx) -> list[Job]:
    """Toast my jobs that finished since the last call (the first call only starts)."""
    state: dict[str, Any] = st.session_state.setdefault(
        _TOASTS, {"since": None, "seen": []}
    )
    if state["since"] is None:
        state["since"] = datetime.now(UTC)
        return []
    try:
        page = ctx.api.list_jobs(mine=True, finished_since=state["since"], size=20)
    except AppError:
        return []
    seen: list[str] = state["seen"]
    new = [j for j in page.items if str(j.id) not in seen]
    for job in reversed(new):
        icon = {"COMPLETED": "✅", "FAILED": "❌"}.get(job.status, "⏹️")
        st.toast(f"Job {job.name} {job.status.lower()}", icon=icon)
        seen.append(str(job.id))
    del seen[:-200]
    done = [j.completed_at for j in page.items if j.completed_at is not None]
    if done:
        state["since"] = max([state["since"], *done])
    return new


@st.fragment(run_every=TOAST_POLL_S)
def job_toasts() -> None:
    """The frame's poll for my finished jobs (draws nothing but toasts)."""
    ctx: Ctx | None = st.session_state.get(CTX)
    if ctx is None or not ctx.can("jobs:read"):
        return
    with timed_run("job-toasts", "poll"):
        notify_finished(ctx)


# --------------------------------------------------------------------------- page


class JobsPage(Page):
    name = "jobs"
    title = "Jobs"
    icon = "⚙️"
    permission = "jobs:read"
    params = ("show", "id")

    def render(self, ctx: Ctx, router: Router) -> None:
        """The job list (polled) and the selected job's detail."""
        st.html(CSS)
        params = router.state.params_by_page.get(self.name, {})
        show = params.get("show") or "all"
        if show not in FILTERS:
            show = "all"
        admin = ctx.can("jobs:admin")
        st.header(t(ctx, "Jobs"))

        def pick() -> None:
            router.update(
                self.name,
                {"show": st.session_state.get("jobs::show") or "all", "id": None},
            )

        st.session_state.setdefault("jobs::show", show)
        st.segmented_control(
            "Show",
            list(FILTERS),
            key="jobs::show",
            on_change=pick,
            format_func=str.capitalize,
        )
        with st.container(key="jobs-flash"):
            flash(_FLASH)

        def jobs_list() -> None:
            self._list(ctx, router, show, admin)

        st.fragment(jobs_list, run_every=POLL_S)()
        with st.container(key="jobs-detail"):
            self._detail(ctx, router, params.get("id"))
        with st.expander("Recurring jobs"):
            st.fragment(lambda: schedules_panel(ctx))()

    def _fetch(
        self, ctx: Ctx, router: Router, show: str
    ) -> tuple[PageOf[Job] | None, str | None]:
        cache: dict[str, Any] = st.session_state.setdefault(_CACHE, {})
        shown = router.current_page == self.name
        if not shown and show in cache:
            return cache[show], None
        try:
            result = ctx.api.list_jobs(size=PAGE_SIZE, status=FILTERS[show])
        except ApiUnavailable:
            return cache.get(show), "The server is unreachable; showing the last list."
        except AppError as exc:
            return cache.get(show), api_error_text(exc)
        cache[show] = result
        return result, None

    def _list(self, ctx: Ctx, router: Router, show: str, admin: bool) -> None:
        result, problem = self._fetch(ctx, router, show)
        items = result.items if result else []
        me = ctx.user.id if ctx.user else None
        total = result.total if result else 0
        who = "All users' jobs" if admin else "Jobs I can see"
        st.caption(problem or f"{who} · {total} · newest first")
        can_write = ctx.can("jobs:write")
        for i in range(PAGE_SIZE):
            with st.container(key=f"jobs-row-{i}", border=i < len(items)):
                if i >= len(items):
                    st.markdown(BLANK)
                    continue
                job = items[i]
                # A job of someone else's project is shown to its members; the api lets
                # its owner, admins and the project's editors act on it, and says so in
                # the job's `can` (an api without it: my own jobs, or an admin).
                mine = job.created_by == me
                writable = (
                    "write" in job.can
                    if job.can is not None
                    else can_write and (mine or admin)
                )
                self._row(ctx, router, job, writable, not mine)

    def _row(
        self, ctx: Ctx, router: Router, job: Job, can_write: bool, other: bool
    ) -> None:
        jid = str(job.id)
        name, status, bar, acts = st.columns([3, 2, 3, 4], vertical_alignment="center")
        when = job.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        owner = " · other user" if other else ""
        name.markdown(f"**{job.name}**  \n`{jid[:8]}` · {when}{owner}")
        status.markdown(status_badge(job))
        bar.progress(min(max(job.progress, 0.0), 1.0), text=progress_text(job))
        c1, c2, c3 = acts.columns(3)
        c1.button(
            "Cancel",
            key=f"jobs::cancel::{jid}",
            on_click=cancel,
            args=(ctx, jid, _FLASH),
            disabled=not can_write or job.finished or job.cancel_requested,
        )
        c2.button(
            "Retry",
            key=f"jobs::retry::{jid}",
            on_click=retry,
            args=(ctx, jid, _FLASH),
            disabled=not can_write or not job.retryable,
        )
        target, param = RESULT_PAGES.get(job.name, (self.name, "id"))
        extra = {"show": router.state.params_by_page.get(self.name, {}).get("show")}
        c3.button(
            "Result" if job.status == "COMPLETED" else "Details",
            key=f"jobs::open::{jid}",
            on_click=router.navigate,
            args=(
                (target, {param: jid})
                if job.status == "COMPLETED" and target != self.name
                else (self.name, {**extra, "id": jid})
            ),
        )
        if job.status == "FAILED":
            text = job.error_message or "The job failed."
            if job.error_action:
                text += f" — {job.error_action}"
            if job.trace_id:
                text += f" (trace id {job.trace_id})"
            st.caption(f":red[{text}]")
        else:
            st.caption(
                f"attempt {job.attempts} · retries {job.retry_count}/{job.max_retries}"
            )

    def _detail(self, ctx: Ctx, router: Router, job_id: str | None) -> None:
        if not job_id:
            st.caption("Choose a job's Details to see its parameters and result here.")
            return
        try:
            job = ctx.api.get_job(job_id)
        except AppError as exc:
            st.warning(api_error_text(exc))
            return
        st.subheader(f"{job.name} · {job.status.lower()}")
        if job.status == "FAILED":
            st.error(error_text(job))
        left, right = st.columns(2)
        with left:
            st.caption("Parameters")
            st.code(json.dumps(job.params, indent=2, default=str), language="json")
        with right:
            st.caption("Result")
            if job.status != "COMPLETED":
                st.markdown("—")
                return
            try:
                data = ctx.api.get_job_result(job_id).data
            except AppError as exc:
                st.warning(api_error_text(exc))
                return
            st.code(json.dumps(data, indent=2, default=str), language="json")


def schedules_panel(ctx: Ctx) -> None:
    """Recurring jobs: the list with next runs; add, pause / resume, remove.

    Actions run in widget callbacks, before the fragment renders: the list it shows
    already has the change.
    """
    try:
        items = ctx.api.list_schedules()
    except AppError as exc:
        st.warning(api_error_text(exc))
        return
    st.dataframe(
        [
            {
                "name": s.name,
                "task": s.task,
                "cron": s.cron,
                "time zone": s.timezone,
                "state": "active" if s.enabled else "paused",
                "next run (UTC)": (
                    s.next_run_at.strftime("%Y-%m-%d %H:%M") if s.next_run_at else "-"
                ),
                "last error": s.last_error or "",
            }
            for s in items
        ],
        hide_index=True,
        width="stretch",
        height=36 * 6,
    )
    if not ctx.can("jobs:write"):
        return
    flash(_SCHEDULE_FLASH)
    by_name = {s.name: s for s in items}
    if by_name:
        left, mid, right = st.columns([3, 1, 1], vertical_alignment="bottom")
        with left:
            picked = st.selectbox("Schedule", list(by_name), key="jobs::schedule")
        chosen = by_name.get(picked or "")
        if chosen is not None:
            with mid:
                st.button(
                    "Resume" if not chosen.enabled else "Pause",
                    key="jobs::schedule::toggle",
                    width="stretch",
                    on_click=_schedule_action,
                    args=(
                        lambda: ctx.api.set_schedule_enabled(
                            chosen.id, not chosen.enabled
                        ),
                        f"{'Resumed' if not chosen.enabled else 'Paused'} "
                        f"{chosen.name}.",
                    ),
                )
            with right:
                st.button(
                    "Remove",
                    key="jobs::schedule::remove",
                    width="stretch",
                    on_click=_schedule_action,
                    args=(
                        lambda: ctx.api.delete_schedule(chosen.id),
                        f"Removed {chosen.name}.",
                    ),
                )
    with st.form("jobs::schedule::add", border=False):
        a, b = st.columns(2)
        a.text_input("Name", max_chars=100, key="jobs::schedule::name")
        b.text_input("Job", value="demo.sleep", key="jobs::schedule::task")
        c, d = st.columns(2)
        c.text_input(
            "Cron (minute hour day month weekday)",
            value="0 3 * * *",
            max_chars=100,
            key="jobs::schedule::cron",
        )
        d.text_input("Time zone", value="UTC", max_chars=64, key="jobs::schedule::tz")
        st.text_input("Parameters (JSON)", value="{}", key="jobs::schedule::params")
        st.form_submit_button("Add schedule", on_click=_add_schedule, args=(ctx,))


_SCHEDULE_FLASH = "jobs::schedules::flash"


def _add_schedule(ctx: Ctx) -> None:
    state = st.session_state
    name = str(state.get("jobs::schedule::name") or "").strip()
    try:
        kwargs = json.loads(state.get("jobs::schedule::params") or "{}")
    except ValueError:
        kwargs = None
    if not isinstance(kwargs, dict):
        state[_SCHEDULE_FLASH] = ("error", "Parameters must be a JSON object, e.g. {}.")
        return
    _schedule_action(
        lambda: ctx.api.create_schedule(
            name=name,
            task=str(state.get("jobs::schedule::task") or "").strip(),
            cron=str(state.get("jobs::schedule::cron") or ""),
            timezone=str(state.get("jobs::schedule::tz") or "UTC").strip(),
            kwargs=kwargs,
        ),
        f"Added {name}.",
    )


def _schedule_action(action: Callable[[], object], done: str) -> None:
    try:
        action()
    except AppError as exc:
        st.session_state[_SCHEDULE_FLASH] = ("error", api_error_text(exc))
        return
    st.session_state[_SCHEDULE_FLASH] = ("info", done)
