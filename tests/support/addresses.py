"""Private and special addresses an image URL must never reach: the one list, used by the
address guard's own tests (tests/test_fetch.py) and by the hostile corpus, which fetches each of
them through a real worker (tests/test_hostile_inputs.py)."""

from __future__ import annotations

__all__ = ["PRIVATE_ADDRESSES", "PUBLIC_ADDRESSES"]

# Loopback, RFC 1918, link-local and the cloud metadata address, CGNAT, "this network",
# IPv6 loopback, link-local and unique-local, loopback hidden in IPv4-mapped, NAT64 and 6to4
# forms, multicast, benchmarking.
PRIVATE_ADDRESSES = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1",
    "2002:7f00:1::", "224.0.0.1", "198.18.0.1",
]
PUBLIC_ADDRESSES = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"]
