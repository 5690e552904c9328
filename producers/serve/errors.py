"""Every refusal of `cutout serve` as one JSON shape (producers.serve.models.Problem): a title,
the status, a detail line, and each field (and reference) refused."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from producers.serve.auth import Unauthorized
from producers.serve.idempotency import KeyReused
from producers.serve.intake import Refused
from producers.serve.models import Problem, Refusal

__all__ = ["NotFound", "install_error_handlers", "problem"]


class NotFound(Exception):
    """No such job or batch (answered 404)."""


def problem(status: int, detail: str, errors: list[Refusal] | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail,
                   errors=errors or [])
    return JSONResponse(body.model_dump(), status_code=status,
                        headers=dict(headers) if headers else None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_refusal(error, exc.body) for error in exc.errors()]
        return problem(422, "; ".join(f"{e.field}: {e.message}" for e in errors[:3]), errors)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        detail = "; ".join(_line(r) for r in exc.refusals[:3])
        return problem(exc.status, f"nothing was queued: {detail}", exc.refusals)

    @app.exception_handler(KeyReused)
    async def key_reused(_: Request, exc: KeyReused) -> JSONResponse:
        return problem(422, str(exc), [Refusal(field="Idempotency-Key", message=str(exc))])

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return problem(401, str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return problem(404, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)


def _line(refusal: Refusal) -> str:
    where = f"{refusal.reference}: " if refusal.reference else ""
    return f"{where}field {refusal.field}: {refusal.message}"


def _refusal(error: Any, body: Any) -> Refusal:
    """A pydantic error as a refusal: `references[3]` style field, and the reference itself
    when the error points into the list of references."""
    loc = [part for part in error.get("loc", ()) if part not in ("body",)]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    reference = None
    if len(loc) == 2 and loc[0] == "references" and isinstance(loc[1], int) and \
            isinstance(body, dict):
        refs = body.get("references")
        if isinstance(refs, list) and loc[1] < len(refs) and isinstance(refs[loc[1]], str):
            reference = refs[loc[1]]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return Refusal(field=field or "body", reference=reference, message=message)
