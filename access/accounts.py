"""What makes a valid user account, for the API and the command line alike."""

from __future__ import annotations

from store.users import ROLES

NAME_MAX = 64


class AccountError(ValueError):
    pass


def check_name(name: str) -> None:
    if not name.strip():
        raise AccountError("the user name must not be empty")
    if name != name.strip() or not name.isprintable():
        raise AccountError("the user name must not begin or end with spaces or hold control characters")
    if len(name) > NAME_MAX:
        raise AccountError(f"the user name must be at most {NAME_MAX} characters")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"the role must be one of {', '.join(ROLES)}")
