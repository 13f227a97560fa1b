from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any
from zoneinfo import available_timezones

import streamlit as st

from ballast_common.errors import AppError
from ballast_ui.client import Preferences
from ballast_ui.forms import SaveResult, field_note, form_toolbar, use_form
from ballast_ui.i18n import fmt_time, t, user_zone
from ballast_ui.router import FULL_RERUN, Page, Router
from ballast_ui.state import Ctx, logout
from ballast_ui.widgets import s_select

FIELDS = ("theme", "language", "timezone")
ZONES = [
    *sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/")),
    "UTC",
]


class SettingsPage(Page):
    name = "settings"
    title = "Settings"
    icon = "⚙️"

    def render(self, ctx: Ctx, router: Router) -> None:
        """Theme, language and timezone, saved to the user's preferences."""
        assert ctx.user is not None
        st.header(t(ctx, "Settings"))
        saved = Preferences.model_validate(
            {**Preferences().model_dump(), **ctx.user.preferences}
        ).model_dump()
        form_id = "settings.preferences"
        form = use_form(form_id, FIELDS, saved, 1)

        def saver(data: dict[str, Any], expected: int, _force: bool) -> SaveResult:
            prefs = ctx.api.put_preferences(Preferences.model_validate(data))
            ctx.user = (
                ctx.user.model_copy(update={"preferences": prefs.model_dump()})
                if ctx.user
                else None
            )
            with contextlib.suppress(AppError):
                ctx.api.delete_drafts(form_id)
            # Theme and language belong to the frame: redraw all of it once.
            st.session_state[FULL_RERUN] = True
            return SaveResult(prefs.model_dump(), expected + 1)

        form_toolbar(form, saver)
        s_select(
            t(ctx, "Theme"),
            f"{form_id}.theme",
            ["auto", "light", "dark"],
            default="auto",
        )
        st.caption(field_note(form, "theme", {}))
        s_select(
            t(ctx, "Language"),
            f"{form_id}.language",
            ["en", "de"],
            default="en",
            format_func=lambda v: {"en": "English", "de": "Deutsch"}[v],
        )
        st.caption(field_note(form, "language", {}))
        s_select(t(ctx, "Timezone"), f"{form_id}.timezone", ZONES, default="UTC")
        st.caption(field_note(form, "timezone", {}))
        st.caption(
            f"{t(ctx, 'Timezone')} {user_zone(ctx).key}: "
            f"{fmt_time(ctx, datetime.now(UTC), '%Y-%m-%d %H:%M')}",
            help="Every time shown in the Workbench uses this timezone.",
        )
        st.subheader(t(ctx, "Sessions"))

        def everywhere() -> None:
            logout(ctx, everywhere=True)
            # Signed out: the frame (header, navigation) is drawn anew, as a login.
            st.session_state[FULL_RERUN] = True

        st.button(
            t(ctx, "Sign out everywhere"),
            key="settings::logout_all",
            on_click=everywhere,
            help="Ends your sessions in every browser and on every device, this one too.",
        )
