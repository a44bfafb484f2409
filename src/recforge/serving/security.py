"""API keys: ``Authorization: Bearer <key>``, compared in constant time, never logged.

Keys come from ``serving.api_keys`` in the config file or ``RECFORGE_API_KEYS``
(comma-separated). Only their SHA-256 digests are kept in memory after start-up. A presented
key is hashed and compared with *every* configured digest by :func:`hmac.compare_digest`,
without stopping at a match: the time taken does not depend on how much of a key was right,
nor on which key matched. Keys never appear in logs, errors or ``recforge config``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["ApiKeys"]


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
