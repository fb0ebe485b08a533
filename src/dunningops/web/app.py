"""``create_app``: the one Starlette application of a daemon (console, API, public links, health)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette

from dunningops.web.context import WebContext

if TYPE_CHECKING:
    from dunningops.app import App
    from dunningops.daemon.metrics import Metrics


def create_app(app: App, *, metrics: Metrics | None = None) -> Starlette:
    """The HTTP application of ``app``'s store; ``metrics``: the daemon's, served at /metrics."""
    from dunningops.web import api, console, health, public

    ctx = WebContext(app, metrics)
    routes = [*health.routes(ctx), *public.routes(ctx), *api.routes(ctx), *console.routes(ctx)]
    web = Starlette(routes=routes)
    web.state.ctx = ctx
    return web
