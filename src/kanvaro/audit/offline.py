"""Offline verification: an export file or a proof bundle, a trusted public key, no database.

An export is JSON lines: a header, the signed checkpoints, the entries in sequence order, and
an end record. Verification checks every entry's record hash and content digest, the chain
links, the Merkle root at every checkpoint's size against the checkpoint, each checkpoint's
Ed25519 signature by the *trusted* key (the key named in the file is only compared with it),
and that the newest checkpoint covers every exported entry, so truncating the file or
appending to it is detected.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from kanvaro.audit import merkle
from kanvaro.audit.chain import content_state, expected_record_hash
from kanvaro.audit.note import Checkpoint, NoteError, Verifier, open_checkpoint
from kanvaro.audit.verify import ChainWalker, NeedsLocate

EXPORT_FORMAT = "kanvaro-audit-export/1"


class VerificationFailed(ValueError):
    """The export or proof does not verify; the message says where and why."""


@dataclass(frozen=True)
class ExportSummary:
    chain_id: str
    entries: int
    checkpoints: int
    tree_size: int
    root_hash: str
    erased: int


def _signed(note: str, verifier: Verifier, chain_id: str) -> Checkpoint:
    try:
        checkpoint = open_checkpoint(note, verifier)
    except NoteError as exc:
        raise VerificationFailed(f"checkpoint rejected: {exc}") from None
    if checkpoint.origin != f"{verifier.name}/{chain_id}":
        raise VerificationFailed(
            f"checkpoint rejected: it is for log {checkpoint.origin!r}, not this chain"
        )
    return checkpoint


def _lines(lines: Iterable[str | bytes]) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise VerificationFailed(f"line {number} is not valid JSON") from None
        if not isinstance(record, dict) or "type" not in record:
            raise VerificationFailed(f"line {number} is not an export record")
        record["_line"] = number
        records.append(record)
    return records


def verify_export(lines: Iterable[str | bytes], verifier: Verifier) -> ExportSummary:
    records = _lines(lines)
    if not records or records[0]["type"] != "header":
        raise VerificationFailed("the export has no header line")
    header = records[0]
    if header.get("format") != EXPORT_FORMAT:
        raise VerificationFailed(f"unknown export format {header.get('format')!r}")
    chain_id = header.get("chainId")
    if header.get("publicKey") != verifier.encode():
        raise VerificationFailed(
            "the export names a different public key than the trusted one; refusing it"
        )
    if records[-1]["type"] != "end":
        raise VerificationFailed("the export is truncated: it has no end record")
    end = records[-1]
    checkpoints = [
        _signed(r["note"], verifier, chain_id) for r in records if r["type"] == "checkpoint"
    ]
    entries = [r for r in records if r["type"] == "entry"]
    if end.get("entries") != len(entries) or end.get("checkpoints") != len(checkpoints):
        raise VerificationFailed(
            f"the export is truncated or padded: the end record counts {end.get('entries')} "
            f"entries and {end.get('checkpoints')} checkpoints, the file holds {len(entries)} "
            f"and {len(checkpoints)}"
        )
    if not checkpoints and entries:
        raise VerificationFailed("the export holds no signed checkpoint")
    roots = {c.tree_size: c.root_hash for c in checkpoints}
    walker = ChainWalker(chain_id, roots)
    located = {e.get("recordHash"): e.get("sequenceNumber") for e in reversed(entries)}
    for entry in entries:
        if entry.get("chainId") != chain_id:
            raise VerificationFailed(f"line {entry['_line']} belongs to another chain")
        try:
            try:
                broken = walker.step(entry)
            except NeedsLocate:
                broken = walker.link_break(entry, located.get(entry["previousHash"]))
        except (KeyError, TypeError, ValueError):
            raise VerificationFailed(f"line {entry['_line']} is not a well-formed entry") from None
        if broken:
            raise VerificationFailed(
                f"chain broken at entry {broken.sequence} ({broken.kind}, line "
                f"{entry['_line']}): {broken.message}"
            )
    broken = walker.finish(expected_size=None, expected_head=None)
    if broken:
        raise VerificationFailed(f"the export is truncated: {broken.message}")
    newest = max(roots, default=0)
    if newest < walker.count:
        raise VerificationFailed(
            f"entries {newest + 1}..{walker.count} are not covered by a signed checkpoint"
        )
    return ExportSummary(
        chain_id,
        walker.count,
        len(checkpoints),
        newest,
        base64.b64encode(walker.root()).decode(),
        walker.erased,
    )


def _hashes(values: Any, what: str) -> list[bytes]:
    try:
        return [base64.b64decode(v, validate=True) for v in values]
    except (binascii.Error, TypeError, ValueError):
        raise VerificationFailed(f"{what} is not a list of base64 hashes") from None


def _proof_error(exc: merkle.ProofError) -> VerificationFailed:
    return VerificationFailed(f"proof rejected: {exc}")


def verify_bundle(bundle: dict[str, Any], verifier: Verifier) -> str:
    """Check an inclusion or consistency proof bundle from the API; returns a summary line."""
    kind = bundle.get("type")
    chain_id = bundle.get("chainId")
    try:
        if kind == "inclusion":
            return _inclusion(bundle, verifier, chain_id)
        if kind == "consistency":
            return _consistency(bundle, verifier, chain_id)
    except merkle.ProofError as exc:
        raise _proof_error(exc) from None
    except (KeyError, TypeError):
        raise VerificationFailed("the proof bundle is missing fields") from None
    raise VerificationFailed(f"unknown proof type {kind!r}")


def _anchor(note: str | None, verifier: Verifier, chain_id: str, size: int, root: bytes) -> None:
    if not note:
        raise VerificationFailed(f"no signed checkpoint at tree size {size}: nothing anchors it")
    checkpoint = _signed(note, verifier, chain_id)
    if checkpoint.tree_size != size or checkpoint.root_hash != root:
        raise VerificationFailed(
            f"the proof's tree (size {size}) is not the one the checkpoint signs "
            f"(size {checkpoint.tree_size})"
        )


def _inclusion(bundle: dict[str, Any], verifier: Verifier, chain_id: str) -> str:
    entry, size = bundle["entry"], int(bundle["treeSize"])
    if entry.get("chainId") != chain_id or entry["sequenceNumber"] != bundle["sequence"]:
        raise VerificationFailed("the entry is not the one the proof is about")
    if content_state(entry) == "altered" or expected_record_hash(entry) != entry["recordHash"]:
        raise VerificationFailed("the entry does not match its record hash")
    (root,) = _hashes([bundle["rootHash"]], "rootHash")
    _anchor(bundle.get("checkpoint"), verifier, chain_id, size, root)
    merkle.verify_inclusion(
        bytes.fromhex(entry["recordHash"]),
        entry["sequenceNumber"] - 1,
        size,
        _hashes(bundle["proof"], "proof"),
        root,
    )
    return f"entry {entry['sequenceNumber']} is in the signed tree of size {size}"


def _consistency(bundle: dict[str, Any], verifier: Verifier, chain_id: str) -> str:
    first, second = int(bundle["from"]), int(bundle["to"])
    old_root, new_root = _hashes([bundle["fromRoot"], bundle["toRoot"]], "roots")
    _anchor(bundle.get("fromCheckpoint"), verifier, chain_id, first, old_root)
    _anchor(bundle.get("toCheckpoint"), verifier, chain_id, second, new_root)
    merkle.verify_consistency(first, second, old_root, new_root, _hashes(bundle["proof"], "proof"))
    return f"the signed tree of size {second} extends the signed tree of size {first}"
