"""Aggregates the /v1 routers."""

from fastapi import APIRouter

from ballast_api.audit.router import router as audit
from ballast_api.auth.router import router as sessions
from ballast_api.datasets.router import router as datasets
from ballast_api.drafts.router import router as drafts
from ballast_api.events.router import router as events
from ballast_api.exports.router import router as exports
from ballast_api.forms.router import router as forms
from ballast_api.jobs.router import router as jobs
from ballast_api.projects.router import router as projects
from ballast_api.schedules.router import router as schedules
from ballast_api.uploads.router import router as uploads
from ballast_api.users.router import router as users
from ballast_api.webhooks.router import router as webhooks

api_router = APIRouter(prefix="/v1")
for r in (
    sessions,
    users,
    drafts,
    forms,
    projects,
    audit,
    events,
    jobs,
    schedules,
    datasets,
    uploads,
    webhooks,
    exports,
):
    api_router.include_router(r)
