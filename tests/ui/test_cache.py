"""The Workbench's cache of api answers (`ballast_ui.cache`): the projects list, dataset
previews and analysis results; the second identical call asks the api nothing, and
writes bust what they touched (here, and through Redis in the other replicas)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ballast_common import cache as cache_api
from ballast_common.cache import Cache
from ballast_common.config import AppConfig
from ballast_testing.servers import RedisServer
from ballast_ui import cache
from ballast_ui.client import ApiClient, make_http

NOW = datetime.now(UTC).isoformat()


class FakeApi:
    """Projects, one dataset and one job result; counts what it is asked."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.names = ["alpha", "beta"]
        self.dataset_status = "IMPORTING"
        self.dataset_id = str(uuid.uuid4())
        self.job_id = str(uuid.uuid4())

    def project(self, name: str) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
            "name": name,
            "owner_id": None,
            "version": 1,
            "created_at": NOW,
            "updated_at": NOW,
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[path] += 1
        if path == "/v1/projects":
            items = [self.project(n) for n in self.names]
            body: Any = {
                "items": items,
                "total": len(items),
                "page": 1,
                "size": 10,
                "pages": 1,
            }
        elif path == f"/v1/datasets/{self.dataset_id}":
            body = {
                "id": self.dataset_id,
                "project_id": None,
                "name": "sales",
                "format": "csv",
                "filename": "sales.csv",
                "status": self.dataset_status,
                "size_bytes": 10,
                "sha256": "0" * 64,
                "row_count": 1,
                "columns": [{"name": "amount", "dtype": "int64"}],
                "error_code": None,
                "error_message": None,
                "job_id": self.job_id,
                "created_by": None,
                "version": 1,
                "created_at": NOW,
                "updated_at": NOW,
                "preview": [{"amount": 1}],
            }
        elif path == f"/v1/jobs/{self.job_id}/result":
            body = {"job_id": self.job_id, "data": {"columns": {"amount": {}}}}
        else:
            return httpx.Response(404, json={"code": "not_found", "message": path})
        return httpx.Response(200, json=body)


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
def api(fake: FakeApi) -> Iterator[ApiClient]:
    http = make_http("http://api.invalid", transport=httpx.MockTransport(fake))
    yield ApiClient(http, "token")
    http.close()


@pytest.fixture
def l1_only() -> Iterator[Cache]:
    """The embedded default: this process's cache is L1 only."""
    made = cache_api.init_cache(AppConfig(), listen=False)
    yield made
    cache_api.reset_cache()


@pytest.fixture
def with_redis(redis_server: RedisServer) -> Iterator[Cache]:
    made = cache.ui_cache(AppConfig(redis_url=redis_server.url))
    yield made
    cache_api.reset_cache()


@pytest.fixture
def other_replica(redis_server: RedisServer) -> Iterator[Callable[[], Cache]]:
    """Another process's cache over the same Redis (e.g. the api that writes)."""
    made: list[Cache] = []

    def make() -> Cache:
        replica = cache_api.build_cache(AppConfig(redis_url=redis_server.url))
        made.append(replica)
        return replica

    yield make
    for replica in made:
        replica.close()


def test_ui_cache_makes_the_process_cache_once() -> None:
    cache_api.reset_cache()
    try:
        first = cache.ui_cache(AppConfig())
        assert cache.ui_cache() is first is cache_api.current_cache()
    finally:
        cache_api.reset_cache()


@pytest.mark.usefixtures("l1_only")
def test_the_second_identical_projects_list_asks_the_api_nothing(
    api: ApiClient, fake: FakeApi
) -> None:
    user = uuid.uuid4()
    first = cache.list_projects(api, user, size=10, order_by="name")
    second = cache.list_projects(api, user, size=10, order_by="name")
    assert fake.calls["/v1/projects"] == 1
    assert [p.name for p in second.items] == [p.name for p in first.items]
    assert second.total == 2
    # Other parameters, or another user, are other answers.
    cache.list_projects(api, user, size=10, order_by="-name")
    cache.list_projects(api, uuid.uuid4(), size=10, order_by="name")
    assert fake.calls["/v1/projects"] == 3


@pytest.mark.usefixtures("l1_only")
def test_without_redis_the_uis_own_write_busts_its_cache(
    api: ApiClient, fake: FakeApi
) -> None:
    user = uuid.uuid4()
    cache.list_projects(api, user)
    fake.names.append("gamma")
    cache.written("projects", "projects:x")
    assert [p.name for p in cache.list_projects(api, user).items][-1] == "gamma"
    assert fake.calls["/v1/projects"] == 2


@pytest.mark.usefixtures("with_redis")
def test_with_redis_a_write_elsewhere_busts_this_replica(
    api: ApiClient, fake: FakeApi, other_replica: Callable[[], Cache]
) -> None:
    user = uuid.uuid4()
    writer = other_replica()
    cache.list_projects(api, user)
    cache.list_projects(api, user)
    assert fake.calls["/v1/projects"] == 1
    fake.names.append("gamma")
    # With Redis the api's after-commit bust reaches this replica; `written` adds none.
    cache.written("projects")
    assert fake.calls["/v1/projects"] == 1
    assert writer.bust("projects") >= 1
    assert [p.name for p in cache.list_projects(api, user).items][-1] == "gamma"
    assert fake.calls["/v1/projects"] == 2
    # A role change of the user busts their answers too.
    writer.bust(f"users:{user}")
    cache.list_projects(api, user)
    assert fake.calls["/v1/projects"] == 3


@pytest.mark.usefixtures("l1_only")
def test_a_dataset_preview_is_kept_once_its_import_is_over(
    api: ApiClient, fake: FakeApi
) -> None:
    user = uuid.uuid4()
    path = f"/v1/datasets/{fake.dataset_id}"
    assert cache.get_dataset(api, user, fake.dataset_id).status == "IMPORTING"
    assert cache.get_dataset(api, user, fake.dataset_id).status == "IMPORTING"
    assert fake.calls[path] == 2  # not kept while importing
    fake.dataset_status = "READY"
    ready = cache.get_dataset(api, user, fake.dataset_id)
    assert ready.status == "READY"
    assert ready.preview == [{"amount": 1}]
    assert cache.get_dataset(api, user, fake.dataset_id).preview == [{"amount": 1}]
    assert fake.calls[path] == 3


@pytest.mark.usefixtures("l1_only")
def test_analysis_results_are_cached_by_job_and_by_parameters(
    api: ApiClient, fake: FakeApi
) -> None:
    user = uuid.uuid4()
    path = f"/v1/jobs/{fake.job_id}/result"
    result = cache.get_job_result(api, user, fake.job_id)
    assert cache.get_job_result(api, user, fake.job_id) == result
    assert fake.calls[path] == 1
    params = {"dataset_id": fake.dataset_id, "columns": ["amount"], "mode": "fast"}
    assert cache.known_analysis(user, params) is None
    cache.remember_analysis(user, params, fake.job_id)
    assert cache.known_analysis(user, params) == fake.job_id
    assert cache.known_analysis(uuid.uuid4(), params) is None  # another user's
    assert cache.known_analysis(user, {**params, "mode": "accurate"}) is None
    # A new import of the dataset busts what was computed from it.
    cache.written(f"datasets:{fake.dataset_id}")
    assert cache.known_analysis(user, params) is None
