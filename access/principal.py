"""Who is calling: a user with a role and the organisation units it may see.

Scope: a principal sees its own unit and every unit below it. A device without a unit belongs to the
whole installation: it is visible to the configured API token and to users of a root unit (one
without a parent, the city), who are the ones that can place it, and to nobody below them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from access.errors import json_error
from store.users import Unit


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int | None  # None: the configured API token
    name: str
    role: str
    unit: Unit | None  # None: the configured API token, which belongs to no unit
    unit_ids: frozenset[int] | None  # None: every unit

    def sees_unit(self, unit_id: int | None) -> bool:
        if self.unit_ids is None:
            return True
        if unit_id is None:
            return self.unit is not None and self.unit.parent_id is None
        return unit_id in self.unit_ids

    def require(self, *roles: str) -> None:
        """HTTP 403 unless the principal has one of the roles."""
        if self.role not in roles:
            raise json_error(
                web.HTTPForbidden, f"this needs the role {' or '.join(roles)}; {self.name!r} is {self.role}"
            )


# The configured API token: a built-in admin that sees every unit (for scripts and the first setup).
SYSTEM = Principal(user_id=None, name="system", role="admin", unit=None, unit_ids=None)

PRINCIPAL = web.RequestKey("principal", Principal)


def principal(request: web.Request) -> Principal:
    """The caller of an API route (set by the authentication middleware)."""
    found = request.get(PRINCIPAL)
    if found is None:  # a route outside the authenticated paths asked: refuse rather than guess
        raise json_error(web.HTTPUnauthorized, "this call needs a bearer token")
    return found
