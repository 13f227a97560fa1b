"""ORM models. Importing this package registers every table on `Model.metadata`."""

from ballast_common.models.audit import AuditLog
from ballast_common.models.base import Model, utcnow
from ballast_common.models.dataset import DATASET_STATUSES, Dataset
from ballast_common.models.draft import Draft
from ballast_common.models.event import EventRow
from ballast_common.models.form import Form
from ballast_common.models.handoff import SessionHandoff
from ballast_common.models.job import Job, JobResult
from ballast_common.models.project import (
    MEMBER_ROLES,
    PROJECT_STATUSES,
    Project,
    ProjectMember,
)
from ballast_common.models.schedule import JobSchedule, JobScheduleRun
from ballast_common.models.schema import SchemaLineage
from ballast_common.models.upload import UPLOAD_STATES, Upload
from ballast_common.models.user import (
    Permission,
    Role,
    User,
    UserIdentity,
    UserSession,
    role_permissions,
    user_roles,
)
from ballast_common.models.webhook import (
    CircuitBreakerRow,
    WebhookDelivery,
    WebhookReceipt,
    WebhookSubscription,
)
from ballast_common.models.write import WriteRecord

__all__ = [
    "DATASET_STATUSES",
    "MEMBER_ROLES",
    "PROJECT_STATUSES",
    "UPLOAD_STATES",
    "AuditLog",
    "CircuitBreakerRow",
    "Dataset",
    "Draft",
    "EventRow",
    "Form",
    "Job",
    "JobResult",
    "JobSchedule",
    "JobScheduleRun",
    "Model",
    "Permission",
    "Project",
    "ProjectMember",
    "Role",
    "SchemaLineage",
    "SessionHandoff",
    "Upload",
    "User",
    "UserIdentity",
    "UserSession",
    "WebhookDelivery",
    "WebhookReceipt",
    "WebhookSubscription",
    "WriteRecord",
    "role_permissions",
    "user_roles",
    "utcnow",
]
