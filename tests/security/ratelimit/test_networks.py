"""Client networks: CIDR membership, the /64 an IPv6 client is counted by, RFC 7239."""

from __future__ import annotations

import ipaddress

import pytest

from kanvaro.security.client_ip import client_ip, parse_networks
from kanvaro.security.ratelimit.forwarded import forwarded_for
from kanvaro.security.ratelimit.networks import (
    NetworkSet,
    client_key,
    parse_address,
    parse_network,
)


def test_membership_over_v4_and_v6_and_mapped_addresses():
    nets = NetworkSet.parse(["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"])
    assert parse_address("10.200.1.1") in nets
    assert parse_address("192.0.2.7") in nets
    assert parse_address("192.0.2.8") not in nets
    assert parse_address("2001:db8:ffff::1") in nets
    assert parse_address("2001:db9::1") not in nets
    assert parse_address("::ffff:10.1.2.3") in nets  # a dual-stack listener's IPv4 peer
    assert None not in nets
    assert not NetworkSet() and nets


def test_a_thousand_entries_are_one_lookup_per_prefix_length():
    nets = NetworkSet(ipaddress.ip_network(f"198.51.{i // 256}.{i % 256}/32") for i in range(1000))
    assert parse_address("198.51.3.231") in nets
    assert parse_address("198.51.3.232") not in nets
    assert len(nets._v4) == 1  # one prefix length, one set


def test_ipv6_clients_are_counted_by_their_64():
    a = parse_address("2001:db8:1:2:aaaa::1")
    b = parse_address("2001:db8:1:2:ffff:ffff:ffff:ffff")
    c = parse_address("2001:db8:1:3::1")
    assert client_key(a) == client_key(b) == "2001:db8:1:2::/64"
    assert client_key(c) != client_key(a)
    assert client_key(parse_address("203.0.113.9")) == "203.0.113.9"


@pytest.mark.parametrize("value", ["10.0.0.1/8", "300.0.0.0/8", "10.0.0.0/33", "nope"])
def test_malformed_or_host_bit_networks_are_refused_naming_the_value(value):
    with pytest.raises(ValueError, match="CIDR"):
        parse_network(value)


def test_rfc7239_examples():
    assert forwarded_for('for="_gazonk"') == ["_gazonk"]
    assert forwarded_for('For="[2001:db8:cafe::17]:4711"') == ["2001:db8:cafe::17"]
    assert forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43") == ["192.0.2.60"]
    assert forwarded_for("for=192.0.2.43, for=198.51.100.17") == ["192.0.2.43", "198.51.100.17"]
    assert forwarded_for('for="192.0.2.1:8080"') == ["192.0.2.1"]
    assert forwarded_for("for=192.0.2.1;;proto=https") == ["192.0.2.1"]
    assert forwarded_for("for=192.0.2.1 junk") is None
    assert forwarded_for('for="[2001:db8::1"') is None


def test_forwarded_is_believed_only_from_a_trusted_proxy():
    trusted = parse_networks(["10.0.0.0/8"])
    header = 'for=198.51.100.17, for="[2001:db8::5]"'
    assert client_ip("10.0.0.2", header, trusted, rfc7239=True) == "2001:db8::5"
    assert client_ip("203.0.113.1", header, trusted, rfc7239=True) == "203.0.113.1"
    # A forged leftmost hop behind a trusted proxy does not win: right to left, first untrusted.
    assert client_ip("10.0.0.2", "for=1.2.3.4, for=198.51.100.17", trusted, rfc7239=True) == (
        "198.51.100.17"
    )
    assert client_ip("10.0.0.2", "for=1.2.3.4 x", trusted, rfc7239=True) == "10.0.0.2"
