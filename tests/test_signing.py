"""The signature scheme of CONTRACT.md: its five vectors, and properties of every value type."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picpik.body import build_signed_body
from picpik.signing import sign, string_to_sign

# No deadline: on a busy shared machine a slow example is not a wrong one.
RELAXED = settings(deadline=None)

VECTORS: dict[str, tuple[dict[str, Any], str]] = {
    "A": ({"Action": "ListModels", "PublicKey": "abcdefg"},
          "4a20bc1141494035f6aaaad13224c94c5a8bc3a5"),
    "B": ({"Action": "StartPicpikApp", "PublicKey": "abcdefg", "AppId": "your_app_id"},
          "c5e65ad1936ff695436917bf807d2281db33e7a3"),
    "C": ({"Action": "RemoveBackground", "PublicKey": "abcdefg",
           "request_uuid": "15ba36f2-2d69-40bd-9e0c-3e73f0f5acd0", "Box": [180, 264, 510, 642],
           "ErodeSize": 15, "ForegroundThreshold": 240, "BackgroundThreshold": 15,
           "HairOptimization": "auto", "OnlyMask": False,
           "RawImage": "data:image/jpeg;base64,xxx", "RemoveType": "General"},
          "eca77040d8aad19757c006c69c020931f3676bef"),
    "E": ({"Action": "ListTasksDetails", "PublicKey": "abcdefg",
           "TaskUIDList": ["ckti5nf2h4keq8mr9n00", "cktlm6lrh4xxx8ng9nf0"],
           "request_uuid": "ebe3bd1a-2fb6-4a85-a1bd-a5d556bf0f50"},
          "0fb6db866871178f1a97d4a9e4e241a4075d832e"),
    "G": ({"Action": "X", "PublicKey": "abcdefg", "A": None, "B": "", "C": [], "D": {}},
          "d404905c029b89ff0917376bd86b04c17910f228"),
}
STRING_TO_SIGN_C = (
    "ActionRemoveBackgroundBackgroundThreshold15Box180264510642ErodeSize15ForegroundThreshold240"
    "HairOptimizationautoOnlyMaskfalsePublicKeyabcdefgRawImagedata:image/jpeg;base64,xxx"
    "RemoveTypeGeneralrequest_uuid15ba36f2-2d69-40bd-9e0c-3e73f0f5acd0123456"
)
PRIVATE_KEY = "123456"


def reference_encode(value: Any) -> str:
    """The scheme as CONTRACT.md words it, written plainly (and slowly) as the oracle."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return np.format_float_positional(value, trim="-")
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        names = sorted(value, key=lambda name: name.encode())
        return "".join(name + reference_encode(value[name]) for name in names)
    return "".join(reference_encode(item) for item in value)


def reference_sign(params: dict[str, Any], private_key: str) -> str:
    plain = reference_encode({k: v for k, v in params.items() if k != "Signature"}) + private_key
    return hashlib.sha1(plain.encode()).hexdigest()


finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers() | finite_floats | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12,
)
params_strategy = st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=8)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_each_contract_vector_signs_to_its_documented_sha1(name: str) -> None:
    params, expected = VECTORS[name]
    assert sign(params, PRIVATE_KEY) == expected


def test_vector_c_string_to_sign_is_the_documented_one() -> None:
    assert string_to_sign(VECTORS["C"][0], PRIVATE_KEY) == STRING_TO_SIGN_C


def test_a_signature_key_in_the_parameters_is_ignored() -> None:
    params, expected = VECTORS["E"]
    assert sign({**params, "Signature": "0" * 40}, PRIVATE_KEY) == expected


def test_a_value_of_an_unknown_type_is_refused() -> None:
    with pytest.raises(TypeError, match="set"):
        sign({"A": {1, 2}}, PRIVATE_KEY)


@RELAXED
@given(params_strategy, st.randoms(use_true_random=False))
def test_signing_does_not_depend_on_key_order(params: dict[str, Any], rnd: Any) -> None:
    items = list(params.items())
    rnd.shuffle(items)
    assert sign(dict(items), "k") == sign(params, "k")


@RELAXED
@given(params_strategy, st.text(max_size=12))
def test_streaming_signature_equals_sha1_of_the_plain_joined_string(
    params: dict[str, Any], key: str
) -> None:
    assert sign(params, key) == reference_sign(params, key)


@RELAXED
@given(st.integers())
def test_integers_encode_in_decimal(number: int) -> None:
    assert string_to_sign({"N": number}, "") == f"N{number}"


@RELAXED
@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_integral_floats_encode_as_integers(number: int) -> None:
    assert string_to_sign({"N": float(number)}, "") == f"N{number}"


@RELAXED
@given(finite_floats.filter(lambda f: not f.is_integer()))
def test_non_integral_floats_encode_in_plain_decimal_that_round_trips(number: float) -> None:
    encoded = string_to_sign({"N": number}, "")[1:]
    assert "e" not in encoded.lower()
    assert float(encoded) == number


TINY = "0." + "0" * 299 + "15"


@pytest.mark.parametrize(
    ("value", "encoded"), [(1e-7, "0.0000001"), (1.5e-300, TINY), (-2.5, "-2.5"), (0.1, "0.1")]
)
def test_small_and_negative_floats_never_use_scientific_notation(
    value: float, encoded: str
) -> None:
    assert string_to_sign({"N": value}, "") == "N" + encoded


@RELAXED
@given(st.booleans())
def test_booleans_encode_as_true_or_false(flag: bool) -> None:
    assert string_to_sign({"B": flag}, "") == ("Btrue" if flag else "Bfalse")


def test_null_encodes_as_the_empty_string_but_keeps_its_name() -> None:
    assert string_to_sign({"A": None, "B": 1}, "key") == "AB1key"


@RELAXED
@given(st.lists(st.integers() | st.text(max_size=5) | st.booleans(), max_size=8))
def test_arrays_concatenate_their_elements_with_no_separator(items: list[Any]) -> None:
    expected = "".join(reference_encode(item) for item in items)
    assert string_to_sign({"L": items}, "") == "L" + expected


@RELAXED
@given(st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=5), max_size=6))
def test_objects_encode_their_own_sorted_names_and_values(inner: dict[str, Any]) -> None:
    expected = "".join(name + reference_encode(inner[name])
                       for name in sorted(inner, key=lambda n: n.encode()))
    assert string_to_sign({"O": {"z": inner, "a": 1}}, "") == "Oa1z" + expected


def test_arrays_of_objects_encode_each_object_in_order() -> None:
    value = [{"b": 2, "a": 1}, {"d": [True, None], "c": "x"}]
    assert string_to_sign({"L": value}, "k") == "La1b2cxdtruek"


def test_names_sort_in_byte_order_so_lowercase_follows_capitals() -> None:
    assert string_to_sign({"request_uuid": "u", "RawImage": "r", "Zeta": 1}, "") == (
        "RawImagerZeta1request_uuidu"
    )


@settings(max_examples=10, deadline=None)
@given(st.text(alphabet="aé€😀b", min_size=1, max_size=5), st.integers(0, 3))
def test_strings_larger_than_one_chunk_hash_like_the_plain_string(tail: str, mib: int) -> None:
    # Multi-byte characters land on the 1 MiB chunk boundaries.
    big = ("é" * ((1 << 20) - 1) + "😀") * mib + tail + "x" * ((1 << 20) + 7)
    plain = hashlib.sha1(("RawImage" + big + "key").encode()).hexdigest()
    assert sign({"RawImage": big}, "key") == plain


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_values_sign_like_the_same_text(kind: type) -> None:
    text = "data:image/png;base64," + "QUJD" * 600_000
    assert sign({"RawImage": kind(text.encode())}, "key") == sign({"RawImage": text}, "key")


@RELAXED
@given(st.binary(max_size=5000), st.sampled_from(["", "data:image/png;base64,"]),
       st.dictionaries(st.sampled_from(["Box", "ErodeSize", "Zed", "request_uuid"]),
                       st.integers(0, 99) | st.text(max_size=5), max_size=4))
def test_built_body_carries_the_signature_of_exactly_its_own_values(
    image: bytes, prefix: str, extra: dict[str, Any]
) -> None:
    body = build_signed_body({"Action": "RemoveBackground", "PublicKey": "p", **extra}, "key",
                             large_name="RawImage", large_prefix=prefix, large_bytes=image)
    decoded = json.loads(bytes(body))
    signature = decoded.pop("Signature")
    assert signature == reference_sign(decoded, "key")
    assert decoded["RawImage"] == prefix + base64.b64encode(image).decode()
