"""POST /v1/jobs without HTTP: every reference, option and field checked before anything is
queued (a refusal names the field and the reference), then the jobs recorded and published.

References follow the workers' rules, checked here first: http(s) URLs whose host passes the
address guard (CUTOUT_FETCH_ALLOW), or regular files below CUTOUT_FILES_ROOT (a relative path
is taken from there) after resolving symlinks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from secrets import token_hex
from urllib.parse import unquote, urlsplit

from celery import Celery

from config import Settings
from picpik.errors import InvalidInput
from picpik.models import parse_options
from producers.serve.idempotency import Plan
from producers.serve.models import JobsRequest, Refusal
from tasks.inputs.netguard import Allowance, resolve_checked
from tasks.messages import send_jobs
from tasks.outputs.webhooks import check_webhook_url
from tasks.store.ledger import Ledger

__all__ = ["MAX_LISTED", "Intake", "Refused"]

MAX_LISTED = 100  # refusals listed in one answer; the count says how many more


class Refused(Exception):
    """The request is refused as a whole (nothing queued); each refusal names its field."""

    def __init__(self, refusals: list[Refusal], status: int = 422) -> None:
        super().__init__("; ".join(r.message for r in refusals[:3]))
        self.refusals = refusals
        self.status = status


class Intake:
    def __init__(self, settings: Settings, ledger: Ledger, app: Celery) -> None:
        self.settings = settings
        self.ledger = ledger
        self.app = app

    def plan(self, body: JobsRequest) -> Plan:
        """The jobs this request makes, with new ids; raises Refused naming every problem."""
        refusals: list[Refusal] = []
        params = self._options(body, refusals)
        if len(body.references) > self.settings.serve_max_references:
            raise Refused([Refusal(field="references", message=(
                f"{len(body.references)} references; at most "
                f"{self.settings.serve_max_references} per request (CUTOUT_SERVE_MAX_REFERENCES)"
            ))])
        checker = _Checker(self.settings)
        for reference in body.references:
            _collect(refusals, partial(checker.reference, reference), reference)
        if body.webhook_url is not None:
            _collect(refusals, partial(checker.webhook, body.webhook_url))
        output_dir = self._output_dir(body.output_dir, refusals)
        if refusals:
            raise Refused(refusals)
        return Plan(batch=body.batch or _new_batch_name(), output_dir=output_dir, params=params,
                    webhook_url=body.webhook_url, force=body.force,
                    jobs=[(str(uuid.uuid4()), ref) for ref in body.references])

    def enqueue(self, plan: Plan) -> None:
        """Record every job (ACCEPTED; an id recorded before stays as it is), then publish."""
        self.ledger.create_many(plan.jobs, plan.params, batch=plan.batch,
                                output_dir=plan.output_dir, webhook_url=plan.webhook_url,
                                force=plan.force)
        with self.app.connection_for_write() as conn:
            send_jobs(self.app, plan.jobs, self.app.amqp.Producer(conn))

    @staticmethod
    def _options(body: JobsRequest, refusals: list[Refusal]) -> dict[str, object]:
        try:
            return parse_options(body.options).to_params()
        except InvalidInput as exc:
            refusals.append(Refusal(field=exc.field, message=exc.message))
            return {}

    def _output_dir(self, given: str | None, refusals: list[Refusal]) -> str | None:
        """A folder below CUTOUT_OUTPUT_DIR: never absolute, never `..` (a client does not
        choose where on the workers' disks files are written)."""
        if given is None:
            return None
        path = PurePosixPath(given)
        if path.is_absolute() or ".." in path.parts or "\\" in given or "\x00" in given:
            refusals.append(Refusal(field="output_dir", message=(
                f"must be a relative folder without '..' (below CUTOUT_OUTPUT_DIR), got "
                f"{given!r}")))
            return None
        return str(self.settings.output_dir / path)


def _collect(refusals: list[Refusal], check: Callable[[], object],
             reference: str | None = None) -> None:
    try:
        check()
    except InvalidInput as exc:
        if len(refusals) < MAX_LISTED:
            refusals.append(Refusal(field=exc.field, reference=reference, message=exc.message))


class _Checker:
    """The reference rules of the workers, with each host resolved once per request."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.files_root.resolve()
        self.allowance = Allowance(settings.fetch_allow)
        self.hosts: dict[tuple[str, int], InvalidInput | None] = {}

    def reference(self, reference: str) -> None:
        if not reference.strip() or "\x00" in reference:
            raise InvalidInput("must be a non-empty path or URL", field="reference")
        scheme = urlsplit(reference).scheme.lower()
        if scheme in ("http", "https"):
            self.url(reference, "reference")
        elif scheme == "file":
            self.path(unquote(urlsplit(reference).path))
        elif scheme and len(scheme) > 1:
            raise InvalidInput(f"scheme {scheme!r} is not allowed (http, https or a file path)",
                               field="reference")
        else:
            self.path(reference)

    def webhook(self, url: str) -> None:
        self.url(check_webhook_url(url), "webhook_url")

    def url(self, url: str, field: str) -> None:
        split = urlsplit(url)
        try:
            port = split.port or (443 if split.scheme.lower() == "https" else 80)
        except ValueError as exc:
            raise InvalidInput(f"bad port in {url}", field=field) from exc
        if not split.hostname:
            raise InvalidInput(f"not an http(s) URL with a host: {url}", field=field)
        host = (split.hostname, port)
        if host not in self.hosts:
            try:
                resolve_checked(split.hostname, port, self.allowance)
                self.hosts[host] = None
            except InvalidInput as exc:
                self.hosts[host] = exc
        refused = self.hosts[host]
        if refused is not None:
            raise InvalidInput(refused.message, field=field)

    def path(self, text: str) -> None:
        given = Path(text)
        try:
            path = (given if given.is_absolute() else self.root / given).resolve(strict=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise InvalidInput(f"no such file: {text}", field="reference") from exc
        if not path.is_relative_to(self.root):
            raise InvalidInput(f"{text} is outside the files root (CUTOUT_FILES_ROOT)",
                               field="reference")
        if not path.is_file():
            raise InvalidInput(f"{text} is not a regular file", field="reference")


def _new_batch_name() -> str:
    return f"batch-{datetime.now(UTC):%Y%m%d-%H%M%S}-{token_hex(2)}"
