"""API keys: ``Authorization: Bearer <key>``, compared in constant time, never logged.

Two sets of keys: the *write keys* (``serving.api_keys`` or ``RECFORGE_API_KEYS``,
comma-separated) post events; the *admin keys* (``serving.admin_keys`` or
``RECFORGE_ADMIN_KEYS``) do what only an operator may, such as erasing a user's events
(:func:`require_admin_key`, a dependency any admin route declares). A write key is no admin key.
Only the keys' SHA-256 digests are kept in memory after start-up. A presented key is hashed and
compared with *every* configured digest by :func:`hmac.compare_digest`, without stopping at a
match: the time taken does not depend on how much of a key was right, nor on which key matched.
Keys never appear in logs, errors or ``recforge config``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["ApiKeys", "admin_bearer", "check_bearer", "require_admin_key"]

admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminKey",
    description="An admin key from serving.admin_keys / RECFORGE_ADMIN_KEYS (not a write key).",
)


class ApiKeys:
    """The accepted API keys, as digests."""

    __slots__ = ("_digests",)

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(key) for key in keys if key]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._digests)} keys)"

    def check(self, presented: str) -> bool:
        """Whether ``presented`` is one of the keys (constant time in the key's content)."""
        digest = _digest(presented)
        matched = False
        for expected in self._digests:
            matched |= hmac.compare_digest(digest, expected)
        return matched


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def check_bearer(
    keys: ApiKeys, credentials: HTTPAuthorizationCredentials | None, kind: str, where: str
) -> None:
    """403 when ``keys`` is empty (the routes they guard are off), 401 unless ``credentials`` is
    ``Bearer <one of keys>``."""
    if not keys:
        raise HTTPException(403, f"this endpoint is disabled: no {kind} keys are configured ({where})")
    if (
        credentials is None
        or credentials.scheme.lower() != "bearer"
        or not keys.check(credentials.credentials)
    ):
        raise HTTPException(
            401,
            f"a valid {kind} key is required: Authorization: Bearer <key>",
            {"WWW-Authenticate": "Bearer"},
        )


async def require_admin_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    """The admin key check, as a dependency: ``dependencies=[Depends(require_admin_key)]``. The
    app keeps its admin keys in ``app.state.serving.admin_keys``."""
    keys: ApiKeys = request.app.state.serving.admin_keys
    check_bearer(keys, credentials, "admin", "serving.admin_keys, RECFORGE_ADMIN_KEYS")
