"""Analysis page: bootstrap confidence intervals of dataset columns, run as a job.

The controls are controlled widgets (their values survive page changes and refreshes).
The running job (``?job=``) is followed by a ``run_every`` fragment with a progress bar
and a cancel button; a completed job's result is fetched once, kept, and charted.

Results are cached (`ballast_ui.cache`, shared by the UI's replicas): a completed job's
result by job, and the job by its parameters, so running the same analysis of the same
dataset again shows the earlier result at once instead of starting a job (until the
dataset or the job is written again).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from ballast_common.errors import AppError
from ballast_ui import cache
from ballast_ui.client import Dataset, DatasetDetail, Job
from ballast_ui.downloads import download_buttons
from ballast_ui.i18n import t
from ballast_ui.pages.jobs import api_error_text, flash, job_panel
from ballast_ui.router import Page, Router
from ballast_ui.state import Ctx, get_config, track, values
from ballast_ui.widgets import s_multiselect, s_select, s_slider

FORM = "analysis"
TASK = "analysis.bootstrap"
STATISTICS = ["mean", "median", "std"]
MODES = ["fast", "accurate"]
POLL_S = 1.0
CHART_HEIGHT = 280
_FLASH = "analysis::flash"
_RESULTS = "analysis::results"
# The parameters of the analyses started in this session, by job id (for the cache).
_STARTED = "analysis::started"
_NUMERIC = ("int", "float", "uint", "decimal", "double")

CSS = """<style>
.st-key-analysis-flash { min-height: 3.5rem; max-height: 3.5rem; overflow: hidden; }
.st-key-analysis-run { min-height: 44rem; }
</style>"""


def analysis_params(params: dict[str, Any]) -> dict[str, Any]:
    """What makes two analyses the same (a job's kwargs, normalised for the cache)."""
    return {
        "dataset_id": str(params.get("dataset_id")),
        "columns": list(params.get("columns") or []),
        "statistic": params.get("statistic") or "mean",
        "confidence": round(float(params.get("confidence") or 0.95), 6),
        "mode": params.get("mode") or "fast",
    }


def numeric_columns(dataset: DatasetDetail | Dataset) -> list[str]:
    """The dataset's columns a statistic can be computed on."""
    return [
        str(c["name"])
        for c in dataset.columns
        if str(c.get("dtype", "")).lower().startswith(_NUMERIC)
    ]


def result_frame(data: dict[str, Any]) -> pd.DataFrame:
    """One row per column: estimate and interval."""
    rows = [
        {
            "column": name,
            "estimate": r["estimate"],
            "low": r["low"],
            "high": r["high"],
            "n": r.get("n"),
            "resamples": r.get("n_resamples"),
        }
        for name, r in (data.get("columns") or {}).items()
    ]
    return pd.DataFrame(
        rows, columns=["column", "estimate", "low", "high", "n", "resamples"]
    )


def interval_chart(frame: pd.DataFrame) -> alt.LayerChart | alt.FacetChart:
    """Estimates as points with their confidence intervals as rules."""
    base = alt.Chart(frame).encode(x=alt.X("column:N", title=None))
    rules = base.mark_rule(strokeWidth=3).encode(
        y=alt.Y("low:Q", title="value", scale=alt.Scale(zero=False)), y2="high:Q"
    )
    points = base.mark_point(filled=True, size=90).encode(
        y="estimate:Q", tooltip=["column", "estimate", "low", "high"]
    )
    return alt.layer(rules, points).properties(height=CHART_HEIGHT)


def distribution_frame(result: dict[str, Any]) -> pd.DataFrame:
    """The bootstrap distribution of one column (bin centre → count)."""
    edges = result.get("hist_edges") or []
    counts = result.get("hist_counts") or []
    centres = [(a + b) / 2 for a, b in pairwise(edges)]
    return pd.DataFrame({"value": centres[: len(counts)], "count": counts})


class AnalysisPage(Page):
    name = "analysis"
    title = "Analysis"
    icon = "📊"
    permission = "jobs:read"
    params = ("job",)

    def render(self, ctx: Ctx, router: Router) -> None:
        """Controls, then the current analysis job and its result."""
        st.html(CSS)
        st.header(t(ctx, "Analysis"))
        params = router.state.params_by_page.get(self.name, {})
        self._controls(ctx, router)
        with st.container(key="analysis-run"):
            job_id = params.get("job")
            if job_id:

                def analysis_job() -> None:
                    self._job(ctx, job_id)

                st.fragment(analysis_job, run_every=POLL_S)()
            else:
                st.caption("Choose a dataset and columns, then run the analysis.")

    def _controls(self, ctx: Ctx, router: Router) -> None:
        can_write = ctx.can("jobs:write")
        try:
            ready = ctx.api.list_datasets(size=100, status=["READY"]).items
        except AppError as exc:
            st.warning(api_error_text(exc))
            ready = []
        ready.sort(key=lambda d: d.created_at, reverse=True)
        names = {str(d.id): d.name for d in ready}
        left, right = st.columns(2)
        with left:
            dataset_id = s_select(
                "Dataset",
                f"{FORM}.dataset",
                ["", *names],
                default="",
                format_func=lambda v: names.get(v, v) if v else "(choose a dataset)",
            )
            chosen = next((d for d in ready if str(d.id) == dataset_id), None)
            columns = numeric_columns(chosen) if chosen else []
            s_multiselect(
                "Columns",
                f"{FORM}.columns",
                columns,
                placeholder="numeric columns",
                disabled=chosen is None,
            )
        with right:
            s_select("Statistic", f"{FORM}.statistic", STATISTICS, default="mean")
            s_slider(
                "Confidence", f"{FORM}.confidence", 0.80, 0.99, default=0.95, step=0.01
            )
            s_select(
                "Mode",
                f"{FORM}.mode",
                MODES,
                default=get_config().compute,
                format_func=lambda m: {
                    "fast": "fast (1,000 resamples)",
                    "accurate": "accurate (10,000 resamples)",
                }[m],
            )

        def start() -> None:
            self._start(ctx, router, columns)

        st.button(
            "Run analysis",
            key="analysis::run",
            type="primary",
            on_click=start,
            # Running an analysis changes the dataset's project (its jobs, results).
            disabled=chosen is None
            or not (can_write and ctx.may(chosen, "write", "jobs:write")),
        )
        with st.container(key="analysis-flash"):
            flash(_FLASH)

    def _start(self, ctx: Ctx, router: Router, allowed: list[str]) -> None:
        store = values()
        dataset_id = store.get(f"{FORM}.dataset")
        columns = [c for c in store.get(f"{FORM}.columns") or [] if c in allowed]
        if not dataset_id:
            st.session_state[_FLASH] = ("error", "Choose a dataset first.")
            return
        if not columns:
            st.session_state[_FLASH] = ("error", "Choose at least one numeric column.")
            return
        kwargs = {
            "dataset_id": dataset_id,
            "columns": columns,
            "statistic": store.get(f"{FORM}.statistic") or "mean",
            "confidence": float(store.get(f"{FORM}.confidence") or 0.95),
            "mode": store.get(f"{FORM}.mode") or get_config().compute,
        }
        assert ctx.user is not None  # the page needs jobs:read
        known = cache.known_analysis(ctx.user.id, analysis_params(kwargs))
        if known is not None:
            st.session_state[_FLASH] = (
                "info",
                "The same analysis ran before: its result is shown (from the cache).",
            )
            router.navigate(self.name, {"job": known})
            return
        try:
            job = ctx.api.create_job(TASK, kwargs, tags=["analysis"])
        except AppError as exc:
            st.session_state[_FLASH] = ("error", f"Not started: {api_error_text(exc)}")
            return
        track(ctx, "workbench.analysis_started", {"mode": kwargs["mode"]})
        st.session_state.setdefault(_STARTED, {})[str(job.id)] = analysis_params(kwargs)
        st.session_state[_FLASH] = ("info", f"Analysis started ({kwargs['mode']}).")
        router.navigate(self.name, {"job": str(job.id)})

    def _job(self, ctx: Ctx, job_id: str) -> None:
        results: dict[str, Any] = st.session_state.setdefault(_RESULTS, {})
        done = results.get(job_id)
        if done is None:
            try:
                job: Job = ctx.api.get_job(job_id)
            except AppError as exc:
                st.warning(api_error_text(exc))
                return
            if job.status == "COMPLETED":
                assert ctx.user is not None  # the page needs jobs:read
                try:
                    data = cache.get_job_result(ctx.api, ctx.user.id, job_id).data
                except AppError as exc:
                    st.warning(api_error_text(exc))
                    return
                started = st.session_state.get(_STARTED, {}).get(job_id)
                if started is not None:
                    cache.remember_analysis(ctx.user.id, started, job_id)
                done = results[job_id] = (job, data)
            else:
                job_panel(ctx, job, key="analysis::job")
                flash("analysis::job::flash")
                return
        job, data = done
        job_panel(ctx, job, key="analysis::job")
        self._result(data)
        download_buttons(
            ctx.api,
            f"/jobs/{job.id}/result/export",
            f"analysis-{str(job.id)[:8]}",
            key=f"analysis::download::{job.id}",
        )

    def _result(self, data: dict[str, Any]) -> None:
        frame = result_frame(data)
        st.subheader(f"Result · {data.get('mode', '')} mode")
        st.dataframe(frame, hide_index=True, width="stretch", height=36 * 6)
        chart, dist = st.columns(2)
        with chart:
            st.caption("Estimates with confidence intervals")
            st.altair_chart(interval_chart(frame), width="stretch")
        columns = list((data.get("columns") or {}).keys())
        with dist:
            if not columns:
                return
            pick = st.selectbox(
                "Bootstrap distribution of", columns, key="analysis::dist"
            )
            st.bar_chart(
                distribution_frame(data["columns"][pick]),
                x="value",
                y="count",
                height=CHART_HEIGHT - 40,
            )
