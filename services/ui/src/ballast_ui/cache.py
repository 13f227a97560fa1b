"""The Workbench's cache of api answers: the projects list, dataset previews and
analysis results, through `get_or_compute` with keys from `CacheKeys`.

Every value is the answer for one user (the api decides what a user may see) and carries
the tags of what it shows: ``projects``, ``datasets:<id>``, ``jobs:<id>`` and
``users:<id>`` (a role change). The api's audited writes bust those tags after they
commit, in every replica (Redis), before the write's answer goes back; so no UI replica
shows an answer older than a write that has returned.

Without Redis (the embedded default) the api's busts cannot reach this process: the
UI then busts the tags of its own writes itself (`written`) and keeps values for
``L1_ONLY_TTL_S`` only, so a write made elsewhere (a worker, another client) shows
within that time.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ballast_common.cache import Cache, current_cache, init_cache
from ballast_common.config import AppConfig, load_config
from ballast_ui.client import ApiClient, DatasetDetail, JobResult, PageOf, Project

T = TypeVar("T")
# How long (in seconds) an answer is kept when Redis carries the busts.
TTL_S = 600.0
# How long (in seconds) an answer is kept without Redis (no busts from the api).
L1_ONLY_TTL_S = 5.0
# Dataset states that no longer change (a preview in any other state is not kept).
FINAL_DATASET = frozenset({"READY", "FAILED", "CANCELLED"})

_lock = threading.Lock()


def ui_cache(config: AppConfig | None = None) -> Cache:
    """The process's cache, made at start-up from `config` (default: `load_config()`)."""
    cache = current_cache()
    if cache is not None:
        return cache
    with _lock:
        return current_cache() or init_cache(config or load_config())


class _NotKept(Exception):
    """Raised inside a compute to return its value without caching it."""

    def __init__(self, value: Any) -> None:
        super().__init__("not kept")
        self.value = value


def _cached(key: str, fetch: Callable[[], T], tags: Sequence[str]) -> T:
    cache = ui_cache()
    ttl = TTL_S if cache.has_l2 else L1_ONLY_TTL_S
    try:
        return cache.get_or_compute(key, fetch, ttl, tags=tags)
    except _NotKept as answer:
        return answer.value  # type: ignore[no-any-return]


def _user_tag(user_id: uuid.UUID | str) -> str:
    return f"users:{user_id}"


def list_projects(
    api: ApiClient,
    user_id: uuid.UUID | str,
    *,
    page: int = 1,
    size: int = 25,
    q: str | None = None,
    order_by: str | None = None,
) -> PageOf[Project]:
    """`api.list_projects`, cached per user and parameters until a project changes."""
    params = {"page": page, "size": size, "q": q, "order_by": order_by}
    key = ui_cache().keys.projects_list(user_id, params)

    def fetch() -> dict[str, Any]:
        # The fields, not the model: a parametrised generic model does not pickle.
        return dict(api.list_projects(page=page, size=size, q=q, order_by=order_by))

    fields = _cached(key, fetch, ("projects", _user_tag(user_id)))
    return PageOf[Project].model_construct(**fields)


def get_dataset(
    api: ApiClient, user_id: uuid.UUID | str, dataset_id: uuid.UUID | str
) -> DatasetDetail:
    """`api.get_dataset` (with its preview rows), cached once the import is over."""
    key = ui_cache().keys.key("datasets", "preview", dataset_id, {"user": str(user_id)})

    def fetch() -> DatasetDetail:
        dataset = api.get_dataset(dataset_id)
        if dataset.status not in FINAL_DATASET:
            raise _NotKept(dataset)  # still importing: asked again on the next poll
        return dataset

    return _cached(key, fetch, (f"datasets:{dataset_id}", _user_tag(user_id)))


def get_job_result(
    api: ApiClient, user_id: uuid.UUID | str, job_id: uuid.UUID | str
) -> JobResult:
    """`api.get_job_result` of a completed job, cached until the job changes (a retry)."""
    key = ui_cache().keys.key("jobs", "result", job_id, {"user": str(user_id)})
    return _cached(
        key, lambda: api.get_job_result(job_id), (f"jobs:{job_id}", _user_tag(user_id))
    )


def analysis_key(user_id: uuid.UUID | str, params: dict[str, Any]) -> str:
    """The key of the analysis with `params` (dataset, columns, statistic, ...)."""
    return ui_cache().keys.analysis(
        str(params["dataset_id"]), {**params, "user": str(user_id)}
    )


def _analysis_tags(user_id: uuid.UUID | str, params: dict[str, Any]) -> list[str]:
    return [f"datasets:{params['dataset_id']}", _user_tag(user_id)]


def remember_analysis(
    user_id: uuid.UUID | str, params: dict[str, Any], job_id: uuid.UUID | str
) -> None:
    """Keep the completed job that answered the analysis `params`."""
    tags = [*_analysis_tags(user_id, params), f"jobs:{job_id}"]
    _cached(analysis_key(user_id, params), lambda: str(job_id), tags)


def known_analysis(user_id: uuid.UUID | str, params: dict[str, Any]) -> str | None:
    """The id of a completed job that answered the same analysis, if one is cached."""

    def miss() -> str | None:
        raise _NotKept(None)

    return _cached(analysis_key(user_id, params), miss, _analysis_tags(user_id, params))


def written(*tags: str) -> None:
    """After a write of this process: without Redis, bust its tags here (with Redis the
    api's bust has reached this process before the write returned)."""
    cache = ui_cache()
    if not cache.has_l2:
        cache.bust(*tags)
