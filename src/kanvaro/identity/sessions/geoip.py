"""Where an IP address is, from a MaxMind-format database when one is configured
(``KANVARO_GEOIP_DATABASE``: GeoIP2/GeoLite2 City or Country, or any file of that format).

The file is opened once per path and kept (memory-mapped by ``maxminddb``); its modification
time is checked at each lookup, so the monthly replacement of the file is picked up without a
restart. A file that cannot be opened is logged once per version of it and gives no places:
risk scoring then runs without its two place-based checks, as when GeoIP is off.

Addresses that are nobody's place (loopback, private networks, link-local, carrier-grade NAT,
unique-local IPv6, multicast, unspecified) are not looked up.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb
import structlog

from kanvaro.services import Services

log = structlog.get_logger("kanvaro.identity")

_NOWHERE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CITY_LENGTH = 100


@dataclass(frozen=True)
class Place:
    country: str | None  # ISO 3166-1 alpha-2
    city: str | None = None  # the English name
    latitude: float | None = None
    longitude: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"country": self.country, "city": self.city, "latitude": self.latitude,
                "longitude": self.longitude}  # fmt: skip

    def describe(self) -> str:
        return ", ".join(p for p in (self.city, self.country) if p)

    @property
    def has_coordinates(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def locate(services: Services, ip_address: str | None) -> Place | None:
    """The place of ``ip_address``, or None (GeoIP off, no public address, not in the file)."""
    path = services.settings.geoip_database
    if path is None or not ip_address:
        return None
    address = public_address(ip_address)
    if address is None:
        return None
    reader = _readers.get(path)
    if reader is None:
        return None
    try:
        record = reader.get(address)
    except (ValueError, maxminddb.InvalidDatabaseError) as exc:
        log.error("geoip_lookup_failed", error_type=type(exc).__name__)
        return None
    return place_of(record) if isinstance(record, dict) else None


def public_address(ip_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(ip_address)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if (
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or any(address in network for network in _NOWHERE if network.version == address.version)
    ):
        return None
    return address


def place_of(record: dict[str, Any]) -> Place | None:
    """A City or Country record as a Place; anything malformed is left out, not trusted."""
    country = _iso(record.get("country")) or _iso(record.get("registered_country"))
    city = _english_name(record.get("city"))
    latitude = longitude = None
    location = record.get("location")
    if isinstance(location, dict):
        latitude = _coordinate(location.get("latitude"), 90)
        longitude = _coordinate(location.get("longitude"), 180)
        if latitude is None or longitude is None:
            latitude = longitude = None
    if country is None and city is None and latitude is None:
        return None
    return Place(country, city, latitude, longitude)


def _iso(part: Any) -> str | None:
    code = part.get("iso_code") if isinstance(part, dict) else None
    return code if isinstance(code, str) and _COUNTRY.match(code) else None


def _english_name(part: Any) -> str | None:
    names = part.get("names") if isinstance(part, dict) else None
    name = names.get("en") if isinstance(names, dict) else None
    if not isinstance(name, str):
        return None
    name = "".join(c for c in name if c.isprintable()).strip()[:_CITY_LENGTH]
    return name or None


def _coordinate(value: Any, bound: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and -bound <= value <= bound else None


class _Readers:
    """One open reader per path, reopened when the file's modification time changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # path -> (mtime_ns, reader or None when that version of the file would not open)
        self._open: dict[Path, tuple[int, Any]] = {}

    def get(self, path: Path) -> Any:
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError as exc:
            return self._unchanged_or_none(path, exc)
        cached = self._open.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        with self._lock:
            cached = self._open.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            try:
                reader = maxminddb.open_database(str(path))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                log.error("geoip_unavailable", path=str(path), error_type=type(exc).__name__)
                reader = None
            # The previous reader is left to the garbage collector, not closed: a lookup in
            # another thread may still be using it.
            self._open[path] = (mtime, reader)
            return reader

    def _unchanged_or_none(self, path: Path, exc: OSError) -> Any:
        cached = self._open.get(path)
        if cached is None:
            log.error("geoip_unavailable", path=str(path), error_type=type(exc).__name__)
            self._open[path] = (-1, None)
            return None
        # A file being replaced (gone for a moment) keeps the open, memory-mapped version.
        return cached[1]


_readers = _Readers()
