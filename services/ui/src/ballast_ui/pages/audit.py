from __future__ import annotations

import streamlit as st

from ballast_ui.client import ApiUnavailable
from ballast_ui.i18n import fmt_time, t, user_zone
from ballast_ui.router import Page, Router, page_number
from ballast_ui.state import Ctx

PAGE_SIZE = 20
RESOURCES = ["", "projects", "drafts", "forms", "users", "sessions"]


class AuditPage(Page):
    name = "audit"
    title = "Audit"
    icon = "🧾"
    permission = "audit:read"
    params = ("p", "type")

    def render(self, ctx: Ctx, router: Router) -> None:
        """The audit log, newest first, filterable by resource type."""
        params = router.state.params_by_page.get(self.name, {})
        page = page_number(params.get("p"))
        rtype = params.get("type") or ""
        st.header(t(ctx, "Audit"))

        def pick_type() -> None:
            router.update(
                self.name, {"type": st.session_state.get("audit::type") or None, "p": 1}
            )

        st.session_state.setdefault("audit::type", rtype if rtype in RESOURCES else "")
        st.selectbox(
            "Resource type",
            RESOURCES,
            key="audit::type",
            on_change=pick_type,
            format_func=lambda v: v or "all",
        )
        try:
            result = ctx.api.list_audit(
                page=page, size=PAGE_SIZE, resource_type=rtype or None
            )
        except ApiUnavailable:
            st.warning("The server is unreachable.")
            return
        zone = user_zone(ctx)
        rows = [
            {
                "when": fmt_time(ctx, e.timestamp, "%Y-%m-%d %H:%M:%S"),
                "action": e.action,
                "resource": f"{e.resource_type}/{e.resource_id}",
                "user": str(e.user_id or ""),
                "changes": ", ".join(sorted((e.new_values or {}).keys())),
            }
            for e in result.items
        ]
        st.dataframe(
            rows,
            height=36 * (PAGE_SIZE + 1),
            hide_index=True,
            width="stretch",
            column_order=["when", "action", "resource", "user", "changes"],
        )
        prev, info, nxt = st.columns([1, 3, 1], vertical_alignment="center")
        prev.button(
            "← Newer",
            key="audit::prev",
            disabled=page <= 1,
            on_click=router.navigate,
            args=(self.name, {"p": page - 1, "type": rtype or None}),
        )
        info.markdown(
            f"Page {result.page} of {result.pages} · {result.total} entries · times in {zone.key}"
        )
        nxt.button(
            "Older →",
            key="audit::next",
            disabled=page >= result.pages,
            on_click=router.navigate,
            args=(self.name, {"p": page + 1, "type": rtype or None}),
        )
