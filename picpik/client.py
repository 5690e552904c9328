"""The API client: one `requests.Session`, signed calls, typed answers, one exception tree.

Every argument is checked before anything is sent (a bad one is an `InvalidInput` naming the
field); every failure comes out as a cutout error (`picpik.errors`), mapped in `picpik.translate`.
The client never retries on its own and never logs a body, a Signature or the PrivateKey.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from pydantic import ValidationError
from requests.adapters import HTTPAdapter

from config.settings import Settings
from picpik.body import build_signed_body
from picpik.errors import CutoutError, InvalidInput, RejectedKey
from picpik.images import IMAGE_MIME_TYPES, image_size
from picpik.models import (
    ListTasksDetailsRequest,
    RemoveBackgroundOptions,
    RemoveBackgroundResponse,
    TaskDetail,
    invalid_input_from,
    parse_options,
)
from picpik.signing import sign
from picpik.translate import malformed_answer, retcode_error, status_error, transport_error

__all__ = ["PicpikClient", "new_session"]

log = logging.getLogger(__name__)

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_DOWNLOAD_CHUNK_BYTES = 64 * 1024


class _Session(requests.Session):
    """A Session that reads the environment (proxy variables, no_proxy, CA bundle) once per
    scheme and host rather than on every request: requests scans the whole environment each
    time, a third of the CPU of a small call. A worker's environment does not change."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], Any] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> Any:
        if proxies or not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        if key not in self._environment:
            self._environment[key] = super().merge_environment_settings(url, proxies, stream,
                                                                        verify, cert)
        return self._environment[key].copy()

    def send_plain(self, method: str, url: str, *, headers: Mapping[str, str],
                   timeout: tuple[float, float], data: bytes | None = None,
                   stream: bool = False) -> requests.Response:
        """The request `Session.request` would send, through the same adapter and environment
        settings, without the per-call work this client never needs: cookies, netrc lookups,
        hooks, redirects (never followed here). About half the CPU of a small call."""
        request = requests.PreparedRequest()
        request.prepare(method=method, url=url, headers={**self.headers, **headers}, data=data)
        settings = self.merge_environment_settings(url, {}, stream, None, None)
        response = self.get_adapter(url).send(request, timeout=timeout, **settings)
        if not stream:
            response.content  # noqa: B018 - read now, as Session.send does: a broken body raises here
        return response


def new_session() -> _Session:
    """A session that never resends a request by itself: a resent submit could be paid twice."""
    session = _Session()
    adapter = HTTPAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "cutout-picpik/0.1"
    return session


# Told of every API call once it ended: (Action, "ok" or the error's code), e.g. for metrics.
CallHook = Callable[[str, str], None]


class PicpikClient:
    """Calls RemoveBackground, ListTasksDetails and ListRunningTasks; downloads result images."""

    def __init__(self, settings: Settings, *, on_call: CallHook | None = None) -> None:
        self._settings = settings
        self._on_call = on_call
        self._session = new_session()
        self._timeout = (settings.connect_timeout_s, settings.read_timeout_s)
        self._url = settings.api_base_url.rstrip("/") + "/"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PicpikClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the API's actions ---

    def remove_background(
        self,
        image: bytes,
        mime: str,
        options: RemoveBackgroundOptions | Mapping[str, Any],
        request_uuid: str,
        before_send: Callable[[], None] | None = None,
    ) -> RemoveBackgroundResponse:
        """Submit one image; the answer holds the TaskUID to poll. `request_uuid` is the job id.
        `before_send` runs once the body is signed, right before the request goes out (the
        rate limiter's wait for the call's start)."""
        checked = self._check_submission(image, mime, options, request_uuid)
        params = {**self._common("RemoveBackground", request_uuid), "request_uuid": request_uuid,
                  **checked.to_params()}
        prefix = f"data:{mime};base64," if self._settings.raw_image_data_uri else ""
        body = build_signed_body(params, self._private_key(request_uuid), large_name="RawImage",
                                 large_prefix=prefix, large_bytes=image)
        answer = self._call("RemoveBackground", body, request_uuid, before_send)
        task_uid = answer.get("TaskUID")
        if not isinstance(task_uid, str) or not task_uid:
            raise malformed_answer("RemoveBackground", "RetCode 0 without a TaskUID", request_uuid)
        echoed = answer.get("request_uuid")
        return RemoveBackgroundResponse(
            task_uid=task_uid, request_uuid=echoed if isinstance(echoed, str) else request_uuid
        )

    def list_tasks_details(
        self, task_uids: Sequence[str], *, request_uuid: str | None = None,
        before_send: Callable[[], None] | None = None,
    ) -> list[TaskDetail]:
        """The details of many tasks in one call (up to MAX_TASK_UIDS_PER_CALL); `before_send`
        as for remove_background."""
        if isinstance(task_uids, str | bytes):
            raise InvalidInput("must be a list of TaskUIDs, not one string", field="TaskUIDList")
        try:
            request = ListTasksDetailsRequest.model_validate({"TaskUIDList": list(task_uids)})
        except ValidationError as exc:
            raise invalid_input_from(exc) from exc
        answer = self._call_small("ListTasksDetails", {"TaskUIDList": request.task_uids},
                                  request_uuid, before_send)
        items = answer.get("TaskDetailList") or []
        try:
            return [TaskDetail.from_api(item) for item in items]
        except (AttributeError, TypeError, ValueError, ValidationError) as exc:
            raise malformed_answer("ListTasksDetails", "bad TaskDetailList", request_uuid) from exc

    def list_running_tasks(self, *, request_uuid: str | None = None) -> list[str]:
        """The TaskUIDs the API still has in flight (to reconcile after a crash)."""
        answer = self._call_small("ListRunningTasks", {}, request_uuid)
        uids = answer.get("TaskUIDList") or []
        if not isinstance(uids, list) or not all(isinstance(uid, str) for uid in uids):
            raise malformed_answer("ListRunningTasks", "TaskUIDList is not a list of strings",
                                   request_uuid)
        return uids

    def download(self, url: str, max_bytes: int) -> bytes:
        """A result image, streamed and refused once it passes max_bytes."""
        if urlsplit(url).scheme not in ("http", "https") or max_bytes <= 0:
            raise InvalidInput("must be an http(s) URL with a positive max_bytes", field="url")
        try:
            with self._session.send_plain("GET", url, headers={}, timeout=self._timeout,
                                          stream=True) as response:
                _raise_for_status(response, "download", None)
                return _read_capped(response, max_bytes)
        except requests.RequestException as exc:
            raise transport_error(exc, "download", None) from exc

    # --- one call ---

    def _call_small(
        self, action: str, extra: Mapping[str, Any], request_uuid: str | None,
        before_send: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {**self._common(action, request_uuid), **extra}
        if request_uuid:
            params["request_uuid"] = request_uuid
        # Signed over the very dict that is serialised, so both sides see the same values.
        signature = sign(params, self._private_key(request_uuid))
        body = json.dumps({**params, "Signature": signature}, separators=(",", ":")).encode()
        return self._call(action, body, request_uuid, before_send)

    def _call(self, action: str, body: bytes | bytearray, job_id: str | None,
              before_send: Callable[[], None] | None = None) -> dict[str, Any]:
        if before_send is not None:
            before_send()
        try:
            answer = self._call_once(action, body, job_id)
        except CutoutError as exc:
            self._tell(action, exc.code)
            raise
        self._tell(action, "ok")
        return answer

    def _tell(self, action: str, outcome: str) -> None:
        if self._on_call is None:
            return
        try:
            self._on_call(action, outcome)
        except Exception:  # counting must never change what a call did
            log.warning("could not count a %s call (%s)", action, outcome, exc_info=True)

    def _call_once(self, action: str, body: bytes | bytearray, job_id: str | None
                   ) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            # A bytearray goes out as one buffer with its Content-Length (urllib3 sends any
            # buffer as is); typeshed only lists bytes, and bytes(body) would copy the image.
            # Redirects are never followed: a signed, paid call is never re-sent elsewhere.
            response = self._session.send_plain("POST", self._url, data=cast(bytes, body),
                                                headers=_JSON_HEADERS, timeout=self._timeout)
        except requests.RequestException as exc:
            raise transport_error(exc, action, job_id, "api_base_url") from exc
        log.debug("%s: HTTP %s, %d bytes sent, %.1f ms", action, response.status_code,
                  len(body), (time.perf_counter() - started) * 1000)
        _raise_for_status(response, action, job_id)
        answer = _json_answer(response, action, job_id)
        error = retcode_error(answer, self._settings, action, job_id,
                              response.headers.get("Retry-After"))
        if error is not None:
            raise error
        return answer

    def _common(self, action: str, job_id: str | None) -> dict[str, Any]:
        if not self._settings.public_key:
            raise RejectedKey("no PublicKey configured (CUTOUT_PUBLIC_KEY)", field="PublicKey",
                              job_id=job_id)
        return {"Action": action, "PublicKey": self._settings.public_key}

    def _private_key(self, job_id: str | None) -> str:
        try:
            return self._settings.private_key_value()
        except ValueError as exc:
            raise RejectedKey(str(exc), field="PrivateKey", job_id=job_id) from exc

    def _check_submission(
        self,
        image: bytes,
        mime: str,
        options: RemoveBackgroundOptions | Mapping[str, Any],
        request_uuid: str,
    ) -> RemoveBackgroundOptions:
        """Every rule of a submit, checked before any call; the options validated once more."""
        if not isinstance(request_uuid, str) or not request_uuid.strip():
            raise InvalidInput("must be a non-empty string (the job id)", field="request_uuid")
        checked = _check_options(options, request_uuid)
        width, height = self._check_image(image, mime, request_uuid)
        try:
            checked.check_box_inside(width, height)
        except InvalidInput as exc:
            exc.job_id = request_uuid
            raise
        return checked

    def _check_image(self, image: bytes, mime: str, job: str) -> tuple[int, int]:
        if not isinstance(image, bytes | bytearray | memoryview) or len(image) == 0:
            raise InvalidInput("must be the image's bytes, not empty", field="RawImage", job_id=job)
        cap = self._settings.max_image_bytes
        if len(image) > cap:
            raise InvalidInput(f"{len(image)} bytes is over the cap of {cap}", field="RawImage",
                               job_id=job)
        allowed = sorted(m for m, fmt in IMAGE_MIME_TYPES.items()
                         if fmt in self._settings.image_formats)
        if mime not in allowed:
            raise InvalidInput(f"{mime!r} is not one of {allowed}", field="mime", job_id=job)
        return image_size(image, mime, self._settings.max_image_pixels, job)


def _check_options(
    options: RemoveBackgroundOptions | Mapping[str, Any], job: str
) -> RemoveBackgroundOptions:
    values = options.to_params() if isinstance(options, RemoveBackgroundOptions) else options
    if not isinstance(values, Mapping):
        raise InvalidInput("must be RemoveBackgroundOptions or a mapping", field="options",
                           job_id=job)
    try:
        return parse_options(values)
    except InvalidInput as exc:
        exc.job_id = job
        raise


def _raise_for_status(response: requests.Response, what: str, job_id: str | None) -> None:
    if response.is_redirect:  # not followed: see status_error
        raise status_error(response, what, job_id)
    try:
        response.raise_for_status()
    except requests.HTTPError as exc:
        raise status_error(response, what, job_id) from exc


def _json_answer(response: requests.Response, what: str, job_id: str | None) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError as exc:  # requests' JSONDecodeError is a ValueError
        raise malformed_answer(what, "not JSON", job_id) from exc
    if not isinstance(answer, dict):
        raise malformed_answer(what, "not a JSON object", job_id)
    return answer


def _read_capped(response: requests.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InvalidInput(f"result of {declared} bytes is over the cap of {max_bytes}",
                           field="url")
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_content(_DOWNLOAD_CHUNK_BYTES):
        received += len(chunk)
        if received > max_bytes:
            raise InvalidInput(f"result is over the cap of {max_bytes} bytes", field="url")
        chunks.append(chunk)
    return b"".join(chunks)
