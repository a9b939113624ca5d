"""Client networks: CIDR sets (IPv4 and IPv6) and the key a client is counted under.

An IPv6 client is counted by its /64: one subscriber line or cloud instance gets a whole /64
and could otherwise walk through 2^64 addresses, each with a fresh allowance.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(value: str | None) -> Address | None:
    """The address, an IPv4-mapped IPv6 one as the IPv4 address it is; None if it is none."""
    if not value:
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_network(value: str) -> Network:
    """A CIDR (or a bare address, a /32 or /128); ValueError naming the value if malformed.
    Host bits are refused: ``10.0.0.1/8`` is more likely a typo than a wish for ``10.0.0.0/8``."""
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a network in CIDR notation ({exc})") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        prefix = max(0, network.prefixlen - 96)
        return ipaddress.IPv4Network(f"{mapped}/{prefix}", strict=False)
    return network


def client_key(address: Address) -> str:
    """What a client is counted under: its IPv4 address, or its IPv6 /64."""
    if isinstance(address, ipaddress.IPv6Address):
        return f"{ipaddress.IPv6Network((int(address) >> 64 << 64, 64))}"
    return str(address)


class NetworkSet:
    """Membership of an address in a set of networks, in one dictionary lookup per distinct
    prefix length (a list of a thousand /32s costs the same as one)."""

    __slots__ = ("_v4", "_v6", "networks")

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(networks)
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for net in self.networks:
            table, bits = (v4, 32) if net.version == 4 else (v6, 128)
            table.setdefault(net.prefixlen, set()).add(
                int(net.network_address) >> (bits - net.prefixlen)
            )
        self._v4 = tuple(v4.items())
        self._v6 = tuple(v6.items())

    @classmethod
    def parse(cls, values: Iterable[str]) -> NetworkSet:
        return cls(parse_network(v) for v in values if v.strip())

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: Address | None) -> bool:
        if address is None:
            return False
        if address.version == 4:
            table, bits = self._v4, 32
        else:
            table, bits = self._v6, 128
        value = int(address)
        return any((value >> (bits - prefix)) in heads for prefix, heads in table)
