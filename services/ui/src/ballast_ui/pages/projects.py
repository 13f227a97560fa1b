from __future__ import annotations

import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from typing import Any

import streamlit as st

from ballast_common.contracts import ProjectMemberRead
from ballast_common.errors import AppError, NotFoundError, ValidationError
from ballast_ui import cache
from ballast_ui.client import ApiUnavailable, Project
from ballast_ui.forms import (
    SaveResult,
    conflict_view,
    field_note,
    form_toolbar,
    use_form,
    validate,
)
from ballast_ui.fragments import form_fragment, page_fragment_key
from ballast_ui.i18n import BLANK, fmt_time, t, user_zone
from ballast_ui.metrics import note_trigger
from ballast_ui.pages.jobs import api_error_text, flash
from ballast_ui.router import Page, Router, page_number
from ballast_ui.state import Ctx, track, values
from ballast_ui.widgets import (
    s_area,
    s_checkbox,
    s_date,
    s_file,
    s_multiselect,
    s_number,
    s_select,
    s_slider,
    s_table,
    s_text,
    touch_fragment,
)

CORE = (
    "name",
    "description",
    "status",
    "priority",
    "budget",
    "start_date",
    "tags",
    "is_public",
)
EXTRAS = ("attachment", "milestones")
FIELDS = CORE + EXTRAS
STATUSES = ["draft", "active", "paused", "done"]
TAGS = ["analytics", "finance", "ops", "research", "urgent"]
PAGE_SIZE = 10
NEW = "new"
# How long a fetched project serves widget interactions before it is fetched again.
PROJECT_TTL_S = 5.0
_PROJECT = "_ballast_project::"
# Background refreshes of the project being edited (see `_fetch_project`).
_REFRESH = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ballast-project")
DEFAULTS: dict[str, Any] = {
    "name": "",
    "description": "",
    "status": "draft",
    "priority": 3,
    "budget": 0.0,
    "start_date": None,
    "tags": [],
    "is_public": False,
    "attachment": None,
    "milestones": [],
}


def _required(v: Any) -> str | None:
    return "Required." if not str(v or "").strip() else None


def _non_negative(v: Any) -> str | None:
    try:
        return "Must be 0 or more." if float(v or 0) < 0 else None
    except (TypeError, ValueError):
        return "Not a number."


VALIDATORS = {"name": _required, "budget": _non_negative}


def _saved_data(ctx: Ctx, project: Project | None) -> dict[str, Any]:
    if project is None:
        return dict(DEFAULTS)
    data = project.model_dump(mode="json", include=set(CORE))
    extras = ctx.api.get_form(f"project-extras.{project.id}")
    for name in EXTRAS:
        data[name] = (extras.data if extras else {}).get(name, DEFAULTS[name])
    return data


def _is_project_id(project_id: str) -> bool:
    try:
        return str(uuid.UUID(project_id)) == project_id.lower()
    except ValueError:
        return False


# The project form last opened in this session (`workbench.project_opened`).
_OPENED = "_ballast_project_opened"


def _fetch_project(ctx: Ctx, project_id: str) -> Project:
    """The project: fetched once, then refreshed off the script thread.

    A widget interaction never waits for the api: the run uses the copy at hand and,
    once it is `PROJECT_TTL_S` old, starts a background fetch whose result a later run
    takes. The version a save is based on is checked by the api anyway (a newer one
    becomes the conflict view).

    Raises:
        NotFoundError: The project is gone (also when a refresh found that out), or
            the address names no project id at all (``?id=x``: the api is not asked).
        ApiUnavailable: The first fetch failed (a failed refresh keeps the copy).
    """
    if not _is_project_id(project_id):
        raise NotFoundError("This project does not exist.")
    key = f"{_PROJECT}{project_id}"
    hit: tuple[Project, float, Future[Project] | None] | None = st.session_state.get(
        key
    )
    now = time.monotonic()
    if hit is None:
        project = ctx.api.get_project(project_id)
        st.session_state[key] = (project, now, None)
        return project
    project, at, pending = hit
    if pending is not None:
        if not pending.done():
            return project
        try:
            project = pending.result()
        except ApiUnavailable:
            pass  # keep the copy; the next refresh is due in PROJECT_TTL_S
        except AppError:
            st.session_state.pop(key, None)
            raise
        st.session_state[key] = (project, now, None)
        return project
    if now - at >= PROJECT_TTL_S:
        st.session_state[key] = (
            project,
            at,
            _REFRESH.submit(ctx.api.get_project, project_id),
        )
    return project


def forget_project(project_id: str) -> None:
    """Drop the cached project (after a save, so the next run fetches it)."""
    st.session_state.pop(f"{_PROJECT}{project_id}", None)
    st.session_state.pop(f"_ballast_saved::project.{project_id}", None)


class ProjectsPage(Page):
    name = "projects"
    title = "Projects"
    icon = "📁"
    permission = "projects:read"
    params = ("id", "p", "q")

    def _project_id(self, router: Router) -> str | None:
        project_id = (
            router.params.get("id") if router.current_page == self.name else None
        )
        if project_id is None:
            project_id = router.state.params_by_page.get(self.name, {}).get("id")
        return project_id or None

    def view(self, router: Router) -> str:
        """The list, or the detail of one project."""
        return self._project_id(router) or ""

    def render(self, ctx: Ctx, router: Router) -> None:
        """The project list, or one project's detail form."""
        # The list and a form take turns in this fragment: a form drawn again after
        # the list is given its values anew (see `touch_fragment`).
        touch_fragment()
        project_id = self._project_id(router)
        if project_id:
            self._detail(ctx, router, project_id)
        else:
            self._list(ctx, router)

    # ------------------------------------------------------------------ list

    def _list(self, ctx: Ctx, router: Router) -> None:
        params = router.state.params_by_page.get(self.name, {})
        page = page_number(params.get("p"))
        q = params.get("q") or None
        head, new = st.columns([4, 1], vertical_alignment="bottom")
        head.header(t(ctx, "Projects"))
        new.button(
            "New project",
            key="projects::new",
            on_click=router.navigate,
            args=(self.name, {"id": NEW}),
            disabled=not ctx.can("projects:write"),
        )

        def search() -> None:
            wanted = st.session_state.get("projects::q") or None
            # Streamlit may report a change for this input when it leaves the page.
            if wanted == (
                router.state.params_by_page.get(self.name, {}).get("q") or None
            ):
                return
            note_trigger(st.session_state, "widget")
            router.update(self.name, {"q": wanted, "p": 1})

        st.session_state.setdefault("projects::q", q or "")
        st.text_input(
            "Search",
            key="projects::q",
            on_change=search,
            placeholder="name or description",
        )
        assert ctx.user is not None  # the page needs projects:read
        try:
            # Cached per user and page until a project is written (`ballast_ui.cache`).
            result = cache.list_projects(
                ctx.api,
                ctx.user.id,
                page=page,
                size=PAGE_SIZE,
                q=q,
                order_by="-updated_at",
            )
        except ApiUnavailable:
            st.warning("The server is unreachable; the list will be back when it is.")
            return
        except ValidationError:
            # A search term the api refuses (a NUL in the address, say).
            st.warning("This search term cannot be searched for; change it above.")
            return
        # Fixed geometry: always PAGE_SIZE rows, blank ones at the end.
        with st.container(key="projects::rows"):
            for i in range(PAGE_SIZE):
                cols = st.columns([4, 2, 1, 2, 1], vertical_alignment="center")
                if i < len(result.items):
                    p = result.items[i]
                    cols[0].markdown(f"**{p.name}**")
                    cols[1].markdown(p.status)
                    cols[2].markdown("★" * p.priority)
                    cols[3].markdown(f"v{p.version}")
                    cols[4].button(
                        "Open",
                        key=f"projects::open::{p.id}",
                        on_click=router.navigate,
                        args=(self.name, {"id": str(p.id), "p": page, "q": q}),
                    )
                else:
                    cols[0].markdown(BLANK)
        prev, info, nxt = st.columns([1, 3, 1], vertical_alignment="center")
        prev.button(
            "← Previous",
            key="projects::prev",
            disabled=page <= 1,
            on_click=router.navigate,
            args=(self.name, {"p": page - 1, "q": q}),
        )
        info.markdown(f"Page {result.page} of {result.pages} · {result.total} projects")
        nxt.button(
            "Next →",
            key="projects::next",
            disabled=page >= result.pages,
            on_click=router.navigate,
            args=(self.name, {"p": page + 1, "q": q}),
        )

    # ------------------------------------------------------------------ detail

    def _detail(self, ctx: Ctx, router: Router, project_id: str) -> None:
        form_id = f"project.{project_id}"
        project: Project | None = None
        # One fixed slot for a notice: the form below keeps its place in the tree.
        notice = st.empty()
        if project_id != NEW:
            try:
                project = _fetch_project(ctx, project_id)
            except NotFoundError:
                st.error("This project does not exist (any more).")
                st.button(
                    "Back to the list",
                    key="projects::back404",
                    on_click=router.navigate,
                    args=(self.name, {}),
                )
                return
            except ApiUnavailable:
                notice.warning(
                    "The server is unreachable; your edits are kept and will be saved when it is back."
                )
        cache_key = f"_ballast_saved::{form_id}"
        cached: tuple[int, dict[str, Any]] | None = st.session_state.get(cache_key)
        if project is not None or project_id == NEW:
            version_now = project.version if project else 0
            if cached is not None and cached[0] == version_now:
                # The saved data of this version is known: no second api call.
                saved = cached[1]
            else:
                try:
                    saved = _saved_data(ctx, project)
                except ApiUnavailable:
                    saved = cached[1] if cached else dict(DEFAULTS)
                st.session_state[cache_key] = (version_now, saved)
        else:
            saved = cached[1] if cached else dict(DEFAULTS)
        version = project.version if project else 0
        form = use_form(form_id, FIELDS, saved, version)
        if st.session_state.get(_OPENED) != form_id:
            st.session_state[_OPENED] = form_id
            # Members are read once per opening (and after this session changes them).
            st.session_state.pop(_members_key(project_id), None)
            track(ctx, "workbench.project_opened", {"new": project_id == NEW})
        # A new project is mine; an existing one says what I may do to it.
        can_write = ctx.can("projects:write") and (
            project_id == NEW
            or (project is not None and ctx.may(project, "write", "projects:write"))
        )
        can_share = project_id == NEW or (
            project is not None and ctx.may(project, "share", "projects:write")
        )

        def saver(data: dict[str, Any], expected: int, force: bool) -> SaveResult:
            forget_project(project_id)
            core = {k: data.get(k) for k in CORE}
            core["tags"] = list(core.get("tags") or [])
            core["budget"] = float(core.get("budget") or 0)
            core["priority"] = int(core.get("priority") or 3)
            if project_id == NEW:
                created = ctx.api.create_project(core)
                pid = str(created.id)
                cache.written("projects", f"projects:{pid}")
                ctx.api.save_form(
                    f"project-extras.{pid}",
                    {k: data.get(k) for k in EXTRAS},
                    None,
                    force=True,
                )
                ctx.api.delete_drafts(form_id)
                for name in FIELDS:
                    values().pop(f"{form_id}.{name}", None)
                router.navigate(self.name, {"id": pid})
                return SaveResult(dict(DEFAULTS), 0)
            updated = ctx.api.update_project(
                project_id, core, expected_version=expected or None, force=force
            )
            cache.written("projects", f"projects:{project_id}")
            ctx.api.save_form(
                f"project-extras.{project_id}",
                {k: data.get(k) for k in EXTRAS},
                None,
                force=True,
            )
            ctx.api.delete_drafts(form_id)
            out = updated.model_dump(mode="json", include=set(CORE))
            out.update({k: data.get(k) for k in EXTRAS})
            return SaveResult(out, updated.version)

        def back() -> None:
            router.navigate(
                self.name, {k: v for k, v in router.params.items() if k != "id"}
            )

        title = project.name if project else "New project"
        head, close = st.columns([4, 1], vertical_alignment="bottom")
        head.header(title)
        close.button("← All projects", key=f"{form_id}::close", on_click=back)
        # What I may only read is shown, not offered for editing (the api would refuse).
        ro = not can_write
        if ro and project is not None:
            notice.info("You can see this project but not change it.")
        page = page_fragment_key(self.name)

        def draw_form() -> None:
            # A fragment of its own: a field's change reruns the form, not the table
            # and the sharing list below (see `ballast_ui.fragments`).
            form = use_form(form_id, FIELDS, saved, version)
            form_toolbar(
                form,
                saver,
                on_saved=back,
                validators=VALIDATORS,
                can_write=can_write,
                rerun=page,
            )
            conflict_view(form, saver, on_saved=back, rerun=page)
            errors = validate(form, VALIDATORS)

            def note(name: str) -> None:
                st.caption(field_note(form, name, errors))

            k = form_id
            left, right = st.columns(2)
            with left:
                s_text("Name", f"{k}.name", max_chars=200, disabled=ro)
                note("name")
                s_area("Description", f"{k}.description", height=120, disabled=ro)
                note("description")
                s_select(
                    "Status", f"{k}.status", STATUSES, default="draft", disabled=ro
                )
                note("status")
                s_multiselect("Tags", f"{k}.tags", TAGS, disabled=ro)
                note("tags")
                s_file("Attachment", f"{k}.attachment", disabled=ro)
                note("attachment")
            with right:
                s_slider("Priority", f"{k}.priority", 1, 5, default=3, disabled=ro)
                note("priority")
                s_number(
                    "Budget",
                    f"{k}.budget",
                    default=0.0,
                    min_value=0.0,
                    step=100.0,
                    format="%.2f",
                    disabled=ro,
                )
                note("budget")
                s_date(
                    "Start date",
                    f"{k}.start_date",
                    default=None,
                    min_value=date(2000, 1, 1),
                    disabled=ro,
                )
                note("start_date")
                s_checkbox(
                    "Public",
                    f"{k}.is_public",
                    disabled=ro or not can_share,
                    help=(
                        None
                        if can_share
                        else "Only the owner or an admin may change this."
                    ),
                )
                note("is_public")

        form_fragment(self.name, "projects-form", draw_form)
        s_table(
            "Milestones",
            f"{form_id}.milestones",
            ["title", "due", "done", "hours"],
            column_config={
                "due": st.column_config.DateColumn(),
                "done": st.column_config.CheckboxColumn(),
                "hours": st.column_config.NumberColumn(min_value=0),
            },
            disabled=ro,
        )
        st.caption(field_note(form, "milestones", validate(form, VALIDATORS)))
        if project is not None:
            st.caption(
                f"{t(ctx, 'Version')} {project.version} · {t(ctx, 'updated')} "
                f"{fmt_time(ctx, project.updated_at)}",
                help=f"{t(ctx, 'Timezone')}: {user_zone(ctx).key}",
            )
            sharing(ctx, str(project.id), can_share)


# --------------------------------------------------------------------------- sharing


def _members_key(project_id: str) -> str:
    return f"_ballast_members::{project_id}"


def _share(ctx: Ctx, project_id: str) -> None:
    """Form callback: share the project with the user named in the form."""
    name_key, role_key = f"share::{project_id}::username", f"share::{project_id}::role"
    username = str(st.session_state.get(name_key) or "").strip()
    flash_key = f"share::{project_id}::flash"
    if not username:
        st.session_state[flash_key] = ("error", "Name the user to share with.")
        return
    try:
        member = ctx.api.add_member(
            project_id, username, str(st.session_state.get(role_key) or "viewer")
        )
    except AppError as exc:
        st.session_state[flash_key] = ("error", api_error_text(exc))
        return
    st.session_state[name_key] = ""
    st.session_state.pop(_members_key(project_id), None)
    st.session_state[flash_key] = (
        "info",
        f"Shared with {member.username} ({member.role}).",
    )


def _unshare(ctx: Ctx, project_id: str, user_id: str, username: str) -> None:
    """Button callback: stop sharing the project with one member."""
    flash_key = f"share::{project_id}::flash"
    try:
        ctx.api.remove_member(project_id, user_id)
    except AppError as exc:
        st.session_state[flash_key] = ("error", api_error_text(exc))
        return
    st.session_state.pop(_members_key(project_id), None)
    st.session_state[flash_key] = ("info", f"No longer shared with {username}.")


def sharing(ctx: Ctx, project_id: str, can_share: bool) -> None:
    """Who else sees the project and with which role; its owner (and admins) share it
    with a user by username or stop sharing. Read once per opening of the project."""
    key = _members_key(project_id)
    members: list[ProjectMemberRead] | None = st.session_state.get(key)
    problem = None
    if members is None:
        try:
            members = ctx.api.list_members(project_id)
            st.session_state[key] = members
        except AppError as exc:
            problem = api_error_text(exc)
    with st.container(key=f"share-{project_id}"):
        st.subheader(t(ctx, "Sharing"))
        if problem is not None:
            st.caption(f"The members cannot be shown: {problem}")
        elif not members:
            st.caption("Shared with nobody: only its owner and admins see it.")
        for member in members or []:
            who, role, act = st.columns([3, 2, 1], vertical_alignment="center")
            who.markdown(
                f"**{member.display_name or member.username}** `{member.username}`"
            )
            role.markdown(member.role)
            act.button(
                "Remove",
                key=f"share::{project_id}::remove::{member.user_id}",
                on_click=_unshare,
                args=(ctx, project_id, str(member.user_id), member.username),
                disabled=not can_share,
            )
        if can_share:
            with st.form(f"share::{project_id}::form", border=False):
                name, role, go = st.columns([3, 2, 1], vertical_alignment="bottom")
                name.text_input(
                    "Share with user",
                    key=f"share::{project_id}::username",
                    max_chars=64,
                )
                role.selectbox(
                    "Role", ["viewer", "editor"], key=f"share::{project_id}::role"
                )
                go.form_submit_button("Share", on_click=_share, args=(ctx, project_id))
        flash(f"share::{project_id}::flash")
