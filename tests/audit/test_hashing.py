"""canonical_json is RFC 8785: the fast path is proven equal on its profile, the rest falls
back to the reference encoder."""

from __future__ import annotations

import orjson
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from kanvaro.audit.hashing import _in_profile, canonical_json, content_digest

ascii_keys = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=12)
safe_ints = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
scalars = st.none() | st.booleans() | safe_ints | st.text(max_size=40)
profile_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(ascii_keys, children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(profile_values)
def test_fast_path_equals_rfc8785_on_the_profile(value):
    assert _in_profile(value)
    assert canonical_json(value) == rfc8785.dumps(value)


finite_floats = st.floats(allow_nan=False, allow_infinity=False)
any_keys = st.text(max_size=8)
wide_values = st.recursive(
    scalars | finite_floats,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_keys, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(wide_values)
def test_every_value_encodes_exactly_as_rfc8785(value):
    assert canonical_json(value) == rfc8785.dumps(value)


def test_floats_go_through_rfc8785():
    value = {"amount": 1.0, "ratio": 1e21}
    assert not _in_profile(value)
    assert canonical_json(value) == b'{"amount":1,"ratio":1e+21}'
    # orjson alone would not be canonical here
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != canonical_json(value)


def test_non_ascii_keys_are_sorted_by_utf16_code_units():
    # U+1F600 sorts before U+E000 in UTF-16 (surrogate 0xD83D), after it in UTF-8.
    value = {"\ue000": 1, "\U0001f600": 2}
    assert not _in_profile(value)
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).index("\U0001f600".encode()) < canonical_json(value).index(
        "\ue000".encode()
    )
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != canonical_json(value)


def test_unsafe_integers_leave_the_fast_path():
    assert not _in_profile({"n": 2**53})


def test_content_digest_is_salted():
    one = content_digest("a" * 32, changes={}, ip_address="10.0.0.1", user_agent=None)
    two = content_digest("b" * 32, changes={}, ip_address="10.0.0.1", user_agent=None)
    assert one != two and len(one) == 64
