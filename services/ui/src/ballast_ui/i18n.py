"""The user's preferences applied: language (a small en/de catalogue for the Workbench
chrome), timezone (every timestamp shown) and theme (CSS over Streamlit's own)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from ballast_ui.state import Ctx

# A blank line of text that keeps its height. Markdown drops a line holding only
# whitespace (a "\u00a0" caption renders 0 px tall), an entity survives.
BLANK = "&nbsp;"

_DE = {
    "Home": "Start",
    "Projects": "Projekte",
    "Audit": "Audit",
    "Admin": "Verwaltung",
    "Settings": "Einstellungen",
    "Data": "Daten",
    "Analysis": "Analyse",
    "Jobs": "Aufträge",
    "Signed in as": "Angemeldet als",
    "Unsaved drafts": "Ungespeicherte Entwürfe",
    "Roles": "Rollen",
    "Recently changed projects": "Zuletzt geänderte Projekte",
    "Nothing yet.": "Noch nichts.",
    "Sign out": "Abmelden",
    "Sign out everywhere": "Überall abmelden",
    "Sessions": "Sitzungen",
    "Access denied": "Zugriff verweigert",
    "Page not found": "Seite nicht gefunden",
    "Theme": "Farbschema",
    "Language": "Sprache",
    "Timezone": "Zeitzone",
    "updated": "geändert",
    "Version": "Version",
    "Sharing": "Freigabe",
}


def t(ctx: Ctx | None, text: str) -> str:
    """Translate ``text`` into the user's language (English when unknown)."""
    lang = ctx.user.preferences.get("language") if ctx and ctx.user else None
    return _DE.get(text, text) if lang == "de" else text


def _prefs(ctx: Ctx | None) -> dict[str, object]:
    return dict(ctx.user.preferences) if ctx and ctx.user else {}


def user_zone(ctx: Ctx | None) -> ZoneInfo:
    """The user's timezone preference (UTC when unset or unknown)."""
    name = str(_prefs(ctx).get("timezone") or "UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def fmt_time(ctx: Ctx | None, when: datetime, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """``when`` in the user's timezone, with the zone's abbreviation (naive = UTC)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    local = aware.astimezone(user_zone(ctx))
    return f"{local.strftime(fmt)} {local.tzname() or ''}".rstrip()


# Dark theme over Streamlit's light one: the app's surfaces, text and inputs.
_DARK_CSS = """
.stApp, [data-testid="stHeader"], [data-testid="stBottomBlockContainer"] {
  background-color: #0e1117 !important; color: #fafafa !important; }
[data-testid="stSidebar"], [data-testid="stSidebarContent"] {
  background-color: #262730 !important; color: #fafafa !important; }
.stApp p, .stApp label, .stApp h1, .stApp h2, .stApp h3, .stApp li, .stApp span,
.stApp [data-testid="stMarkdownContainer"], .stApp [data-testid="stCaptionContainer"],
nav.ballast-nav a { color: #fafafa !important; }
.stApp input, .stApp textarea, .stApp [data-baseweb="select"] > div,
.stApp [data-baseweb="input"], .stApp [data-baseweb="textarea"] {
  background-color: #262730 !important; color: #fafafa !important; }
.stApp button[kind="secondary"], .stApp button[kind="tertiary"] {
  background-color: #262730 !important; color: #fafafa !important; }
"""
_LIGHT_CSS = """
.stApp, [data-testid="stHeader"] { background-color: #ffffff !important; color: #31333f !important; }
[data-testid="stSidebar"] { background-color: #f0f2f6 !important; }
"""


def theme_css(ctx: Ctx | None) -> str:
    """CSS for the user's theme (``auto``: none, the browser's preference decides)."""
    theme = _prefs(ctx).get("theme")
    if theme == "dark":
        return _DARK_CSS
    if theme == "light":
        return _LIGHT_CSS
    return ""
