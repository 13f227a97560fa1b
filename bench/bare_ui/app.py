"""A bare Streamlit app for the UI benchmark: the Workbench's pages and widgets with
`st.navigation`, none of Ballast. Each script run's duration is appended (ms) to the
file named by BENCH_RERUN_LOG (the server-side timer of the bare app)."""

from __future__ import annotations

import os
import time
from datetime import date

import pandas as pd  # type: ignore[import-untyped]
import streamlit as st

_START = time.perf_counter()
LOG = os.environ.get("BENCH_RERUN_LOG")  # noqa: TID251 - bench child process setting


def home() -> None:
    st.title("Home")
    c1, c2, c3 = st.columns(3)
    c1.metric("Projects", 4)
    c2.metric("Unsaved drafts", 0)
    c3.metric("Roles", 1)
    st.subheader("Recently changed projects")
    for i in range(4):
        st.button(f"Project {i}", key=f"home-open-{i}", type="tertiary")


def projects() -> None:
    st.title("Projects")
    left, right = st.columns(2)
    with left:
        st.text_input("Name", "Quarterly revenue dashboard")
        st.text_area("Description", "Demo project.", height=120)
        st.selectbox("Status", ["draft", "active", "paused", "done"])
        st.multiselect("Tags", ["analytics", "finance", "ops"], default=["finance"])
        st.file_uploader("Attachment")
    with right:
        st.slider("Priority", 1, 5, 3)
        st.number_input("Budget", 0.0, step=100.0, format="%.2f")
        st.date_input("Start date", date(2026, 2, 1))
        public = st.checkbox("Public", key="public")
        st.caption(f"public: {'yes' if public else 'no'}")
        st.data_editor(
            pd.DataFrame(columns=["title", "due", "done"]),
            num_rows="dynamic",
            hide_index=True,
        )


def audit() -> None:
    st.title("Audit")
    st.dataframe(
        pd.DataFrame(
            [{"action": "update", "resource": f"drafts {i}"} for i in range(20)]
        )
    )


def admin() -> None:
    st.title("Admin")
    st.dataframe(pd.DataFrame([{"user": u, "roles": u} for u in ("admin", "editor")]))


def settings() -> None:
    st.title("Settings")
    st.selectbox("Theme", ["auto", "light", "dark"])
    st.selectbox("Language", ["en", "de"])
    st.selectbox("Timezone", ["UTC", "Europe/Berlin"])


st.set_page_config(page_title="Bare", layout="wide")
nav = st.navigation(
    [
        st.Page(home, title="Home", url_path="home", default=True),
        st.Page(projects, title="Projects", url_path="projects"),
        st.Page(audit, title="Audit", url_path="audit"),
        st.Page(admin, title="Admin", url_path="admin"),
        st.Page(settings, title="Settings", url_path="settings"),
    ]
)
nav.run()
if LOG:
    with open(LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{(time.perf_counter() - _START) * 1000:.3f}\n")
