"""Bearer tokens (CUTOUT_SERVE_TOKENS): each request's token compared in constant time with
every configured one; the token's scope (a hash, never the token) keys its idempotency records."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

__all__ = ["LOCAL_SCOPE", "Tokens", "Unauthorized"]

LOCAL_SCOPE = "local"  # every request's scope when the service runs without tokens


class Unauthorized(Exception):
    """No token, or not one of the configured ones (answered 401)."""


class Tokens:
    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = [t.encode() for t in tokens if t]

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def scope(self, authorization: str | None) -> str:
        """The scope of the request's `Authorization: Bearer <token>`; raises Unauthorized."""
        if not self._tokens:
            return LOCAL_SCOPE
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized("send Authorization: Bearer <token>")
        candidate = given.strip().encode()
        # Every token is compared, whichever matches, so the time says nothing about which.
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(candidate, token)
        if not matched:
            raise Unauthorized("the token is not valid")
        return hashlib.sha256(candidate).hexdigest()[:16]
