"""Which network addresses an image URL may reach: public ones, or those the settings allow.

`ipaddress.is_global` alone is not enough (CVE-2024-4032, missing IPv6 blocks), so an explicit
deny list sits beside it, and IPv4-mapped or 6to4/NAT64 forms are unwrapped first.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from picpik.errors import InvalidInput

__all__ = ["Allowance", "resolve_checked"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DENIED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)]


def _unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address hidden inside an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_public(address: IPAddress) -> bool:
    inner = _unwrap(address)
    if any(inner in net for net in _DENIED if net.version == inner.version):
        return False
    return inner.is_global


class Allowance:
    """The hosts and networks (settings.fetch_allow) reachable although not public."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.hosts: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                self.hosts.add(entry.strip().lower().rstrip("."))

    def permits(self, host: str, address: IPAddress) -> bool:
        if host.lower().rstrip(".") in self.hosts:
            return True
        inner = _unwrap(address)
        return any(inner in net or address in net for net in self.networks
                   if net.version in (inner.version, address.version))


def resolve_checked(host: str, port: int, allowance: Allowance) -> str:
    """Resolve host and return one address to connect to; every resolved address must be
    public or allowed, else InvalidInput (a name that also resolves to a private address is
    refused outright: DNS could hand out either)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot resolve host {host!r}: {exc.strerror}",
                           field="reference") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        if not is_public(address) and not allowance.permits(host, address):
            raise InvalidInput(
                f"host {host!r} resolves to {address}, which is not a public address "
                "(add it to CUTOUT_FETCH_ALLOW to allow it)", field="reference")
    if not addresses:
        raise InvalidInput(f"host {host!r} has no address", field="reference")
    return str(addresses[0])
