"""The API's request plumbing: one table of endpoints (served and described alike), the bearer
token, bounded JSON bodies, query parameters, and errors as JSON with their kind's status.

Handlers are plain functions ``handler(ctx, call) -> dict`` run in the thread pool (the store is
sync SQLAlchemy): they never see Starlette, and a test can call them as they are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, compile_path

from dunningops.errors import ConflictError, DunningOpsError, InvalidInputError, PermissionDeniedError
from dunningops.ledger.items import ItemsError
from dunningops.store.engine import store_error
from dunningops.web.api.tokens import LAST_USED_EVERY, Principal, UnauthenticatedError, check_token, mark_used
from dunningops.web.context import WebContext

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_ITEMS = 10_000
MAX_BODY = 10 * 1024 * 1024  # bytes: 10,000 invoices with long document URLs fit
MAX_BODY_TEXT = "10 MB"


class PayloadTooLargeError(InvalidInputError):
    """A body over the bounds: more items, or more bytes, than one request may carry."""

    http_status = 413


@dataclass(frozen=True)
class Param:
    """A query parameter: ``int`` (bounded) or ``str`` (optionally one of ``choices``)."""

    name: str
    description: str
    type: str = "str"
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()

    def parse(self, text: str) -> Any:
        if self.type == "int":
            try:
                value = int(text)
            except ValueError:
                raise InvalidInputError(f"{self.name}: {text!r} is not a whole number") from None
            if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
                raise InvalidInputError(f"{self.name}: {value} is out of range ({self.minimum} to {self.maximum})")
            return value
        if self.choices and text not in self.choices:
            raise InvalidInputError(f"{self.name}: {text!r} is not one of {', '.join(self.choices)}")
        return text


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it."""

    principal: Principal
    path: dict[str, str]
    query: dict[str, Any]
    body: Any = None


@dataclass(frozen=True)
class Endpoint:
    """One route of the API and its description (openapi.py reads the same table)."""

    method: str
    path: str  # below PREFIX; {name} for a path parameter
    operation: str  # the OpenAPI operationId
    summary: str
    scope: str  # the token scope it needs: read | write
    handler: Callable[[WebContext, Call], dict[str, Any]]
    response: type[BaseModel]
    params: tuple[Param, ...] = ()
    body: str | None = None  # the ledger kind whose items the body holds
    errors: tuple[int, ...] = field(default=(401,))
    description: str = ""


def error_response(exc: DunningOpsError) -> JSONResponse:
    """The JSON answer of a user-facing error: its message, with its kind's status."""
    body: dict[str, Any] = {"error": str(exc)}
    if isinstance(exc, ItemsError):
        body["errors"] = [{"index": i.index, "field": i.field, "message": i.message} for i in exc.issues]
    headers = {"WWW-Authenticate": 'Bearer realm="dunningops"'} if isinstance(exc, UnauthenticatedError) else None
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise UnauthenticatedError("missing token: send the header Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError("the Authorization header must be: Bearer <token>")
    return token.strip()


def authenticate(ctx: WebContext, token: str, scope: str) -> Principal:
    """The principal of ``token``, if it may do ``scope``; its last use recorded."""
    with ctx.app.session() as session:
        principal, last_used = check_token(session, token)
    now = ctx.app.now()
    if last_used is None or last_used < now - LAST_USED_EVERY:
        with ctx.app.store.session(write_lock=True) as session:
            mark_used(session, principal.token_id, now)
    if not principal.can(scope):
        raise PermissionDeniedError("this token may only read: writing needs a token of scope write")
    return principal


def _query(endpoint: Endpoint, request: Request) -> dict[str, Any]:
    known = {p.name: p for p in endpoint.params}
    values = {p.name: p.default for p in endpoint.params}
    for name, text in request.query_params.multi_items():
        if name not in known:
            expected = ", ".join(known) or "none"
            raise InvalidInputError(f"unknown query parameter {name!r} (expected: {expected})")
        values[name] = known[name].parse(text)
    return values


async def _read_body(request: Request) -> bytes:
    """The body, refused past MAX_BODY bytes without reading it all."""
    too_large = PayloadTooLargeError(f"the body is over {MAX_BODY_TEXT}: send the items in several requests")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def decode_items(raw: bytes) -> list[Any]:
    """The items of a body: a JSON array of them, or an object ``{"items": [...]}``."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 JSON, or nested too deeply"
        raise InvalidInputError(f"the body is not valid JSON ({why})") from None
    if isinstance(data, dict) and set(data) == {"items"}:
        data = data["items"]
    if not isinstance(data, list):
        raise InvalidInputError('the body must be a JSON array of items, or an object {"items": [...]}')
    if len(data) > MAX_ITEMS:
        raise PayloadTooLargeError(f"{len(data):,} items: at most {MAX_ITEMS:,} per request; send them in several requests")
    return data


def _run(ctx: WebContext, endpoint: Endpoint, call: Call, raw: bytes | None) -> dict[str, Any]:
    """What a request does with the store, in the thread pool."""
    if raw is not None:
        call = dataclasses.replace(call, body=decode_items(raw))
    try:
        return endpoint.handler(ctx, call)
    except IntegrityError as exc:
        # Writers take turns (ledger/writes.py); should two still insert the same new row, the loser is rolled back whole.
        raise ConflictError("another request wrote the same items at the same time; nothing was written: send it again") from exc
    except DBAPIError as exc:
        if (error := store_error(ctx.app.url, exc)) is None:
            raise
        raise error from exc


def route(ctx: WebContext, endpoint: Endpoint) -> Route:
    """The Starlette route serving ``endpoint``."""

    async def serve(request: Request) -> Response:
        try:
            # The token first: a stranger's upload is never read, nor told what is wrong with the request.
            principal = await run_in_threadpool(authenticate, ctx, _bearer(request), endpoint.scope)
            query = _query(endpoint, request)
            raw = await _read_body(request) if endpoint.body else None
            call = Call(principal=principal, path=dict(request.path_params), query=query)
            result = await run_in_threadpool(_run, ctx, endpoint, call, raw)
        except DunningOpsError as exc:
            return error_response(exc)
        except Exception:
            log.exception("API %s %s failed", endpoint.method, request.url.path)
            return JSONResponse({"error": "internal error: the server could not answer (see its log)"}, status_code=500)
        return JSONResponse(result)

    return Route(PREFIX + endpoint.path, serve, methods=[endpoint.method], name=f"api.{endpoint.operation}")


def fallback(served: list[tuple[str, str]]) -> Route:
    """Anything else under /api/v1: a JSON 404, or 405 for a known path with another method.

    ``served``: (method, path below PREFIX) of every route the API has.
    """
    paths = [(compile_path(PREFIX + path)[0], method) for method, path in served]

    async def serve(request: Request) -> Response:
        path = request.url.path
        allowed = {m for regex, m in paths if regex.match(path)}
        if "GET" in allowed:
            allowed.add("HEAD")
        if allowed:
            methods = ", ".join(sorted(allowed))
            return JSONResponse(
                {"error": f"{request.method} is not allowed here (allowed: {methods})"},
                status_code=405,
                headers={"Allow": methods},
            )
        return JSONResponse({"error": f"no such endpoint: {path} (the description is at {PREFIX}/openapi.json)"}, status_code=404)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Route(PREFIX + "/{rest:path}", serve, methods=methods, name="api.fallback")
