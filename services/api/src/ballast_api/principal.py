"""The authenticated caller of a request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ballast_common.security import Permission


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: uuid.UUID
    username: str
    display_name: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    session_id: uuid.UUID

    def can(self, permission: Permission | str) -> bool:
        return str(permission) in self.permissions
