"""The verification hot path accepts exactly the entries the reference definition
(``chain.expected_record_hash`` / ``content_state``) accepts, and leaves any change to it."""

from __future__ import annotations

import json
import uuid

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kanvaro.audit import merkle
from kanvaro.audit.chain import content_state, expected_record_hash
from kanvaro.audit.hashing import GENESIS_HASH, canonical_json, content_digest, new_salt
from kanvaro.audit.hotpath import take

TEXT = st.text(max_size=40)
OPTIONAL = st.none() | TEXT
PAYLOAD = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
ENTRY = st.fixed_dictionaries(
    {
        "action": TEXT,
        "category": TEXT,
        "resourceType": OPTIONAL,
        "resourceId": OPTIONAL,
        "ipAddress": OPTIONAL,
        "userAgent": OPTIONAL,
        "changes": st.dictionaries(TEXT, PAYLOAD, max_size=4),
        "actor": st.booleans(),
    }
)
CHAIN = str(uuid.uuid4())


def _chain(entries, *, sqlite: bool, stored_text=canonical_json):
    """Entries as the database hands them to the hot path (PostgreSQL or SQLite form)."""
    rows, previous = [], GENESIS_HASH
    for seq, fields in enumerate(entries, start=1):
        entry_id, actor = uuid.uuid4(), uuid.uuid4() if fields["actor"] else None
        salt = new_salt()
        doc = {
            "sequenceNumber": seq,
            "id": str(entry_id),
            "chainId": CHAIN,
            "tenantId": CHAIN,
            "actorId": str(actor) if actor else None,
            "action": fields["action"],
            "resourceType": fields["resourceType"],
            "resourceId": fields["resourceId"],
            "category": fields["category"],
            "createdAt": "2026-12-01T10:00:00.123456Z",
            "changes": fields["changes"],
            "ipAddress": fields["ipAddress"],
            "userAgent": fields["userAgent"],
            "contentSalt": salt,
            "contentDigest": content_digest(
                salt,
                changes=fields["changes"],
                ip_address=fields["ipAddress"],
                user_agent=fields["userAgent"],
            ),
            "previousHash": previous,
        }
        doc["recordHash"] = previous = expected_record_hash(doc)
        assert content_state(doc) == "ok"
        ids = (entry_id.hex, uuid.UUID(CHAIN).hex, actor.hex if actor else None)
        if not sqlite:
            ids = (doc["id"], CHAIN, doc["actorId"])
        created = "2026-12-01 10:00:00.123456" if sqlite else doc["createdAt"]
        text = stored_text(fields["changes"])
        rows.append(
            [seq, ids[0], CHAIN, ids[1], ids[2], doc["action"], doc["resourceType"],
             doc["resourceId"], doc["category"], created,
             text.decode() if isinstance(text, bytes) else text, doc["ipAddress"],
             doc["userAgent"], salt, doc["contentDigest"], doc["previousHash"],
             doc["recordHash"]]
        )  # fmt: skip
    return rows


def _take(rows, *, sqlite):
    stack: list[bytes] = []
    index, count, head = take(
        rows, 0, sqlite=sqlite, count=0, head_hash=GENESIS_HASH, stack=stack, stop_at={}
    )
    return index, count, head, stack


@settings(max_examples=60, deadline=None)
@given(st.lists(ENTRY, min_size=1, max_size=6), st.booleans())
def test_an_intact_chain_is_accepted_whole(entries, sqlite):
    rows = _chain(entries, sqlite=sqlite)
    index, count, head, stack = _take(rows, sqlite=sqlite)
    assert (index, count, head) == (len(rows), len(rows), rows[-1][-1])
    assert merkle.fold(stack) == merkle.root([bytes.fromhex(r[-1]) for r in rows])


@settings(max_examples=60, deadline=None)
@given(st.lists(ENTRY, min_size=2, max_size=5), st.data())
def test_any_changed_column_is_left_to_the_reference_path(entries, data):
    rows = _chain(entries, sqlite=False)
    victim = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.integers(1, 16))
    original = rows[victim][column]
    replacement = data.draw(OPTIONAL.filter(lambda v: v != original))
    if column == 10:  # changes: another spelling of the same JSON is the same content
        assume(replacement is None or not _same_json(original, replacement))
    rows[victim][column] = replacement
    index, *_ = _take(rows, sqlite=False)
    assert index == victim


def _same_json(a: str, b: str) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


def test_changes_stored_by_json_dumps_before_0008_still_verify():
    entries = [
        {"action": "a:b:c", "category": "system", "resourceType": None, "resourceId": None,
         "ipAddress": "198.51.100.1", "userAgent": None, "actor": False,
         "changes": {"b": [1, "é"], "a": {"y": None, "x": True}}},
    ] * 3  # fmt: skip
    rows = _chain(entries, sqlite=True, stored_text=json.dumps)
    assert _take(rows, sqlite=True)[0] == 3


def test_an_erased_or_legacy_entry_is_left_to_the_reference_path():
    entries = [
        {"action": "a:b:c", "category": "system", "resourceType": None, "resourceId": None,
         "ipAddress": None, "userAgent": None, "actor": False, "changes": {}},
    ] * 2  # fmt: skip
    rows = _chain(entries, sqlite=False)
    rows[1][13] = None  # the salt erased by retention
    assert _take(rows, sqlite=False)[0] == 1
