"""The record hash: SHA-256 over RFC 8785 canonical JSON of the entry.

Payloads stay in the JCS-safe profile (strings, integers, booleans, null, lists, objects with
string keys; no floats), where ``orjson`` with sorted keys produces exactly the RFC 8785 bytes
at ~50x the speed of the reference encoder. ``canonical_json`` checks the profile and falls
back to ``rfc8785`` for anything outside it; a property test proves the two agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import rfc8785

GENESIS_HASH = "0" * 64


def _in_profile(value: Any) -> bool:
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**53) < value < 2**53  # I-JSON safe integers only
    if isinstance(value, list | tuple):
        return all(_in_profile(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and k.isascii() and _in_profile(v) for k, v in value.items())
    return False


def canonical_json(value: Any) -> bytes:
    if _in_profile(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return rfc8785.dumps(value)


def timestamp(value: datetime) -> str:
    """Timestamps enter the hash as fixed-width UTC ISO 8601 strings (microseconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(fields: Mapping[str, Any], *, previous_hash: str, sequence_number: int) -> str:
    document = {**fields, "previousHash": previous_hash, "sequenceNumber": sequence_number}
    return hashlib.sha256(canonical_json(document)).hexdigest()
