"""The local API server's RetCodes (the one table, also in docs/emulator.md)."""

from __future__ import annotations

from enum import IntEnum

from picpik.errors import CutoutError

__all__ = ["Refusal", "RetCode"]


class RetCode(IntEnum):
    """Every RetCode the local API server answers with; the defaults of `Settings.retcodes_*`."""

    OK = 0
    BAD_PARAMETER = 100  # a parameter is missing, of the wrong type, out of range or unknown
    UNKNOWN_KEY = 110  # the PublicKey is missing or not configured
    BAD_SIGNATURE = 120  # the Signature is missing or does not match
    NO_CREDITS = 130  # the key has no credits left for a RemoveBackground
    THROTTLED = 140  # over the key's rate limit (or an injected throttle)
    UNKNOWN_ACTION = 150  # the Action is missing or not one this server speaks
    INTERNAL_ERROR = 500  # a bug in the server (HTTP 500)
    BUSY = 503  # an injected 5xx fault (HTTP 503)


class Refusal(CutoutError):
    """Not raised out of the server: a refused call, turned into an answer with this RetCode."""

    def __init__(
        self,
        retcode: RetCode,
        outcome: str,
        message: str,
        *,
        field: str | None = None,
        http_status: int = 200,
    ):
        super().__init__(message, field=field)
        self.retcode = retcode
        self.outcome = outcome
        self.http_status = http_status
        self.headers: dict[str, str] = {}

    @property
    def answer_message(self) -> str:
        """The Message of the answer: names the field first when there is one."""
        return f"{self.field}: {self.message}" if self.field else self.message
