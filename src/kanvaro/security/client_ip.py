"""The client's IP address, trusting ``X-Forwarded-For`` (or RFC 7239 ``Forwarded``, one of
them, as configured) only from configured proxies.

The header is read right to left: each hop added by a trusted proxy is skipped, and the first
address not in the trusted set is the client. A client that forges the header from outside
gets its own connection address, so rate limits and audit entries cannot be spoofed.
``X-Forwarded-Proto`` is believed on the same terms (:func:`is_https`). IPv4-mapped IPv6
addresses are compared, and reported, as the IPv4 addresses they are.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from kanvaro.security.ratelimit.forwarded import forwarded_for as forwarded_hops

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address, an IPv4-mapped IPv6 one (``::ffff:10.0.0.1``, what a dual-stack listener
    reports for an IPv4 peer) as the IPv4 address it is; ValueError if it is none."""
    ip = ipaddress.ip_address(value)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = _address(address)
    except ValueError:
        return False
    # A mapped peer matches the IPv4 networks it belongs to; an IPv6 network written in mapped
    # form (``::ffff:10.0.0.0/104``) still matches it as well.
    raw = ipaddress.ip_address(address)
    return any(ip in net or raw in net for net in networks)


def _canonical(address: str) -> str:
    try:
        return str(_address(address))
    except ValueError:
        return address


def client_ip(
    peer: str | None,
    forwarded_for: str | None,
    trusted: tuple[Network, ...],
    *,
    rfc7239: bool = False,
) -> str | None:
    """``forwarded_for`` is the ``X-Forwarded-For`` value, or with ``rfc7239`` the
    ``Forwarded`` one."""
    if peer is None:
        return None
    # One client, one key for rate limits and the audit log, whichever socket family it used.
    peer = _canonical(peer)
    if not trusted or not _trusted(peer, trusted) or not forwarded_for:
        return peer
    if rfc7239:
        parsed = forwarded_hops(forwarded_for)
        if parsed is None:
            return peer  # a malformed header is not trusted at all
        hops = parsed
    else:
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain is not trusted at all
        if not _trusted(hop, trusted):
            return _canonical(hop)
    return _canonical(hops[0]) if hops else peer


def is_https(
    scheme: str | None,
    peer: str | None,
    forwarded_proto: str | None,
    trusted: tuple[Network, ...],
) -> bool:
    """Whether the client reached us over TLS: the connection itself, or a trusted proxy that
    terminated TLS and says so in ``X-Forwarded-Proto``. The one answer for HSTS and (later)
    the ``Secure`` cookie flag; a client outside the trusted set cannot claim it."""
    if scheme in ("https", "wss"):
        return True
    if not forwarded_proto or peer is None or not trusted or not _trusted(peer, trusted):
        return False
    # Each proxy appends its own value; the last one is from the proxy that talked to us.
    last = forwarded_proto.split(",")[-1].strip().lower()
    return last == "https"


def scope_is_https(scope: Mapping[str, Any], trusted: tuple[Network, ...]) -> bool:
    """:func:`is_https` for an ASGI scope (headers are latin-1 bytes, lower-case names)."""
    client = scope.get("client")
    peer = client[0] if client else None
    proto = None
    for name, value in scope.get("headers") or ():
        if name == b"x-forwarded-proto":
            proto = value.decode("latin-1")
    return is_https(scope.get("scheme"), peer, proto, trusted)


CLIENT_IP_STATE = "kanvaro.client_ip"


def scope_client_ip(
    scope: MutableMapping[str, Any], trusted: tuple[Network, ...], header: str = "x-forwarded-for"
) -> str | None:
    """:func:`client_ip` for an ASGI scope, worked out once per request (the rate limiter,
    the audit context and the access log all ask). Several header lines of the same name
    are one comma-separated list (RFC 9110 5.3)."""
    state = scope.setdefault("state", {})
    if CLIENT_IP_STATE in state:
        return state[CLIENT_IP_STATE]
    client = scope.get("client")
    value = None
    if trusted:
        wanted = header.encode("latin-1")
        lines = [v.decode("latin-1") for n, v in scope.get("headers") or () if n == wanted]
        value = ", ".join(lines) if lines else None
    ip = client_ip(client[0] if client else None, value, trusted, rfc7239=header == "forwarded")
    state[CLIENT_IP_STATE] = ip
    return ip
