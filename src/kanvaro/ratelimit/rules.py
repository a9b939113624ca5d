"""Endpoint rules: a path pattern, an optional method and role, a rate with a burst.

Patterns are matched against the request path: ``*`` is one path segment (or part of one),
``**`` as the last segment is the rest of the path. A rate of N a minute with a burst of B
becomes two ``limits`` windows: N + B in any minute, and 10·N in any ten minutes, so a
client may spend a burst now and then while its average stays at N a minute.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from limits import RateLimitItemPerMinute

from kanvaro.security.ratelimit.limiter import Limit

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_RATE = 1_000_000
BURST_SPAN_MINUTES = 10


class RuleError(ValueError):
    """A rule that cannot be: ``field`` is the camelCase name at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def compile_pattern(pattern: str) -> re.Pattern[str]:
    if not pattern.startswith("/") or len(pattern) > 255:
        raise RuleError("endpointPattern", "must be a path starting with '/' (at most 255)")
    segments = pattern.split("/")[1:]
    parts = []
    for index, segment in enumerate(segments):
        if segment == "**":
            if index != len(segments) - 1:
                raise RuleError("endpointPattern", "'**' may only be the last segment")
            parts.append("(?:/.*)?")
            continue
        if "**" in segment or any(c in segment for c in "?#{}[]\\ "):
            raise RuleError("endpointPattern", f"unsupported characters in segment {segment!r}")
        parts.append("/" + "[^/]*".join(re.escape(p) for p in segment.split("*")))
    return re.compile("".join(parts) + "/?")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    tenant_id: uuid.UUID | None
    endpoint_pattern: str
    method: str | None
    requests_per_minute: int
    burst_allowance: int
    per_user: bool
    role: str | None
    source: str  # "configuration" or "api"
    regex: re.Pattern[str]
    limits: tuple[Limit, ...]

    def matches(self, method: str, path: str, role: str | None = None) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.role is not None and self.role != role:
            return False
        return self.regex.fullmatch(path) is not None

    @property
    def needs_principal(self) -> bool:
        """Counted per user, or only for a role: decided once the caller is known."""
        return self.per_user or self.role is not None or self.tenant_id is not None


def build_rule(
    *,
    rule_id: str,
    tenant_id: uuid.UUID | None,
    endpoint_pattern: str,
    requests_per_minute: int,
    method: str | None = None,
    burst_allowance: int = 0,
    per_user: bool = False,
    role: str | None = None,
    source: str = "api",
    fail_closed: bool = False,
) -> Rule:
    method = method.upper() if method else None
    if method is not None and method not in METHODS:
        raise RuleError("method", f"must be one of {', '.join(sorted(METHODS))}")
    if not 1 <= requests_per_minute <= MAX_RATE:
        raise RuleError("requestsPerMinute", f"must be between 1 and {MAX_RATE}")
    if not 0 <= burst_allowance <= MAX_RATE:
        raise RuleError("burstAllowance", f"must be between 0 and {MAX_RATE}")
    regex = compile_pattern(endpoint_pattern)
    name = f"rule:{rule_id}"
    limits = [
        Limit(name, RateLimitItemPerMinute(requests_per_minute + burst_allowance), fail_closed)
    ]
    if burst_allowance:
        limits.append(
            Limit(
                f"{name}:span",
                RateLimitItemPerMinute(
                    requests_per_minute * BURST_SPAN_MINUTES, BURST_SPAN_MINUTES
                ),
                fail_closed,
            )
        )
    return Rule(
        rule_id, tenant_id, endpoint_pattern, method, requests_per_minute, burst_allowance,
        per_user, role, source, regex, tuple(limits),
    )  # fmt: skip


_CONFIG_KEYS = {
    "endpointPattern": "endpoint_pattern",
    "requestsPerMinute": "requests_per_minute",
    "method": "method",
    "burstAllowance": "burst_allowance",
    "perUser": "per_user",
    "role": "role",
}


def configured_rules(text: str, *, fail_closed_for: object = None) -> tuple[Rule, ...]:
    """``KANVARO_RATE_LIMIT_RULES``: a JSON list of rule objects (camelCase, as the API's).
    ValueError naming the setting and the entry when one is malformed."""
    try:
        entries = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ValueError(f"KANVARO_RATE_LIMIT_RULES is not JSON: {exc.msg}") from None
    if not isinstance(entries, list):
        raise ValueError("KANVARO_RATE_LIMIT_RULES must be a JSON list of rules")
    rules = []
    for index, entry in enumerate(entries):
        where = f"KANVARO_RATE_LIMIT_RULES[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object")
        unknown = sorted(set(entry) - set(_CONFIG_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown field {unknown[0]}")
        try:
            kwargs = {_CONFIG_KEYS[k]: v for k, v in entry.items()}
            _check_types(kwargs)
            pattern = kwargs.get("endpoint_pattern", "")
            closed = callable(fail_closed_for) and bool(fail_closed_for(pattern))
            rules.append(
                build_rule(
                    rule_id=f"config-{index}",
                    tenant_id=None,
                    source="configuration",
                    fail_closed=closed,
                    **kwargs,
                )
            )
        except RuleError as exc:
            raise ValueError(f"{where}.{exc.field}: {exc}") from None
        except TypeError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return tuple(rules)


def _check_types(kwargs: dict[str, object]) -> None:
    for key in ("requests_per_minute", "burst_allowance"):
        if key in kwargs and (type(kwargs[key]) is not int):
            raise RuleError(_camel(key), "must be an integer")
    if "per_user" in kwargs and type(kwargs["per_user"]) is not bool:
        raise RuleError("perUser", "must be true or false")
    for key in ("endpoint_pattern", "method", "role"):
        if key in kwargs and kwargs[key] is not None and not isinstance(kwargs[key], str):
            raise RuleError(_camel(key), "must be a string")
    if "endpoint_pattern" not in kwargs or "requests_per_minute" not in kwargs:
        raise TypeError("endpointPattern and requestsPerMinute are required")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)
