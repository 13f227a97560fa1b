from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ballast_common.jobs import JobCreate, JobStatus, JobView

__all__ = ["JobCreate", "JobRead", "JobResultRead", "JobStatus", "TaskInfo"]

JobRead = JobView


class JobResultRead(BaseModel):
    job_id: str
    data: dict[str, Any]


class TaskInfo(BaseModel):
    name: str
    queue: str
    description: str
    params_schema: dict[str, Any]
