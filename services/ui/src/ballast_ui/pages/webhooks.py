"""Outbound webhooks (admins): subscriptions, the delivery log, redelivery."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ballast_common.contracts.webhooks import EVENT_TYPES
from ballast_common.errors import AppError
from ballast_ui.client import ApiUnavailable
from ballast_ui.i18n import BLANK
from ballast_ui.router import Page, Router
from ballast_ui.state import Ctx

MESSAGE = "webhooks::message"
NEW_SECRET_KEY = "webhooks::secret"  # noqa: S105 - a session-state key
STATUSES = ["FAILED", "PENDING", "SUCCEEDED"]


class WebhooksPage(Page):
    name = "webhooks"
    title = "Webhooks"
    icon = "🔔"
    permission = "webhooks:admin"

    def render(self, ctx: Ctx, router: Router) -> None:
        st.header("Outbound webhooks")
        try:
            subs = ctx.api.list_subscriptions()
        except ApiUnavailable:
            st.warning("The server is unreachable.")
            return
        except AppError as exc:
            st.error(f"Cannot list subscriptions: {exc.message}")
            return
        self._new_secret()
        self._subscriptions(ctx, subs)
        st.caption(st.session_state.get(MESSAGE) or BLANK)
        self._create(ctx)
        self._deliveries(ctx, {str(s.id): s.url for s in subs})

    @staticmethod
    def _new_secret() -> None:
        made = st.session_state.get(NEW_SECRET_KEY)
        if not made:
            return
        url, secret = made
        st.success(
            f"Subscribed {url}. Its signing secret is shown this once: "
            "give it to the receiver now."
        )
        st.code(secret, language=None)
        st.button(
            "I have stored the secret",
            key="webhooks::secret::done",
            on_click=lambda: st.session_state.pop(NEW_SECRET_KEY, None),
        )

    @staticmethod
    def _subscriptions(ctx: Ctx, subs: list[Any]) -> None:
        st.subheader("Subscriptions")
        if not subs:
            st.caption("No endpoint is subscribed.")

        def delete(sub_id: str, url: str) -> None:
            try:
                ctx.api.delete_subscription(sub_id)
                st.session_state[MESSAGE] = f"Deleted the subscription of {url}."
            except AppError as exc:
                st.session_state[MESSAGE] = f"Not deleted: {exc.message}"

        for sub in subs:
            c1, c2, c3 = st.columns([4, 3, 1], vertical_alignment="center")
            state = "enabled" if sub.enabled else "disabled"
            c1.markdown(f"**{sub.url}**  \n{sub.description or BLANK}")
            c2.markdown(
                f"{', '.join(sub.events)}  \n{state} · circuit {sub.circuit or 'closed'}"
            )
            c3.button(
                "Delete",
                key=f"webhooks::delete::{sub.id}",
                on_click=delete,
                args=(str(sub.id), sub.url),
            )

    @staticmethod
    def _create(ctx: Ctx) -> None:
        st.subheader("New subscription")

        def create() -> None:
            url = (st.session_state.get("webhooks::new::url") or "").strip()
            events = st.session_state.get("webhooks::new::events") or []
            try:
                made = ctx.api.create_subscription(
                    url,
                    events,
                    description=st.session_state.get("webhooks::new::description", ""),
                )
            except AppError as exc:
                st.session_state[MESSAGE] = f"Not subscribed: {exc.message}"
                return
            st.session_state[NEW_SECRET_KEY] = (made.url, made.secret)
            st.session_state[MESSAGE] = BLANK
            st.session_state["webhooks::new::url"] = ""
            st.session_state["webhooks::new::description"] = ""

        with st.form("webhooks::new", border=True):
            st.text_input("Endpoint URL (http or https)", key="webhooks::new::url")
            st.multiselect("Events", list(EVENT_TYPES), key="webhooks::new::events")
            st.text_input("Description", key="webhooks::new::description")
            st.form_submit_button("Subscribe", on_click=create)

    @staticmethod
    def _deliveries(ctx: Ctx, urls: dict[str, str]) -> None:
        st.subheader("Delivery log")
        status = st.selectbox("Status", ["any", *STATUSES], key="webhooks::log::status")
        try:
            log = ctx.api.list_deliveries(
                status=None if status == "any" else status, limit=100
            )
        except AppError as exc:
            st.error(f"Cannot read the delivery log: {exc.message}")
            return
        if not log:
            st.caption("No deliveries.")
            return
        st.dataframe(
            [
                {
                    "created": d.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    "event": d.event_type,
                    "endpoint": urls.get(str(d.subscription_id), "?"),
                    "status": d.status,
                    "attempts": d.attempts,
                    "last answer": d.last_status_code,
                    "last error": d.last_error or "",
                    "id": str(d.id),
                }
                for d in log
            ],
            hide_index=True,
            width="stretch",
        )

        def redeliver() -> None:
            chosen = st.session_state.get("webhooks::redeliver::id")
            if not chosen:
                return
            try:
                again = ctx.api.redeliver(chosen)
                st.session_state[MESSAGE] = (
                    f"Delivery {again.id} queued again ({again.event_type})."
                )
            except AppError as exc:
                st.session_state[MESSAGE] = f"Not queued: {exc.message}"

        done = [str(d.id) for d in log if d.status != "PENDING"]
        if done:
            c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
            c1.selectbox("Send again", done, key="webhooks::redeliver::id")
            c2.button("Redeliver", key="webhooks::redeliver", on_click=redeliver)
