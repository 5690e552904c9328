"""The signed JSON body of a call that carries one large base64 value (RawImage).

Written for memory and speed: the body is laid out once in a preallocated buffer, the image is
base64-encoded straight into it a chunk at a time, the signature is computed over a view of that
very region (the exact bytes sent, no second copy), and the 40-character Signature is written into
the slot kept for it at the end. Peak memory is about the body itself (4/3 of the image) plus one
chunk; `json.dumps` never sees the large string, which needs no escaping anyway.
"""

from __future__ import annotations

import binascii
import json
import string
from collections.abc import Mapping
from typing import Any

from picpik.signing import sign

__all__ = ["base64_length", "build_signed_body"]

_CHUNK_BYTES = 3 * (1 << 16)  # a multiple of 3: chunks encode with no padding in between
_SIGNATURE_CHARS = 40  # lowercase hex SHA1
_SAFE_PREFIX_CHARS = frozenset(string.ascii_letters + string.digits + "+,-./:;=")


def base64_length(n_bytes: int) -> int:
    """Length of the padded base64 encoding of n_bytes bytes."""
    return 4 * ((n_bytes + 2) // 3)


def build_signed_body(
    params: Mapping[str, Any],
    private_key: str,
    *,
    large_name: str,
    large_prefix: str,
    large_bytes: bytes | bytearray | memoryview,
) -> bytearray:
    """The JSON body of `params` plus `large_name` = prefix + base64(large_bytes), signed.

    The signature covers every value as it is serialised: the small parameters (their JSON
    decodes back to the same values) and the large one as the exact bytes in the body.
    """
    if large_name in params or "Signature" in params:
        raise ValueError(f"params must not hold {large_name} or Signature")
    if not set(large_prefix) <= _SAFE_PREFIX_CHARS:
        raise ValueError("the prefix of the large value must need no JSON escaping")
    head = json.dumps(dict(params), separators=(",", ":")).encode()[:-1]  # without the "}"
    open_large = (b"," if params else b"") + json.dumps(large_name).encode() + b':"'
    prefix = large_prefix.encode()
    close = b'","Signature":"'
    size = len(head) + len(open_large) + len(prefix) + base64_length(len(large_bytes))
    body = bytearray(size + len(close) + _SIGNATURE_CHARS + 2)
    body[: len(head) + len(open_large)] = head + open_large
    value_start = len(head) + len(open_large)
    value_end = _write_base64(body, value_start, prefix, large_bytes)
    tail = value_end + len(close)
    body[value_end:tail] = close
    with memoryview(body) as view, view[value_start:value_end] as value:
        signature = sign({**params, large_name: value}, private_key)
    body[tail:] = signature.encode() + b'"}'
    return body


def _write_base64(
    body: bytearray, start: int, prefix: bytes, data: bytes | bytearray | memoryview
) -> int:
    """Write prefix + base64(data) into body at start; return where it ends."""
    body[start : start + len(prefix)] = prefix
    position = start + len(prefix)
    with memoryview(data) as source:
        for offset in range(0, len(source), _CHUNK_BYTES):
            encoded = binascii.b2a_base64(source[offset : offset + _CHUNK_BYTES], newline=False)
            body[position : position + len(encoded)] = encoded
            position += len(encoded)
            del encoded  # so two chunks are never alive at once
    return position
