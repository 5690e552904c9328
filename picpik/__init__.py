"""The RemoveBackground API itself, with no Celery: signing, typed models, errors, the client."""

from picpik.errors import (
    ApiTimeout,
    CutoutError,
    InvalidInput,
    OutOfCredits,
    PermanentError,
    RejectedKey,
    RejectedParameters,
    RetryableError,
    Throttled,
    Unavailable,
    UnknownRetCode,
)
from picpik.signing import sign

__all__ = [
    "ApiTimeout",
    "CutoutError",
    "InvalidInput",
    "OutOfCredits",
    "PermanentError",
    "RejectedKey",
    "RejectedParameters",
    "RetryableError",
    "Throttled",
    "Unavailable",
    "UnknownRetCode",
    "sign",
]
