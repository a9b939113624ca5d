"""Structured JSON logs (structlog) with redaction applied to every event before rendering.

Redaction is by key: any key that names a secret (password, token, secret, otp, code, key,
authorization, cookie, ...) has its value replaced, at any depth. Configured PII fields
(``pii_fields``) are masked the same way. Values are never inspected for content: a secret
must not be logged under an innocent name in the first place, and the canary tests check it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"
SECRET_KEY_PATTERN = re.compile(
    r"pass(word|wd|phrase)?|secret|token|otp|totp|(^|_)code$|api[_-]?key|private|"
    r"credential|authorization|cookie|session[_-]?id|signature|master[_-]?key|^key$|_key$",
    re.IGNORECASE,
)


def _redact(value: Any, pii: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if _is_sensitive(str(k), pii) else _redact(v, pii))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, pii) for v in value]
    return value


def _is_sensitive(key: str, pii: frozenset[str]) -> bool:
    return bool(SECRET_KEY_PATTERN.search(key)) or key.lower() in pii


def redaction_processor(pii_fields: Iterable[str] = ()) -> structlog.types.Processor:
    pii = frozenset(f.lower() for f in pii_fields)

    def redact(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {
            k: (v if k == "event" else REDACTED if _is_sensitive(k, pii) else _redact(v, pii))
            for k, v in event_dict.items()
        }

    return redact


def configure_logging(
    level: str = "INFO", *, json: bool = True, pii_fields: Iterable[str] = (), stream: Any = None
) -> None:
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redaction_processor(pii_fields),
    ]
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
