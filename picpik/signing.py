"""The API's signature: lowercase hex SHA1 over sorted `name + encode(value)` pairs + PrivateKey.

The scheme is in `shared/api/CONTRACT.md`. Values are fed to the hash piece by piece, so a large
RawImage (str or bytes) is never copied into a second huge string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["encode_value", "sign", "signing_pieces", "string_to_sign"]

_CHUNK_CHARS = 1 << 20  # large strings are encoded to UTF-8 a megabyte at a time


Piece = bytes | bytearray | memoryview


def _encode_float(value: float) -> str:
    if value.is_integer():
        return str(int(value))
    # repr() is the shortest round-trip form; Decimal renders it without an exponent.
    return format(Decimal(repr(value)), "f")


def _encode_str(value: str) -> Iterator[bytes]:
    if len(value) <= _CHUNK_CHARS:
        yield value.encode()
        return
    for start in range(0, len(value), _CHUNK_CHARS):
        yield value[start : start + _CHUNK_CHARS].encode()


def encode_value(value: Any) -> Iterator[Piece]:
    """Yield the UTF-8 pieces of one value's encoding, as the scheme defines it."""
    if value is None:
        return
    if isinstance(value, bool):  # before int: bool is an int subclass
        yield b"true" if value else b"false"
    elif isinstance(value, int):
        yield str(value).encode()
    elif isinstance(value, float):
        yield _encode_float(value).encode()
    elif isinstance(value, str):
        yield from _encode_str(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        yield value  # already the bytes that go into the body (e.g. base64 of the image)
    elif isinstance(value, Mapping):
        yield from _encode_pairs(value)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from encode_value(item)
    else:
        raise TypeError(f"cannot sign a value of type {type(value).__name__}")


def _encode_pairs(params: Mapping[str, Any]) -> Iterator[Piece]:
    # Byte order of the UTF-8 names (case-sensitive): 'request_uuid' sorts after 'RawImage'.
    for name in sorted(params, key=lambda n: n.encode()):
        yield name.encode()
        yield from encode_value(params[name])


def signing_pieces(params: Mapping[str, Any], private_key: str) -> Iterator[Piece]:
    """Yield the string to sign in pieces: every parameter but `Signature`, then the key."""
    yield from _encode_pairs({k: v for k, v in params.items() if k != "Signature"})
    yield private_key.encode()


def string_to_sign(params: Mapping[str, Any], private_key: str) -> str:
    """The whole string to sign; for tests and debugging of small requests only."""
    return b"".join(signing_pieces(params, private_key)).decode()


def sign(params: Mapping[str, Any], private_key: str) -> str:
    """Lowercase hex SHA1 signature of `params` (a `Signature` key in it is ignored)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for piece in signing_pieces(params, private_key):
        digest.update(piece)
    return digest.hexdigest()
