from __future__ import annotations

import streamlit as st

from ballast_common.errors import AppError
from ballast_ui.i18n import t
from ballast_ui.router import Page, Router
from ballast_ui.state import Ctx


class HomePage(Page):
    name = "home"
    title = "Home"
    icon = "🏠"

    def render(self, ctx: Ctx, router: Router) -> None:
        """Overview: who I am, my drafts, recent projects."""
        assert ctx.user is not None
        st.header(t(ctx, "Home"))
        st.write(
            f"{t(ctx, 'Signed in as')} **{ctx.user.display_name or ctx.user.username}** ({', '.join(ctx.user.roles)})"
        )
        c1, c2, c3 = st.columns(3)
        status = ctx.outbox.status()
        try:
            projects = ctx.api.list_projects(page=1, size=5, order_by="-updated_at")
            c1.metric(t(ctx, "Projects"), projects.total)
            recent = projects.items
        except AppError:
            c1.metric(t(ctx, "Projects"), "—")
            recent = []
        c2.metric(t(ctx, "Unsaved drafts"), status.pending)
        c3.metric(t(ctx, "Roles"), len(ctx.user.roles))
        st.subheader(t(ctx, "Recently changed projects"))
        with st.container(height=220, border=False):
            for p in recent:
                st.button(
                    f"{p.name} — {p.status}, v{p.version}",
                    key=f"home::open::{p.id}",
                    on_click=router.navigate,
                    args=("projects", {"id": str(p.id)}),
                    type="tertiary",
                )
            if not recent:
                st.caption(t(ctx, "Nothing yet."))
