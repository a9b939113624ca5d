"""Structured JSON logs (structlog) with redaction applied to every event before rendering.

Two steps run on every event, from structlog *and* from the standard library (uvicorn,
SQLAlchemy, asyncio: they are routed through the same processors):

1. By key: any key that names a secret (password, token, secret, otp, code, key, credential,
   authorization, cookie, connection URL, ...) has its value replaced, at any depth; keys named
   in ``pii_fields`` (``KANVARO_PII_REDACTION``: email, phone, ...) are masked the same way.
2. By value, as a second net: strings that look like a bearer credential (a JWT, a
   ``Bearer ...`` header value) are masked wherever they appear, messages included.

The access log is ours (``kanvaro.middleware.access_log``, one line per request, uvicorn's own
is off): it carries the path without its query string, because a query parameter can carry a
token, and goes through the same redaction. The canary tests (tests/security/test_canary.py) plant
secrets through every entry point and check that none reaches the output.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

REDACTED = "[REDACTED]"
SECRET_KEY_PATTERN = re.compile(
    r"pass(word|wd|phrase)?|secret|token|otp|totp|(^|_)codes?$|recovery_?codes?|api[_-]?key|private|"
    r"credential|authorization|cookie|session[_-]?id|signature|master[_-]?key|^key$|_key$|"
    r"^dek$|^kek$|bearer|jwt|dsn|database[_-]?url|redis[_-]?url|connection[_-]?string",
    re.IGNORECASE,
)
# A JWT (three base64url parts, the first two starting with '{"' encoded) or "Bearer <value>".
SECRET_VALUE_PATTERN = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
)
_OURS = "_kanvaro_handler"


# Field names repeat (every access log line has the same dozen): their verdicts are kept,
# bounded, so a line tests each name once per process, not per line (2-3 % of a request).
@functools.lru_cache(maxsize=4096)
def _is_sensitive(key: str, pii: frozenset[str]) -> bool:
    if SECRET_KEY_PATTERN.search(key):
        return True
    lowered = key.lower()
    return any(
        lowered == p or lowered.endswith("_" + p) or lowered.startswith(p + "_") for p in pii
    )


def _redact(value: Any, pii: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if _is_sensitive(str(k), pii) else _redact(v, pii))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, pii) for v in value]
    if isinstance(value, str):
        return SECRET_VALUE_PATTERN.sub(REDACTED, value)
    return value


def redaction_processor(pii_fields: Iterable[str] = ()) -> structlog.types.Processor:
    pii = frozenset(f.lower() for f in pii_fields)

    def redact(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {
            k: (
                _redact(v, pii)
                if k == "event"
                else REDACTED
                if _is_sensitive(k, pii)
                else _redact(v, pii)
            )
            for k, v in event_dict.items()
        }

    return redact


class _AccessLogFilter(logging.Filter):
    """Drop the query string from uvicorn's access log line (it can carry a token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name == "uvicorn.access"
            and isinstance(record.args, tuple)
            and len(record.args) == 5
        ):
            args = list(record.args)
            path = str(args[2])
            if "?" in path:
                args[2] = path.split("?", 1)[0] + "?" + REDACTED
            record.args = tuple(args)
        return True


class _Stderr:
    """Whatever ``sys.stderr`` is at write time (test runners swap it and close the old one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


AccessEmitter = Callable[[dict[str, Any]], None]


def _no_access_log(fields: dict[str, Any]) -> None:
    return None


_access: AccessEmitter = _no_access_log


def access_log(fields: dict[str, Any]) -> None:
    """Write one access-log event (``kanvaro.access``) the way ``configure_logging`` set up."""
    _access(fields)


def _access_emitter(
    level: int, *, json: bool, pii_fields: Iterable[str], output: Any
) -> AccessEmitter:
    """The access log's own fast path: it runs on every request, so in JSON mode it renders
    with orjson straight to the stream instead of walking the standard library's handler
    chain (~70 us a request measured). Redaction is the same processor as everywhere."""
    if level > logging.INFO:
        return _no_access_log
    if not json:
        logger = structlog.get_logger("kanvaro.access")
        return lambda fields: logger.info("request", **fields)
    redact = redaction_processor(pii_fields)

    def emit(fields: dict[str, Any]) -> None:
        event = {
            "event": "request",
            "logger": "kanvaro.access",
            "level": "info",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            **structlog.contextvars.get_contextvars(),
            **fields,
        }
        output.write(orjson.dumps(redact(None, "info", event)).decode() + "\n")

    return emit


def configure_logging(
    level: str = "INFO", *, json: bool = True, pii_fields: Iterable[str] = (), stream: Any = None
) -> None:
    numeric = logging.getLevelName(level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redaction_processor(pii_fields),
    ]
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    output = stream or _Stderr()
    global _access
    _access = _access_emitter(numeric, json=json, pii_fields=pii_fields, output=output)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )
    # The standard library's loggers (uvicorn, SQLAlchemy, asyncio) go through the same
    # redaction and renderer, into the same stream.
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(_AccessLogFilter())
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # These log SQL parameters or full URLs (query strings included) below WARNING, whatever
    # the parameter is called, so key-based redaction cannot help: they stay at WARNING even
    # when the rest runs at DEBUG. (SQLAlchemy decides to echo SQL from its logger's level.)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


QUIET_LOGGERS = (
    "alembic.runtime.plugins",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "aiosqlite",
    "asyncpg",
    "httpx",
    "httpcore",
    "urllib3",
    "hvac",
)
