"""Typed HTTP client of the state API.

One `httpx.Client` (connection pool) per process is shared by every `ApiClient`;
an `ApiClient` adds the session token of one user. Errors come back as the
`ballast_common.errors` hierarchy (the api renders exactly that hierarchy), with the
api's ``trace_id`` kept on the exception so the UI can show it.

The token is never logged: it only ever travels in the ``Authorization`` header, and
`repr(ApiClient)` hides it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from ballast_common.contracts import (
    RETRYABLE,
    TERMINAL,
    AuditRead,
    DatasetDetail,
    DatasetFormat,
    DatasetImport,
    DatasetRead,
    DeliveryRead,
    DraftBatchResult,
    DraftRead,
    DraftResult,
    DraftWrite,
    FormRead,
    HandoffCreated,
    JobResultRead,
    JobStatus,
    JobView,
    Page,
    Preferences,
    ProjectMemberRead,
    ProjectWriteResult,
    ScheduleView,
    SessionRead,
    SignInMethods,
    SubscriptionCreated,
    SubscriptionRead,
    TaskInfo,
    UploadComplete,
    UploadCreate,
    UploadPartsRequest,
    UploadPartUrls,
    UploadRead,
    UserAdminRead,
    UserRead,
)
from ballast_common.errors import (
    AppError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    TransientError,
    ValidationError,
)
from ballast_common.telemetry.tracing import (
    configure_tracing,
    instrument_httpx_client,
)

__all__ = [
    "JOB_RETRYABLE",
    "JOB_TERMINAL",
    "AdminUser",
    "ApiClient",
    "ApiUnavailable",
    "AuditEntry",
    "Dataset",
    "DatasetDetail",
    "DatasetFormat",
    "DatasetImport",
    "Draft",
    "DraftItem",
    "DraftResult",
    "Form",
    "Job",
    "JobResult",
    "JobStatus",
    "PageOf",
    "Preferences",
    "Project",
    "Session",
    "SignInMethods",
    "TaskInfo",
    "User",
    "error_from_response",
    "make_http",
    "new_write_id",
]

# Connect errors are safe to retry for every request: nothing reached the server.
# The most the UI fetches for one download button (the file passes through its memory).
MAX_DOWNLOAD_BYTES = 256 << 20

_CONNECT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


class ApiUnavailable(TransientError):
    """The api could not be reached or answered 5xx; the request may be retried."""


class RateLimited(ApiUnavailable):
    """The api refused for now (429), e.g. too many failed sign-ins; ``retry_after``
    says for how long (in seconds) when it told."""


# The api's request and response models, under the names the UI's pages use. They are
# the api's own classes (`ballast_common.contracts`), so what the UI parses is exactly
# what the api's OpenAPI promises.
User = UserRead
Session = SessionRead
Draft = DraftRead
# Built by the outbox with `model_construct`: the api validates a draft, and a value
# it refuses is answered 422 and set aside without holding up the others.
DraftItem = DraftWrite
Form = FormRead
Project = ProjectWriteResult
AuditEntry = AuditRead
AdminUser = UserAdminRead
PageOf = Page
Job = JobView
JobResult = JobResultRead
Dataset = DatasetRead
JOB_TERMINAL = TERMINAL
JOB_RETRYABLE = RETRYABLE


_BY_STATUS: dict[int, type[AppError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFoundError,
    422: ValidationError,
}


def error_from_response(response: httpx.Response) -> AppError:
    """Turn an api error response into the matching `AppError` subclass.

    Args:
        response: A response with status >= 400.

    Returns:
        The error; ``trace_id`` is kept in ``details["trace_id"]``.
    """
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or f"api answered {response.status_code}")
    code = body.get("code")
    details = dict(body.get("details") or {})
    details["trace_id"] = body.get("trace_id")
    status = response.status_code
    if status == 409:
        return ConflictError(
            message,
            current=details.get("current"),
            attempted=details.get("attempted"),
            details=details,
            code=code,
        )
    if status >= 500 or status == 429:
        retry_after = response.headers.get("retry-after")
        unavailable = RateLimited if status == 429 else ApiUnavailable
        return unavailable(
            message,
            code=code,
            details=details,
            retry_after=_seconds(retry_after),
        )
    cls = _BY_STATUS.get(status, AppError)
    return cls(message, code=code, details=details, status=status)


def _seconds(header: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the api sends seconds; a date or junk is ignored)."""
    try:
        value = float(header) if header else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value < 86_400 else None


def new_write_id() -> str:
    """A fresh client-generated write id (the ``Idempotency-Key`` header)."""
    return uuid.uuid4().hex


def make_http(
    base_url: str,
    *,
    timeout: float = 5.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """Build the shared connection pool for one api base URL.

    Args:
        base_url: The api's base URL, e.g. ``http://127.0.0.1:8000``.
        timeout: Seconds for connect, read, write and pool waits.
        transport: A transport for tests (e.g. `httpx.MockTransport`).

    Returns:
        The client; share it between `ApiClient` instances. With tracing on (`OTEL_*`)
        every request is a client span and carries the W3C trace context to the api.
    """
    http = httpx.Client(
        base_url=base_url.rstrip("/") + "/v1",
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        transport=transport,
        headers={"User-Agent": "ballast-ui"},
    )
    configure_tracing("ui")
    instrument_httpx_client(http)
    return http


class ApiClient:
    """The state API for one user (or anonymous, before login).

    Args:
        http: The shared `httpx.Client` from `make_http`.
        token: The session token, or ``None``.
        retries: Extra attempts after a connect error, for idempotent requests only.
        backoff_s: First wait between attempts (doubles each time).
    """

    def __init__(
        self,
        http: httpx.Client,
        token: str | None = None,
        *,
        retries: int = 2,
        backoff_s: float = 0.05,
    ) -> None:
        self._http = http
        self._token = token
        self._retries = retries
        self._backoff_s = backoff_s

    def __repr__(self) -> str:
        state = "authenticated" if self._token else "anonymous"
        return f"ApiClient({self._http.base_url}, {state})"

    @property
    def authenticated(self) -> bool:
        return self._token is not None

    def with_token(self, token: str | None) -> ApiClient:
        """The same pool with another session token."""
        return ApiClient(
            self._http, token, retries=self._retries, backoff_s=self._backoff_s
        )

    # ------------------------------------------------------------------ transport

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        write_id: str | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and decode the JSON answer.

        GET, PUT and DELETE, and any request carrying a write id, are idempotent and
        retried after connect errors; other requests are sent once.

        Args:
            method: HTTP method.
            path: Path under ``/v1``.
            params: Query parameters.
            json: JSON body.
            write_id: ``Idempotency-Key`` for writes.
            content: A raw request body (instead of ``json``).
            headers: Extra request headers.
            timeout: Seconds for this request (default: the pool's).

        Returns:
            The decoded JSON body (``None`` for 204).

        Raises:
            ApiUnavailable: The api is unreachable or answered 5xx/429.
            AppError: The api's error, as its subclass (401, 403, 404, 409, 422).
        """
        sent: dict[str, str] = dict(headers or {})
        if self._token:
            sent["Authorization"] = f"Bearer {self._token}"
        if write_id:
            sent["Idempotency-Key"] = write_id
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        idempotent = method in ("GET", "HEAD", "PUT", "DELETE") or write_id is not None
        attempts = 1 + (self._retries if idempotent else 0)
        delay = self._backoff_s
        for attempt in range(attempts):
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    content=content,
                    headers=sent,
                    **extra,
                )
            except _CONNECT_ERRORS as exc:
                if attempt + 1 >= attempts:
                    raise ApiUnavailable(
                        f"the api is unreachable ({type(exc).__name__})"
                    ) from None
                time.sleep(delay)
                delay *= 2
                continue
            except httpx.TimeoutException:
                raise ApiUnavailable("the api did not answer in time") from None
            except httpx.TransportError as exc:
                raise ApiUnavailable(
                    f"the api connection failed ({type(exc).__name__})"
                ) from None
            if response.status_code >= 400:
                raise error_from_response(response)
            if response.status_code == 204 or not response.content:
                return None
            return response.json()
        raise AssertionError("unreachable")  # pragma: no cover

    def download(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> bytes:
        """A file the api streams (an export), read in chunks up to `max_bytes`.

        Raises:
            ApiUnavailable: The api is unreachable or answered 5xx/429.
            AppError: The api's error (403, 404, 409, 422), or the file is larger
                than `max_bytes` (413: download it from the api directly).
        """
        sent = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            with self._http.stream(
                "GET", path, params=dict(params or {}), headers=sent
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise AppError(
                            f"the file is larger than {max_bytes // (1 << 20)} MiB: "
                            f"download it from the api (GET /v1{path})",
                            code="payload_too_large",
                            status=413,
                        )
        except httpx.TimeoutException:
            raise ApiUnavailable("the api did not answer in time") from None
        except httpx.TransportError as exc:
            raise ApiUnavailable(
                f"the api connection failed ({type(exc).__name__})"
            ) from None
        return bytes(data)

    # ------------------------------------------------------------------ sessions

    def login(
        self, username: str, password: str, *, client_address: str | None = None
    ) -> Session:
        """Log in; the returned session carries the token (keep it out of logs).

        ``client_address`` (the browser's) goes along as ``X-Forwarded-For``: the api
        throttles sign-ins per address and audits it, and believes the header from
        its trusted proxies only (``security.trusted_proxies``: the ui pods).
        """
        headers = {"X-Forwarded-For": client_address} if client_address else None
        body = self.request(
            "POST",
            "/sessions",
            json={"username": username, "password": password},
            headers=headers,
        )
        return Session.model_validate(body)

    def sign_in_methods(self) -> SignInMethods:
        """How users may sign in here (password, OIDC, trusted proxy)."""
        return SignInMethods.model_validate(self.request("GET", "/sessions/methods"))

    def oidc_sign_in(
        self,
        code: str,
        state: str,
        binding: str,
        *,
        client_address: str | None = None,
    ) -> Session:
        """Finish a single sign-on with what the provider sent back and the secret of
        the browser that began it (its `ballast_sso` cookie); the api verifies it."""
        headers = {"X-Forwarded-For": client_address} if client_address else None
        body = self.request(
            "POST",
            "/sessions/oidc",
            json={"code": code, "state": state, "binding": binding},
            headers=headers,
        )
        return Session.model_validate(body)

    def proxy_sign_in(
        self, identity_headers: Mapping[str, str], *, client_address: str | None = None
    ) -> Session:
        """Sign in as the user the authenticating proxy named (its headers, relayed).

        The api believes them only because this ui pod is one of its trusted proxies.
        """
        headers = dict(identity_headers)
        if client_address:
            headers["X-Forwarded-For"] = client_address
        return Session.model_validate(
            self.request("POST", "/sessions/proxy", headers=headers)
        )

    def me(self) -> User:
        """The logged-in user (401 when the session expired or was revoked)."""
        return User.model_validate(self.request("GET", "/sessions/me"))

    def create_handoff(self) -> HandoffCreated:
        """A one-time nonce (60 s) the browser trades at any ui replica for its cookie."""
        return HandoffCreated.model_validate(self.request("POST", "/sessions/handoffs"))

    def logout(self) -> None:
        """End the current session on the api."""
        self.request("DELETE", "/sessions/current")

    def logout_everywhere(self) -> None:
        """End every session of the logged-in user (this one too): sign out everywhere."""
        self.request("DELETE", "/sessions")

    def end_user_sessions(self, user_id: uuid.UUID | str) -> None:
        """End every session of a user (admin): they must sign in again everywhere."""
        self.request("DELETE", f"/users/{user_id}/sessions")

    # ------------------------------------------------------------------ drafts

    def put_drafts(
        self, items: Sequence[DraftItem], write_id: str
    ) -> list[DraftResult]:
        """Upsert widget values; the same ``write_id`` twice has one effect."""
        body = self.request(
            "PUT",
            "/drafts",
            json={"items": [i.model_dump(mode="json") for i in items]},
            write_id=write_id,
        )
        return DraftBatchResult.model_validate(body).items

    def get_drafts(self, form_id: str | None = None) -> list[Draft]:
        """My drafts, of one form or all."""
        params = {"form_id": form_id} if form_id else None
        return [
            Draft.model_validate(d)
            for d in self.request("GET", "/drafts", params=params)
        ]

    def delete_drafts(self, form_id: str, fields: Sequence[str] | None = None) -> int:
        """Discard my drafts of a form (all fields or ``fields``)."""
        params: list[tuple[str, Any]] = [("form_id", form_id)]
        params += [("field", f) for f in fields or ()]
        return int(self.request("DELETE", "/drafts", params=params)["deleted"])

    # ------------------------------------------------------------------ forms

    def get_form(self, form_id: str) -> Form | None:
        """The saved form, or ``None`` if it was never saved."""
        try:
            return Form.model_validate(self.request("GET", f"/forms/{form_id}"))
        except NotFoundError:
            return None

    def save_form(
        self,
        form_id: str,
        data: Mapping[str, Any],
        expected_version: int | None,
        *,
        force: bool = False,
        clear_drafts: bool = True,
        write_id: str | None = None,
    ) -> Form:
        """Save a form with optimistic concurrency.

        Raises:
            ConflictError: ``expected_version`` is stale (``current``/``attempted``).
        """
        body = self.request(
            "PUT",
            f"/forms/{form_id}",
            json={
                "data": dict(data),
                "expected_version": expected_version,
                "force": force,
                "clear_drafts": clear_drafts,
            },
            write_id=write_id or new_write_id(),
        )
        return Form.model_validate(body)

    # ------------------------------------------------------------------ projects

    def list_projects(
        self,
        *,
        page: int = 1,
        size: int = 25,
        status: Sequence[str] | None = None,
        q: str | None = None,
        order_by: str | None = None,
    ) -> PageOf[Project]:
        """One page of projects."""
        params: list[tuple[str, Any]] = [("page", page), ("size", size)]
        params += [("status", s) for s in status or ()]
        if q:
            params.append(("q", q))
        if order_by:
            params.append(("order_by", order_by))
        return PageOf[Project].model_validate(
            self.request("GET", "/projects", params=params)
        )

    def get_project(self, project_id: uuid.UUID | str) -> Project:
        """One project."""
        return Project.model_validate(self.request("GET", f"/projects/{project_id}"))

    def create_project(
        self, data: Mapping[str, Any], *, write_id: str | None = None
    ) -> Project:
        """Create a project (idempotent per write id)."""
        body = self.request(
            "POST", "/projects", json=dict(data), write_id=write_id or new_write_id()
        )
        return Project.model_validate(body)

    def update_project(
        self,
        project_id: uuid.UUID | str,
        changes: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        force: bool = False,
        write_id: str | None = None,
    ) -> Project:
        """Change fields of a project.

        Raises:
            ConflictError: ``expected_version`` is stale and ``force`` is off.
        """
        payload = dict(changes)
        if expected_version is not None:
            payload["expected_version"] = expected_version
        payload["force"] = force
        body = self.request(
            "PATCH",
            f"/projects/{project_id}",
            json=payload,
            write_id=write_id or new_write_id(),
        )
        return Project.model_validate(body)

    def delete_project(self, project_id: uuid.UUID | str) -> None:
        """Delete a project (admin)."""
        self.request("DELETE", f"/projects/{project_id}")

    def list_members(self, project_id: uuid.UUID | str) -> list[ProjectMemberRead]:
        """The users a project is shared with, and their member roles."""
        body = self.request("GET", f"/projects/{project_id}/members")
        return [ProjectMemberRead.model_validate(m) for m in body]

    def add_member(
        self, project_id: uuid.UUID | str, username: str, role: str
    ) -> ProjectMemberRead:
        """Share a project with the user of this username (owner or admin).

        Raises:
            ValidationError: No active user of that name (or the owner).
        """
        body = self.request(
            "POST",
            f"/projects/{project_id}/members",
            json={"username": username, "role": role},
        )
        return ProjectMemberRead.model_validate(body)

    def remove_member(
        self, project_id: uuid.UUID | str, user_id: uuid.UUID | str
    ) -> None:
        """Stop sharing a project with a user (owner or admin)."""
        self.request("DELETE", f"/projects/{project_id}/members/{user_id}")

    # ------------------------------------------------------------------ audit

    def list_audit(
        self,
        *,
        page: int = 1,
        size: int = 50,
        resource_type: str | None = None,
        action: str | None = None,
        user_id: str | None = None,
    ) -> PageOf[AuditEntry]:
        """One page of the audit log (admin)."""
        params: dict[str, Any] = {"page": page, "size": size}
        if resource_type:
            params["resource_type"] = resource_type
        if action:
            params["action"] = action
        if user_id:
            params["user_id"] = user_id
        return PageOf[AuditEntry].model_validate(
            self.request("GET", "/audit", params=params)
        )

    # ------------------------------------------------------------------ users

    def list_users(
        self, *, page: int = 1, size: int = 50, q: str | None = None
    ) -> PageOf[AdminUser]:
        """One page of users (admin)."""
        params: dict[str, Any] = {"page": page, "size": size}
        if q:
            params["q"] = q
        return PageOf[AdminUser].model_validate(
            self.request("GET", "/users", params=params)
        )

    def create_user(
        self, data: Mapping[str, Any], *, write_id: str | None = None
    ) -> AdminUser:
        """Create a user (admin)."""
        body = self.request(
            "POST", "/users", json=dict(data), write_id=write_id or new_write_id()
        )
        return AdminUser.model_validate(body)

    def update_user(
        self,
        user_id: uuid.UUID | str,
        changes: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> AdminUser:
        """Change a user's roles, activity, name or email (admin)."""
        payload = dict(changes)
        if expected_version is not None:
            payload["expected_version"] = expected_version
        return AdminUser.model_validate(
            self.request("PATCH", f"/users/{user_id}", json=payload)
        )

    def get_preferences(self) -> Preferences:
        """My preferences."""
        return Preferences.model_validate(self.request("GET", "/users/me/preferences"))

    def put_preferences(self, prefs: Preferences) -> Preferences:
        """Replace my preferences."""
        return Preferences.model_validate(
            self.request(
                "PUT", "/users/me/preferences", json=prefs.model_dump(mode="json")
            )
        )

    # ------------------------------------------------------------------ webhooks

    def list_subscriptions(self) -> list[SubscriptionRead]:
        """Every outbound webhook subscription, without secrets (admin)."""
        body = self.request("GET", "/webhooks/subscriptions")
        return [SubscriptionRead.model_validate(s) for s in body]

    def create_subscription(
        self,
        url: str,
        events: Sequence[str],
        *,
        description: str = "",
        write_id: str | None = None,
    ) -> SubscriptionCreated:
        """Subscribe an endpoint; the answer carries its signing secret, this once."""
        body = self.request(
            "POST",
            "/webhooks/subscriptions",
            json={"url": url, "events": list(events), "description": description},
            write_id=write_id or new_write_id(),
        )
        return SubscriptionCreated.model_validate(body)

    def delete_subscription(self, subscription_id: uuid.UUID | str) -> None:
        """Stop sending to an endpoint (its delivery log goes with it)."""
        self.request("DELETE", f"/webhooks/subscriptions/{subscription_id}")

    def list_deliveries(
        self,
        *,
        subscription_id: uuid.UUID | str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[DeliveryRead]:
        """The delivery log, newest first (admin)."""
        params: dict[str, Any] = {"limit": limit}
        if subscription_id:
            params["subscription_id"] = str(subscription_id)
        if status:
            params["status"] = status
        body = self.request("GET", "/webhooks/deliveries", params=params)
        return [DeliveryRead.model_validate(d) for d in body]

    def redeliver(self, delivery_id: uuid.UUID | str) -> DeliveryRead:
        """Send a delivery again with the same webhook-id (admin)."""
        body = self.request(
            "POST",
            f"/webhooks/deliveries/{delivery_id}/redeliver",
            write_id=new_write_id(),
        )
        return DeliveryRead.model_validate(body)

    # ------------------------------------------------------------------ events

    def post_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Record product events (``{event, props, session_id}``)."""
        self.request("POST", "/events", json={"events": list(events)})

    # ------------------------------------------------------------------ jobs

    def list_schedules(self) -> list[ScheduleView]:
        """Recurring jobs (mine; admins: all), by name."""
        body = self.request("GET", "/schedules", params={"size": 200})
        return [ScheduleView.model_validate(s) for s in body["items"]]

    def create_schedule(
        self,
        *,
        name: str,
        task: str,
        cron: str,
        timezone: str = "UTC",
        kwargs: Mapping[str, Any] | None = None,
        write_id: str | None = None,
    ) -> ScheduleView:
        """Add a recurring job (idempotent per write id)."""
        body = self.request(
            "POST",
            "/schedules",
            json={
                "name": name,
                "task": task,
                "cron": cron,
                "timezone": timezone,
                "kwargs": dict(kwargs or {}),
            },
            write_id=write_id or new_write_id(),
        )
        return ScheduleView.model_validate(body)

    def set_schedule_enabled(
        self, schedule_id: uuid.UUID | str, enabled: bool
    ) -> ScheduleView:
        """Pause (False) or resume (True) a recurring job."""
        body = self.request(
            "PATCH",
            f"/schedules/{schedule_id}",
            json={"enabled": enabled},
            write_id=new_write_id(),
        )
        return ScheduleView.model_validate(body)

    def delete_schedule(self, schedule_id: uuid.UUID | str) -> None:
        """Remove a recurring job (the jobs it started stay)."""
        self.request("DELETE", f"/schedules/{schedule_id}")

    def list_tasks(self) -> list[TaskInfo]:
        """The jobs that can be started."""
        return [TaskInfo.model_validate(t) for t in self.request("GET", "/jobs/tasks")]

    def create_job(
        self,
        name: str,
        kwargs: Mapping[str, Any] | None = None,
        *,
        tags: Sequence[str] = (),
        priority: int = 5,
        write_id: str | None = None,
    ) -> Job:
        """Start a job (idempotent per write id)."""
        body = self.request(
            "POST",
            "/jobs",
            json={
                "name": name,
                "kwargs": dict(kwargs or {}),
                "tags": list(tags),
                "priority": priority,
            },
            write_id=write_id or new_write_id(),
        )
        return Job.model_validate(body)

    def list_jobs(
        self,
        *,
        page: int = 1,
        size: int = 25,
        status: Sequence[str] | None = None,
        name: str | None = None,
        tag: str | None = None,
        mine: bool = False,
        finished_since: datetime | None = None,
    ) -> PageOf[Job]:
        """One page of my jobs (admins: all, unless ``mine``), newest first."""
        params: list[tuple[str, Any]] = [("page", page), ("size", size)]
        params += [("status", s) for s in status or ()]
        if name:
            params.append(("name", name))
        if tag:
            params.append(("tag", tag))
        if mine:
            params.append(("mine", "true"))
        if finished_since is not None:
            params.append(("finished_since", finished_since.isoformat()))
        return PageOf[Job].model_validate(self.request("GET", "/jobs", params=params))

    def jobs_summary(self, *, mine: bool = False) -> dict[str, int]:
        """How many jobs are in each status."""
        body = self.request("GET", "/jobs/summary", params={"mine": mine})
        return {str(k): int(v) for k, v in (body or {}).items()}

    def get_job(self, job_id: uuid.UUID | str) -> Job:
        """One job."""
        return Job.model_validate(self.request("GET", f"/jobs/{job_id}"))

    def get_job_result(self, job_id: uuid.UUID | str) -> JobResult:
        """The result of a completed job."""
        return JobResult.model_validate(self.request("GET", f"/jobs/{job_id}/result"))

    def cancel_job(self, job_id: uuid.UUID | str) -> Job:
        """Ask a job to stop (at once when pending)."""
        return Job.model_validate(self.request("POST", f"/jobs/{job_id}/cancel"))

    def retry_job(self, job_id: uuid.UUID | str) -> Job:
        """Run a failed or cancelled job again."""
        return Job.model_validate(self.request("POST", f"/jobs/{job_id}/retry"))

    # ------------------------------------------------------------------ datasets

    def import_dataset(
        self,
        content: bytes,
        *,
        name: str,
        filename: str,
        format: DatasetFormat | None = None,
        project_id: uuid.UUID | str | None = None,
        timeout: float = 120.0,
    ) -> DatasetImport:
        """Upload a file; the api stores it and starts its import job."""
        params: dict[str, Any] = {"name": name}
        if format:
            params["format"] = format
        if project_id:
            params["project_id"] = str(project_id)
        body = self.request(
            "POST",
            "/datasets",
            params=params,
            content=content,
            headers={
                "X-Filename": filename,
                "Content-Type": "application/octet-stream",
            },
            timeout=timeout,
        )
        return DatasetImport.model_validate(body)

    # ------------------------------------------------------------------ uploads

    def create_upload(self, upload: UploadCreate) -> UploadRead:
        """Begin a direct upload (S3 only: 409 ``direct_upload_unavailable`` else)."""
        return UploadRead.model_validate(
            self.request(
                "POST",
                "/uploads",
                json=upload.model_dump(mode="json", exclude_none=True),
            )
        )

    def get_upload(self, upload_id: uuid.UUID | str) -> UploadRead:
        """An upload with the parts the object store holds (to resume it)."""
        return UploadRead.model_validate(self.request("GET", f"/uploads/{upload_id}"))

    def sign_upload_parts(
        self, upload_id: uuid.UUID | str, parts: UploadPartsRequest
    ) -> UploadPartUrls:
        """Presigned URLs to PUT some parts to."""
        return UploadPartUrls.model_validate(
            self.request(
                "POST",
                f"/uploads/{upload_id}/parts",
                json=parts.model_dump(mode="json"),
            )
        )

    def complete_upload(
        self, upload_id: uuid.UUID | str, parts: UploadComplete
    ) -> DatasetImport:
        """Join the parts into the file and start its import (idempotent)."""
        return DatasetImport.model_validate(
            self.request(
                "POST",
                f"/uploads/{upload_id}/complete",
                json=parts.model_dump(mode="json"),
                # Joining many parts takes the object store a while.
                timeout=120.0,
            )
        )

    def abort_upload(self, upload_id: uuid.UUID | str) -> None:
        """Abort an open upload (its parts are dropped)."""
        self.request("DELETE", f"/uploads/{upload_id}")

    def list_datasets(
        self,
        *,
        page: int = 1,
        size: int = 25,
        project_id: uuid.UUID | str | None = None,
        status: Sequence[str] | None = None,
    ) -> PageOf[Dataset]:
        """One page of datasets, newest first."""
        params: list[tuple[str, Any]] = [("page", page), ("size", size)]
        if project_id:
            params.append(("project_id", str(project_id)))
        params += [("status", s) for s in status or ()]
        return PageOf[Dataset].model_validate(
            self.request("GET", "/datasets", params=params)
        )

    def get_dataset(self, dataset_id: uuid.UUID | str) -> DatasetDetail:
        """One dataset with its preview rows."""
        return DatasetDetail.model_validate(
            self.request("GET", f"/datasets/{dataset_id}")
        )
