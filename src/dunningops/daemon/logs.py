"""Structured logs (structlog): JSON lines when stderr is not a terminal (a service manager, a
container, a file), a readable console renderer when a person watches.

Every event goes through ``mask_secrets``: values of the secrets this process knows (the SMTP and
IMAP passwords and user names, the Slack webhook, the store's password, all read from the
environment) are replaced wherever they appear, and fields named like a secret are masked whatever
their value. Other libraries' logs (uvicorn) go through the same renderer; uvicorn's access log is
off, since the public links carry tokens in their paths.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import IO, Any

import structlog

__all__ = ["MASK", "add_secrets", "configure", "get_logger", "mask_secrets", "reset", "secret_values"]

MASK = "***"
# Field names that hold a secret whatever their value (a credential passed by mistake).
_SECRET_NAMES = ("password", "passwd", "secret", "token", "authorization", "cookie", "api_key", "webhook")
# Shorter values would mask ordinary words; a real credential is longer.
MIN_SECRET_LENGTH = 4

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_handler: logging.Handler | None = None


def add_secrets(values: Iterable[str | None]) -> None:
    """Values never to appear in a log line, from now on (the longest are masked first)."""
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)


def secret_values(settings: Any, env: Mapping[str, str], *, database_password: str | None = None) -> list[str]:
    """The secrets named by ``settings``: every ``*_env`` field's variable, read from ``env``."""
    found: list[str] = [database_password] if database_password else []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and key.endswith("_env") and isinstance(item, str) and env.get(item):
                    found.append(env[item])
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(settings.model_dump() if hasattr(settings, "model_dump") else settings)
    return found


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: MASK if _secret_name(k) else _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value


def _secret_name(key: Any) -> bool:
    return isinstance(key, str) and any(name in key.lower() for name in _SECRET_NAMES)


def mask_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: known secret values and secret-named fields masked (exception text too)."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    return {k: MASK if _secret_name(k) and k != "event" else _scrub(v, secrets) for k, v in event_dict.items()}


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure(json: bool | None = None, level: str | int = "info", stream: IO[str] | None = None) -> None:
    """Send structlog's events and the standard library's records to ``stream`` (stderr).

    Args:
        json: JSON lines (True), the console renderer (False), or JSON unless ``stream`` is a terminal (None).
        level: the lowest level written.
        stream: where lines go; the default is the current ``sys.stderr``.
    """
    global _handler
    stream = stream if stream is not None else sys.stderr
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Any] = (
        # Tracebacks as text inside the JSON object: one event, one line.
        [structlog.processors.format_exc_info, mask_secrets, structlog.processors.JSONRenderer(sort_keys=False)]
        if json
        else [structlog.processors.format_exc_info, mask_secrets, structlog.dev.ConsoleRenderer(colors=False)]
    )
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail]
        )
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(_level(level))
    # Alembic announces its context on every store opening; only its warnings matter to an operator.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, _level(level)))
    _handler = handler


def reset() -> None:
    """Undo ``configure`` (tests): the handler removed, structlog's defaults back, no secrets known."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler = None
    structlog.reset_defaults()
    with _secrets_lock:
        _secrets.clear()


def get_logger(name: str = "dunningops.daemon") -> Any:
    """A structlog logger; events are ``logger.info("cycle.send", sent=3, ...)``."""
    return structlog.get_logger(name)
