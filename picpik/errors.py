"""The one exception tree of cutout, split by what the caller must do.

`RetryableError`: the same request may succeed later; retrying is safe for idempotent calls
(polls, downloads) and for submits only when the API certainly did not accept the call.
`PermanentError`: retrying the same request cannot help; the job fails with the reason.
Every error carries a `code` (stable, machine-readable) and a message that never holds a secret.
"""

from __future__ import annotations


class CutoutError(Exception):
    """Root of every error cutout raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None, job_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.job_id = job_id

    def __str__(self) -> str:
        parts = []
        if self.job_id:
            parts.append(f"job {self.job_id}")
        if self.field:
            parts.append(f"field {self.field}")
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class RetryableError(CutoutError):
    """A transient failure; the same request may succeed if tried again later.

    `maybe_accepted` says whether the request may have reached the API and been acted on (a read
    timeout or a connection dropped after sending): a submit must then not be sent again blindly
    (never pay twice). False when the API certainly did not take it (connect failure, 429, 5xx,
    a throttle RetCode).
    """

    code = "retryable"

    def __init__(self, message: str, *, maybe_accepted: bool = False, **kw: str | None):
        super().__init__(message, **kw)
        self.maybe_accepted = maybe_accepted


class Throttled(RetryableError):
    """The API refused the call for its rate limit (HTTP 429 or a throttle RetCode).

    Safe to retry after `retry_after_s` (when the API said) or after a backoff; the limiter
    lowers the shared rate when it sees one.
    """

    code = "throttled"

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, **kw: str | None
    ) -> None:
        super().__init__(message, maybe_accepted=False, **kw)
        self.retry_after_s = retry_after_s


class Unavailable(RetryableError):
    """HTTP 5xx, a transient RetCode, or a connection that failed or was dropped."""

    code = "unavailable"


class MalformedAnswer(Unavailable):
    """An answer that cannot be read (not JSON, a field of the wrong shape). The API may have
    acted on the call; for a poll, the cause may be one entry of the answer, so asking about
    fewer tasks at once can get past it."""

    code = "malformed_answer"


class ApiTimeout(RetryableError):
    """No answer within the connect or read timeout. For a submit the API may have accepted it."""

    code = "timeout"


class PermanentError(CutoutError):
    """Retrying the same request cannot succeed; the job fails with this reason."""

    code = "permanent"


class InvalidInput(PermanentError):
    """The job's own input is unusable: a bad option, an unreachable or refused reference,
    an image that is too large or not an allowed format. Raised before any API call."""

    code = "invalid_input"


class RejectedParameters(PermanentError):
    """The API refused the request's parameters (a bad-parameter RetCode or a non-2xx status)."""

    code = "rejected_parameters"


class RejectedKey(PermanentError):
    """The API refused the PublicKey or the Signature: the configuration is wrong."""

    code = "rejected_key"


class OutOfCredits(PermanentError):
    """The account has no credits left for this call."""

    code = "out_of_credits"


class UnknownRetCode(PermanentError):
    """A RetCode the settings do not classify; recorded with the API's Message."""

    code = "unknown_retcode"

    def __init__(self, message: str, *, retcode: int, **kw: str | None):
        super().__init__(message, **kw)
        self.retcode = retcode
