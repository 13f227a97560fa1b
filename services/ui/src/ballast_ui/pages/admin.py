from __future__ import annotations

from typing import Any

import streamlit as st

from ballast_common.errors import AppError
from ballast_ui.client import AdminUser, ApiUnavailable
from ballast_ui.i18n import BLANK
from ballast_ui.router import Page, Router
from ballast_ui.state import Ctx

ROLES = ["viewer", "editor", "admin"]


class AdminPage(Page):
    name = "admin"
    title = "Admin"
    icon = "🛡️"
    permission = "users:write"
    params = ("user",)

    def render(self, ctx: Ctx, router: Router) -> None:
        """Users and their roles: list, change roles/activity, create."""
        st.header("Users and roles")
        msg_key = "admin::message"
        try:
            users = ctx.api.list_users(page=1, size=200).items
        except ApiUnavailable:
            st.warning("The server is unreachable.")
            return
        except AppError as exc:
            st.error(f"Cannot list users: {exc.message}")
            return

        def update(user: AdminUser) -> None:
            changes: dict[str, Any] = {
                "roles": st.session_state.get(f"admin::roles::{user.id}") or user.roles,
                "is_active": bool(st.session_state.get(f"admin::active::{user.id}")),
            }
            try:
                ctx.api.update_user(user.id, changes, expected_version=user.version)
                st.session_state[msg_key] = f"Updated {user.username}."
            except AppError as exc:
                st.session_state[msg_key] = f"Not updated: {exc.message}"

        def end_sessions(user: AdminUser) -> None:
            try:
                ctx.api.end_user_sessions(user.id)
                st.session_state[msg_key] = f"Signed {user.username} out everywhere."
            except AppError as exc:
                st.session_state[msg_key] = f"Not signed out: {exc.message}"

        for user in users:
            c1, c2, c3, c4, c5 = st.columns(
                [2, 3, 1, 1, 1.4], vertical_alignment="center"
            )
            c1.markdown(f"**{user.username}**  \n{user.display_name or ''}")
            st.session_state.setdefault(f"admin::roles::{user.id}", list(user.roles))
            st.session_state.setdefault(f"admin::active::{user.id}", user.is_active)
            c2.multiselect(
                "Roles",
                ROLES,
                key=f"admin::roles::{user.id}",
                label_visibility="collapsed",
            )
            c3.checkbox(
                "Active",
                key=f"admin::active::{user.id}",
                disabled=ctx.user is not None and user.id == ctx.user.id,
            )
            c4.button(
                "Apply", key=f"admin::apply::{user.id}", on_click=update, args=(user,)
            )
            c5.button(
                "Sign out everywhere",
                key=f"admin::logout_all::{user.id}",
                on_click=end_sessions,
                args=(user,),
                # My own: the Settings page (it signs me out here too).
                disabled=ctx.user is not None and user.id == ctx.user.id,
                help="End all of this user's sessions: they must sign in again.",
            )
        st.caption(st.session_state.get(msg_key) or BLANK)

        st.subheader("New user")

        def create() -> None:
            data = {
                "username": st.session_state.get("admin::new::username", ""),
                "password": st.session_state.get("admin::new::password", ""),
                "display_name": st.session_state.get("admin::new::display_name", ""),
                "email": st.session_state.get("admin::new::email") or None,
                "roles": st.session_state.get("admin::new::roles") or ["viewer"],
            }
            try:
                made = ctx.api.create_user(data)
                st.session_state[msg_key] = f"Created {made.username}."
                for k in ("username", "password", "display_name", "email"):
                    st.session_state[f"admin::new::{k}"] = ""
            except AppError as exc:
                st.session_state[msg_key] = f"Not created: {exc.message}"

        with st.form("admin::new", border=True):
            a, b = st.columns(2)
            a.text_input("Username", key="admin::new::username")
            b.text_input(
                "Password (10+ characters)", key="admin::new::password", type="password"
            )
            a.text_input("Display name", key="admin::new::display_name")
            b.text_input("Email", key="admin::new::email")
            st.multiselect("Roles", ROLES, default=["viewer"], key="admin::new::roles")
            st.form_submit_button("Create user", on_click=create)
