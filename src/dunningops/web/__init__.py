"""The HTTP side: one Starlette application (`create_app`) served by the daemon on one port.

* ``health.py``: ``/healthz`` and ``/metrics`` (Prometheus text, daemon/metrics.py).
* ``public.py``: the links that leave the building (alias verification, tracking pixel), signed
  and expiring (``links.py``).
* ``console/``: the team console (server-rendered pages, signed-in members, CSRF).
* ``api/``: ``/api/v1``, JSON for the systems around it (tokens, OpenAPI).
"""

from dunningops.web.app import create_app

__all__ = ["create_app"]
