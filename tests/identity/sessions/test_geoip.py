"""GeoIP: places from a MaxMind-format file the test writes itself (mmdb-writer)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from pydantic import ValidationError

from kanvaro.config import Settings
from kanvaro.identity.sessions import geoip
from kanvaro.identity.sessions.geoip import Place

BERLIN = {
    "country": {"iso_code": "DE", "names": {"en": "Germany"}},
    "city": {"names": {"en": "Berlin", "de": "Berlin"}},
    "location": {"latitude": 52.52, "longitude": 13.405},
}
NEW_YORK = {
    "country": {"iso_code": "US", "names": {"en": "United States"}},
    "city": {"names": {"en": "New York"}},
    "location": {"latitude": 40.7128, "longitude": -74.006},
}
# The suite's documentation networks (RFC 5737 / RFC 3849) as places.
CITIES = {
    "203.0.113.0/24": BERLIN,
    "198.51.100.0/24": NEW_YORK,
    "2001:db8:1::/48": BERLIN,
}


def write_geoip(
    path: Path, networks: dict[str, dict[str, Any]], *, kind: str = "GeoIP2-City"
) -> Path:
    """A MaxMind-format database of ``networks`` (CIDR -> record) at ``path``."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind, languages=["en"])
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


def services_with(path: Path | None) -> Any:
    """What ``geoip.locate`` reads of the services: the settings (real ones)."""
    settings = Settings.model_construct(geoip_database=path)
    return SimpleNamespace(settings=settings)


def test_a_city_database_gives_country_city_and_coordinates(tmp_path):
    services = services_with(write_geoip(tmp_path / "city.mmdb", CITIES))
    assert geoip.locate(services, "203.0.113.7") == Place("DE", "Berlin", 52.52, 13.405)
    assert geoip.locate(services, "198.51.100.20") == Place("US", "New York", 40.7128, -74.006)
    assert geoip.locate(services, "2001:db8:1:42::9") == Place("DE", "Berlin", 52.52, 13.405)
    # An IPv4-mapped IPv6 address is its IPv4 address.
    assert geoip.locate(services, "::ffff:203.0.113.7") == Place("DE", "Berlin", 52.52, 13.405)
    assert geoip.locate(services, "192.0.2.1") is None  # not in the file
    assert geoip.locate(services, "203.0.113.7").describe() == "Berlin, DE"


def test_a_country_database_gives_the_country_only(tmp_path):
    countries = {"203.0.113.0/24": {"country": {"iso_code": "DE"}}}
    path = write_geoip(tmp_path / "country.mmdb", countries, kind="GeoIP2-Country")
    place = geoip.locate(services_with(path), "203.0.113.7")
    assert place == Place("DE") and not place.has_coordinates
    assert place.describe() == "DE"


def test_private_and_loopback_addresses_have_no_place_even_if_the_file_names_one(tmp_path):
    networks = {n: BERLIN for n in ("10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8", "fc00::/7")}
    services = services_with(write_geoip(tmp_path / "odd.mmdb", {**networks, **CITIES}))
    for address in (
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.1",
        "100.64.0.1",
        "127.0.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "169.254.1.1",
        "0.0.0.0",
        "::ffff:10.1.2.3",
    ):
        assert geoip.locate(services, address) is None, address
    assert geoip.locate(services, "203.0.113.7") is not None


def test_geoip_is_off_without_the_setting_and_junk_addresses_have_no_place(tmp_path):
    assert geoip.locate(services_with(None), "203.0.113.7") is None
    services = services_with(write_geoip(tmp_path / "city.mmdb", CITIES))
    for junk in (None, "", "not-an-ip", "203.0.113.7:443", "999.1.1.1", "\x00"):
        assert geoip.locate(services, junk) is None


def test_malformed_records_are_left_out_not_trusted(tmp_path):
    odd = {
        "203.0.113.0/25": {"country": {"iso_code": "germany"}, "location": {"latitude": 999.0}},
        "203.0.113.128/25": {
            "country": {"iso_code": "DE"},
            "city": {"names": {"en": "Ber\nlin"}},
            "location": {"latitude": 52.5, "longitude": "east"},
        },
    }
    services = services_with(write_geoip(tmp_path / "odd.mmdb", odd))
    assert geoip.locate(services, "203.0.113.1") is None
    assert geoip.locate(services, "203.0.113.200") == Place("DE", "Berlin")


def test_a_replaced_file_is_picked_up_without_a_restart(tmp_path):
    path = write_geoip(tmp_path / "city.mmdb", CITIES)
    services = services_with(path)
    assert geoip.locate(services, "203.0.113.7").city == "Berlin"
    replacement = write_geoip(tmp_path / "next.mmdb", {"203.0.113.0/24": NEW_YORK})
    stat = path.stat()
    os.replace(replacement, path)  # how a monthly update lands: a rename over the old file
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert geoip.locate(services, "203.0.113.7").city == "New York"


def test_a_file_that_is_no_database_gives_no_place_and_says_so(tmp_path, capsys):
    path = tmp_path / "broken.mmdb"
    path.write_bytes(b"this is not a MaxMind database" * 10)
    assert geoip.locate(services_with(path), "203.0.113.7") is None
    assert "geoip_unavailable" in capsys.readouterr().out


def test_the_setting_refuses_a_path_it_cannot_read(tmp_path):
    with pytest.raises(ValidationError, match="KANVARO_GEOIP_DATABASE"):
        Settings(geoip_database=tmp_path / "missing.mmdb")
    readable = write_geoip(tmp_path / "city.mmdb", CITIES)
    assert Settings(geoip_database=readable).geoip_database == readable
