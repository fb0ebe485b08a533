"""``/healthz`` (is the store answering, and how did the last cycles go) and ``/metrics``
(Prometheus text format, the daemon's own registry: daemon/metrics.py).

Both are for machines on the operator's side (a load balancer, Prometheus); neither shows a
customer's data, and an error is one line in JSON, never a traceback.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from dunningops.errors import DunningOpsError
from dunningops.web.context import WebContext

__all__ = ["routes"]


def routes(ctx: WebContext) -> list[BaseRoute]:
    """The health check and the metrics of the daemon ``ctx`` serves."""

    def healthz(_request: Request) -> Response:
        cycles = ctx.metrics.last_cycles() if ctx.metrics is not None else {}
        try:
            with ctx.app.session() as session:
                # A table, not just SELECT 1 (which SQLite answers without reading the file).
                session.execute(text("SELECT version_num FROM alembic_version"))
        except (SQLAlchemyError, DunningOpsError):
            # The reason stays in the daemon's log: a health check is often public.
            return JSONResponse({"status": "unavailable", "store": "not answering", "cycles": cycles}, status_code=503)
        return JSONResponse({"status": "ok", "store": "ok", "cycles": cycles})

    def metrics(_request: Request) -> Response:
        if ctx.metrics is None:
            return PlainTextResponse("No metrics: this server runs without the daemon.\n", status_code=404)
        body, content_type = ctx.metrics.exposition()
        return Response(body, media_type=content_type)

    return [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
