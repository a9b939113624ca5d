"""RFC 7239 ``Forwarded``: the ``for=`` node of each hop, in order.

Only what the client-address decision needs: each comma-separated element's ``for``
parameter, unquoted, with an IPv6 address's brackets and any port removed. A malformed element
makes the whole header untrustworthy (None), as a malformed ``X-Forwarded-For`` does.
"""

from __future__ import annotations

import re

# token = 1*tchar (RFC 9110); quoted-string with backslash escapes.
_PAIR = re.compile(
    r"\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*"
    r'([!#$%&\'*+.^_`|~0-9A-Za-z-:\[\]]+|"(?:[^"\\]|\\.)*")\s*'
)


def _node(value: str) -> str | None:
    """``192.0.2.1``, ``"[2001:db8::1]:4711"``, ``unknown`` or an obfuscated ``_hidden``."""
    if value.startswith('"'):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else None
    host, _, port = value.partition(":")
    if port and ":" not in port and (port.isdigit() or port.startswith("_")):
        return host
    return value if ":" not in value or value.count(":") > 1 else None


def forwarded_for(header: str) -> list[str] | None:
    """The ``for`` values of every hop (``unknown`` and obfuscated names kept as they are, so
    a caller sees they are not addresses); None when the header does not parse."""
    hops: list[str] = []
    for element in _split(header, ","):
        found: str | None = None
        for pair in _split(element, ";"):
            if not pair.strip():
                continue
            match = _PAIR.fullmatch(pair)
            if match is None:
                return None
            if match.group(1).lower() == "for":
                found = _node(match.group(2))
                if found is None:
                    return None
        if found is not None:
            hops.append(found)
    return hops


def _split(text: str, separator: str) -> list[str]:
    """Split on the separator outside quoted strings."""
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts
