"""The contract between the UI (and any other client) and the state API.

Every request body and response of a route the UI calls is one of these classes: the
api's routes declare them as bodies and ``response_model`` (and its OpenAPI schemas are
generated from them), and the UI's client (`ballast_ui.client`) parses the api's answers
with the very same classes, so the two cannot drift apart. One module per api domain;
a route only other clients call (e.g. an inbound webhook) may keep its models in the
api.

This package needs pydantic only (and `ballast_common.fields`, itself pydantic only): no
SQLAlchemy, Redis, Celery, boto3 or database driver, so the UI image does not ship
them (an import-linter contract in the root ``pyproject.toml`` holds it to that).

Changing a response model changes what every peer parses, and during a blue-green
switch an old UI may talk to a new api and the other way round: add a response field
with a default (expand), remove one a release later (contract).
"""

from __future__ import annotations

from ballast_common.contracts.audit import AuditRead
from ballast_common.contracts.auth import (
    HandoffCreated,
    HandoffRedeem,
    HandoffToken,
    LoginRequest,
    OidcAuthorization,
    OidcBegin,
    OidcCallback,
    SessionRead,
    SignInMethods,
    UserRead,
)
from ballast_common.contracts.common import ErrorBody, Page, Paged
from ballast_common.contracts.datasets import (
    DatasetDetail,
    DatasetFormat,
    DatasetImport,
    DatasetRead,
)
from ballast_common.contracts.drafts import (
    DraftBatch,
    DraftBatchResult,
    DraftRead,
    DraftResult,
    DraftWrite,
)
from ballast_common.contracts.events import EventBatch, EventIn
from ballast_common.contracts.forms import FormConflict, FormRead, FormSave
from ballast_common.contracts.jobs import (
    RETRYABLE,
    TERMINAL,
    JobCreate,
    JobResultRead,
    JobStatus,
    JobView,
    TaskInfo,
)
from ballast_common.contracts.projects import (
    Capability,
    ProjectCreate,
    ProjectMemberAdd,
    ProjectMemberRead,
    ProjectMemberSet,
    ProjectRead,
    ProjectUpdate,
    ProjectWriteResult,
)
from ballast_common.contracts.schedules import (
    ScheduleCreate,
    ScheduleUpdate,
    ScheduleView,
)
from ballast_common.contracts.uploads import (
    CompletedPart,
    UploadComplete,
    UploadCreate,
    UploadPart,
    UploadPartsRequest,
    UploadPartUrl,
    UploadPartUrls,
    UploadRead,
)
from ballast_common.contracts.users import (
    Preferences,
    UserAdminRead,
    UserCreate,
    UserUpdate,
)
from ballast_common.contracts.webhooks import (
    DeliveryRead,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionRead,
)

__all__ = [
    "RETRYABLE",
    "TERMINAL",
    "AuditRead",
    "Capability",
    "CompletedPart",
    "DatasetDetail",
    "DatasetFormat",
    "DatasetImport",
    "DatasetRead",
    "DeliveryRead",
    "DraftBatch",
    "DraftBatchResult",
    "DraftRead",
    "DraftResult",
    "DraftWrite",
    "ErrorBody",
    "EventBatch",
    "EventIn",
    "FormConflict",
    "FormRead",
    "FormSave",
    "HandoffCreated",
    "HandoffRedeem",
    "HandoffToken",
    "JobCreate",
    "JobResultRead",
    "JobStatus",
    "JobView",
    "LoginRequest",
    "OidcAuthorization",
    "OidcBegin",
    "OidcCallback",
    "Page",
    "Paged",
    "Preferences",
    "ProjectCreate",
    "ProjectMemberAdd",
    "ProjectMemberRead",
    "ProjectMemberSet",
    "ProjectRead",
    "ProjectUpdate",
    "ProjectWriteResult",
    "ScheduleCreate",
    "ScheduleUpdate",
    "ScheduleView",
    "SessionRead",
    "SignInMethods",
    "SubscriptionCreate",
    "SubscriptionCreated",
    "SubscriptionRead",
    "TaskInfo",
    "UploadComplete",
    "UploadCreate",
    "UploadPart",
    "UploadPartUrl",
    "UploadPartUrls",
    "UploadPartsRequest",
    "UploadRead",
    "UserAdminRead",
    "UserCreate",
    "UserRead",
    "UserUpdate",
]
