"""The one boundary where transport errors, HTTP statuses and RetCodes become cutout errors.

Only the client (and this module for it) imports `requests`. Messages name the action, the job
and the reason; they never hold a request body, a Signature or a URL's query (which may be signed).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

from config.settings import Settings
from picpik.errors import (
    ApiTimeout,
    CutoutError,
    InvalidInput,
    MalformedAnswer,
    OutOfCredits,
    RejectedKey,
    RejectedParameters,
    Throttled,
    Unavailable,
    UnknownRetCode,
)

__all__ = [
    "api_message",
    "malformed_answer",
    "parse_retry_after",
    "retcode_error",
    "status_error",
    "transport_error",
]

_MESSAGE_CHARS = 300
_REFUSAL_BODY_MAX_BYTES = 64 * 1024  # an API refusal is small; a larger 5xx body is not one
_HEX40 = re.compile(r"\b[0-9a-fA-F]{40}\b")  # anything shaped like a Signature
_BAD_URL = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema)


def transport_error(
    exc: requests.RequestException, what: str, job_id: str | None, url_field: str = "url"
) -> CutoutError:
    """Map a requests exception; `maybe_accepted` is True unless the request surely never left.

    `url_field` names the setting or argument to blame when the URL itself is unusable."""
    reason = _innermost_name(exc)
    if isinstance(exc, requests.ConnectTimeout) or _never_connected(exc):
        return Unavailable(f"{what}: could not connect to the API ({reason})", job_id=job_id)
    if isinstance(exc, requests.ReadTimeout) or _timed_out_reading(exc):
        return ApiTimeout(
            f"{what}: no answer within the read timeout", maybe_accepted=True, job_id=job_id
        )
    if isinstance(exc, _BAD_URL):
        return InvalidInput(f"{what}: unusable URL ({reason})", field=url_field, job_id=job_id)
    # Dropped mid-answer (RemoteDisconnected, reset, ChunkedEncodingError) or anything else after
    # sending: the API may have acted on the call.
    return Unavailable(
        f"{what}: connection dropped before a full answer ({reason})",
        maybe_accepted=True,
        job_id=job_id,
    )


def _never_connected(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.ProxyError):
        return True
    inner = exc.args[0] if exc.args else None
    return isinstance(inner, MaxRetryError) and isinstance(
        inner.reason, NewConnectionError | ConnectTimeoutError
    )


def _timed_out_reading(exc: requests.RequestException) -> bool:
    # requests raises a read timeout while reading the body as ConnectionError(ReadTimeoutError).
    inner = exc.args[0] if exc.args else None
    return isinstance(inner, Urllib3ReadTimeout)


def _innermost_name(exc: BaseException) -> str:
    """The class name of the root cause: says what happened without echoing URLs or data."""
    seen: BaseException = exc
    for _ in range(8):  # a bounded walk: exception chains may loop
        following = _cause_of(seen)
        if following is None or following is seen:
            break
        seen = following
    return type(seen).__name__


def _cause_of(exc: BaseException) -> BaseException | None:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    nested = [arg for arg in exc.args if isinstance(arg, BaseException)]
    return nested[0] if nested else exc.__cause__


def status_error(response: requests.Response, what: str, job_id: str | None) -> CutoutError:
    """Map a non-2xx HTTP status: 429 throttle, 5xx unavailable, the rest rejected."""
    status = response.status_code
    if 300 <= status < 400:
        # Following it would send the signed (paid) call to another host a second time.
        return RejectedParameters(
            f"{what}: HTTP {status}, the API redirected the call; redirects are not followed "
            "(point CUTOUT_API_BASE_URL at the final address)", field="api_base_url",
            job_id=job_id)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return Throttled(f"{what}: HTTP 429 throttled", retry_after_s=retry_after, job_id=job_id)
    if status >= 500:
        # Only a 503 carrying the API's own RetCode says the service turned the call away. A
        # gateway's 502 or 504 (a proxy that lost the upstream's answer, or gave up waiting for
        # it), or any 5xx without the API's body, can follow a call the API took and billed.
        refusal = _api_refusal(response) if status == 503 else None
        if refusal is not None:
            return Unavailable(f"{what}: HTTP 503, {refusal}", job_id=job_id)
        return Unavailable(f"{what}: HTTP {status}", maybe_accepted=True, job_id=job_id)
    return RejectedParameters(f"{what}: HTTP {status}", job_id=job_id)


def _api_refusal(response: requests.Response) -> str | None:
    """`RetCode N: Message` when the body is the API's own answer with a non-zero RetCode."""
    declared = response.headers.get("Content-Length", "")
    is_json = response.headers.get("Content-Type", "").startswith("application/json")
    if not (is_json and declared.isdigit() and int(declared) <= _REFUSAL_BODY_MAX_BYTES):
        return None
    try:
        answer = response.json()
    except ValueError:
        return None
    code = answer.get("RetCode") if isinstance(answer, dict) else None
    if not isinstance(code, int) or isinstance(code, bool) or code == 0:
        return None
    return f"RetCode {code}: {api_message(answer)}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), if usable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" and "nan" parse as floats, but are no usable wait
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def retcode_error(
    answer: Mapping[str, Any],
    settings: Settings,
    what: str,
    job_id: str | None,
    retry_after: str | None = None,
) -> CutoutError | None:
    """Map a non-zero RetCode by the settings' classification; None when RetCode is 0."""
    code = answer.get("RetCode")
    if not isinstance(code, int) or isinstance(code, bool):
        return UnknownRetCode(f"{what}: answer without an integer RetCode", retcode=-1,
                              job_id=job_id)
    if code == 0:
        return None
    message = f"{what}: RetCode {code}: {api_message(answer)}"
    if code in settings.retcodes_throttle:
        return Throttled(message, retry_after_s=parse_retry_after(retry_after), job_id=job_id)
    if code in settings.retcodes_transient:
        return Unavailable(message, job_id=job_id)
    classes: list[tuple[frozenset[int], type[CutoutError]]] = [
        (settings.retcodes_bad_parameters, RejectedParameters),
        (settings.retcodes_rejected_key, RejectedKey),
        (settings.retcodes_out_of_credits, OutOfCredits),
    ]
    for codes, error_class in classes:
        if code in codes:
            return error_class(message, job_id=job_id)
    return UnknownRetCode(message, retcode=code, job_id=job_id)


def api_message(answer: Mapping[str, Any]) -> str:
    """The API's Message, shortened, with anything shaped like a Signature blanked out."""
    text = str(answer.get("Message") or "no message")[:_MESSAGE_CHARS]
    return _HEX40.sub("[redacted]", text)


def malformed_answer(what: str, detail: str, job_id: str | None) -> MalformedAnswer:
    """An answer we cannot read: retryable, and the API may have acted on the call."""
    return MalformedAnswer(f"{what}: unreadable answer ({detail})", maybe_accepted=True,
                           job_id=job_id)
