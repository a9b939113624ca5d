"""Chain verification: find the first broken sequence number and say what kind of break it is.

:class:`ChainWalker` is the pure core, fed entry documents in sequence order; the database
(:func:`verify_chain`) and the offline export verifier feed it the same way. Kinds of break:

* ``altered``   an entry's fields no longer match its record hash (or its content digest), or
  the Merkle root at a signed checkpoint's size differs from the checkpoint;
* ``missing``   a sequence number is absent, an entry names a predecessor that is not in the
  chain, or the chain head / a checkpoint counts more entries than are there;
* ``reordered`` an entry's predecessor sits *after* it in sequence order;
* ``fork``      two entries claim the same sequence number, or an entry claims a predecessor
  that already has another successor;
* ``forged_checkpoint`` a stored checkpoint is not signed by a key of this instance, or its
  columns disagree with its signed note (sequence = that checkpoint's size).

Checkpoint sizes and roots come from the signed notes, checked with the instance's trusted
keys (:class:`kanvaro.audit.keys.TrustedKeys`), never from the unsigned columns: an attacker
with database access can recompute those, not the signatures.

The walker keeps the Merkle tree as a compact range (one hash per perfect subtree, O(log n)
memory), so checking every signed checkpoint's root costs nothing extra while streaming.

Where the chain starts: retention may move the oldest entries to archive segments
(``kanvaro audit verify --archive``, :mod:`kanvaro.compliance.archive_check`), which walk them
first and hand the walker over (``start``); the database part continues from there. A chain
whose database rows start after entry 1 with nothing walked before is refused (``missing`` at
entry 1, "the start of the chain is not covered") unless ``from_boundary`` is set: then the
first held entry's predecessor hash is taken on trust, the walk checks every hash and link
from there, and no Merkle root can be compared (the report says ``startCovered: false``).

In the database, entries are read in pages of ``BATCH`` and checked on the hot path
(:mod:`kanvaro.audit.hotpath`); an entry it does not accept is re-read and judged by
:meth:`ChainWalker.step`, the reference path the offline verifier uses too. Pending entries
are sequenced first (:func:`sequencer.settle`), so the report covers every committed entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import hotpath, merkle, sequencer
from kanvaro.audit.chain import content_state, expected_record_hash, to_document
from kanvaro.audit.hashing import GENESIS_HASH
from kanvaro.audit.keys import TrustedKeys
from kanvaro.audit.models import AuditChainHead, AuditCheckpoint, AuditLog
from kanvaro.audit.note import NoteError

BATCH = 10_000


@dataclass(frozen=True)
class ChainBreak:
    sequence: int
    kind: str
    message: str


@dataclass
class VerifyReport:
    chain_id: str
    entries: int
    head_hash: str
    erased: int = 0
    checkpoints_checked: int = 0
    signed_size: int = 0
    broken: ChainBreak | None = None
    covered_from: int = 1  # the first entry verified (> 1: the start was taken on trust)
    start_covered: bool = True
    archived_entries: int = 0  # entries walked from archive segments
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "ok": self.ok,
            "entries": self.entries,
            "headHash": self.head_hash,
            "erasedEntries": self.erased,
            "checkpointsChecked": self.checkpoints_checked,
            "signedTreeSize": self.signed_size,
            "firstBrokenSequence": self.broken.sequence if self.broken else None,
            "breakKind": self.broken.kind if self.broken else None,
            "message": self.broken.message if self.broken else "the chain is intact",
            "coveredFrom": self.covered_from,
            "startCovered": self.start_covered,
            "archivedEntries": self.archived_entries,
            "segments": self.segments,
        }


class NeedsLocate(Exception):
    """The entry's previous hash does not link: the caller must locate the named predecessor."""


@dataclass
class ChainWalker:
    chain_id: str
    checkpoint_roots: dict[int, bytes] = field(default_factory=dict)
    count: int = 0
    head_hash: str = GENESIS_HASH
    erased: int = 0
    checkpoints_checked: int = 0
    _last_good_checkpoint: int = 0
    # False once seeded mid-chain (:meth:`seed`): no Merkle root can be computed then.
    merkle_known: bool = True
    seeded_at: int = 0
    # The Merkle compact range: one subtree root per set bit of `count`, largest first.
    _stack: list[bytes] = field(default_factory=list)

    def seed(self, count: int, head_hash: str) -> None:
        """Start after entry ``count`` whose record hash is taken to be ``head_hash`` (the
        entries before it are not available). Roots cannot be compared from here on: the
        checkpoints are dropped and the compact range holds placeholders of the right shape."""
        self.count, self.head_hash, self._last_good_checkpoint = count, head_hash, count
        self.seeded_at = count
        self._stack = [bytes(32)] * count.bit_count()
        self.checkpoint_roots = {}
        self.merkle_known = False

    def step(self, doc: dict[str, Any]) -> ChainBreak | None:
        """Check the next entry; raises :class:`NeedsLocate` when its link is broken."""
        seq = doc["sequenceNumber"]
        expected = self.count + 1
        if seq == self.count and self.count:
            return ChainBreak(seq, "fork", f"two entries claim sequence number {seq}")
        if seq < expected:
            return ChainBreak(seq, "reordered", f"entry {seq} appears after entry {self.count}")
        if seq > expected:
            return ChainBreak(
                expected, "missing", f"entry {expected} is missing (the next entry is {seq})"
            )
        if doc["previousHash"] != self.head_hash:
            raise NeedsLocate
        state = content_state(doc)
        if state == "altered":
            return ChainBreak(seq, "altered", f"entry {seq}'s content does not match its digest")
        if expected_record_hash(doc) != doc["recordHash"]:
            return ChainBreak(seq, "altered", f"entry {seq} does not match its record hash")
        self.erased += state == "erased"
        self.count = seq
        self.head_hash = doc["recordHash"]
        return self._grow(bytes.fromhex(doc["recordHash"]))

    def link_break(self, doc: dict[str, Any], predecessor: int | None) -> ChainBreak:
        """Classify a broken link, given the sequence number of the entry it names (if any)."""
        seq = doc["sequenceNumber"]
        if predecessor is None:
            return ChainBreak(
                seq, "missing", f"entry {seq} names a predecessor that is not in the chain"
            )
        if predecessor >= seq:
            return ChainBreak(
                seq, "reordered", f"entry {seq} names entry {predecessor} as its predecessor"
            )
        return ChainBreak(
            seq,
            "fork",
            f"entry {seq} names entry {predecessor} as its predecessor, which already has "
            f"successor {predecessor + 1}",
        )

    def _grow(self, leaf: bytes) -> ChainBreak | None:
        node, below = merkle.leaf_hash(leaf), self.count - 1
        while below & 1:
            node = merkle.node_hash(self._stack.pop(), node)
            below >>= 1
        self._stack.append(node)
        return self.at_checkpoint()

    def take(self, rows: list[Any], start: int, *, sqlite: bool) -> tuple[int, ChainBreak | None]:
        """Accept rows (database column tuples) on the hot path from ``start`` on; returns the
        index of the first one left for :meth:`step` (or ``len(rows)``), and the break found
        at a signed checkpoint's size, where the hot path stops to compare the root."""
        before = self.count
        index, self.count, self.head_hash = hotpath.take(
            rows,
            start,
            sqlite=sqlite,
            count=self.count,
            head_hash=self.head_hash,
            stack=self._stack,
            stop_at=self.checkpoint_roots,
        )
        if self.count != before and self.count in self.checkpoint_roots:
            return index, self.at_checkpoint()
        return index, None

    def at_checkpoint(self) -> ChainBreak | None:
        """If the entries so far are a signed checkpoint's tree, compare its root."""
        expected_root = self.checkpoint_roots.get(self.count)
        if expected_root is None:
            return None
        self.checkpoints_checked += 1
        if self.root() != expected_root:
            start = self._last_good_checkpoint + 1
            return ChainBreak(
                start,
                "altered",
                f"the Merkle root of entries 1..{self.count} differs from the signed checkpoint "
                f"of that size: the chain was rewritten from entry {start} on or later",
            )
        self._last_good_checkpoint = self.count
        return None

    def root(self) -> bytes:
        return merkle.fold(self._stack)

    def finish(self, *, expected_size: int | None, expected_head: str | None) -> ChainBreak | None:
        """After the last entry: the chain head (or a checkpoint) may count more entries."""
        biggest = max(self.checkpoint_roots, default=0)
        if expected_size is not None and expected_size > self.count:
            return ChainBreak(
                self.count + 1,
                "missing",
                f"the chain head counts {expected_size} entries, only {self.count} are present",
            )
        if biggest > self.count:
            return ChainBreak(
                self.count + 1,
                "missing",
                f"a signed checkpoint covers {biggest} entries, only {self.count} are present",
            )
        if expected_size == self.count and expected_head and expected_head != self.head_hash:
            return ChainBreak(
                self.count, "altered", f"entry {self.count} does not match the chain head hash"
            )
        return None


async def _locate(session: AsyncSession, chain_id: str, record_hash: str) -> int | None:
    return (
        await session.execute(
            select(AuditLog.sequence_number)
            .where(AuditLog.chain_id == chain_id, AuditLog.record_hash == record_hash)
            .order_by(AuditLog.sequence_number)
            .limit(1)
        )
    ).scalar_one_or_none()


async def signed_roots(
    session: AsyncSession, chain_id: str, trusted: TrustedKeys
) -> tuple[dict[int, bytes], ChainBreak | None]:
    """Size -> root of every checkpoint a trusted key signed, and the first forged one."""
    rows = await session.execute(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.chain_id == chain_id)
        .order_by(AuditCheckpoint.tree_size)
    )
    roots: dict[int, bytes] = {}
    forged: ChainBreak | None = None
    for row in rows.scalars():
        problem = None
        try:
            signed = trusted.open(row.signed_note, chain_id)
        except NoteError as exc:
            problem = str(exc)
        else:
            # The signed note is the truth; columns that disagree with it were tampered with.
            roots[signed.tree_size] = signed.root_hash
            if signed.tree_size != row.tree_size or signed.root_hash.hex() != row.root_hash:
                problem = "its stored size or root differs from its signed note"
        if problem is not None and forged is None:
            forged = ChainBreak(
                row.tree_size,
                "forged_checkpoint",
                f"the checkpoint of size {row.tree_size} is not trusted: {problem}",
            )
    return roots, forged


async def _reference_step(
    session: AsyncSession, walker: ChainWalker, chain_id: str, sequence: int
) -> ChainBreak | None:
    """Judge one entry the reference way (re-read through the ORM)."""
    row = (
        await session.execute(
            select(AuditLog).where(
                AuditLog.chain_id == chain_id, AuditLog.sequence_number == sequence
            )
        )
    ).scalar_one()
    doc = to_document(row)
    try:
        return walker.step(doc)
    except NeedsLocate:
        return walker.link_break(doc, await _locate(session, chain_id, doc["previousHash"]))


async def walk_database(
    session: AsyncSession,
    walker: ChainWalker,
    chain_id: str,
    *,
    after: int = 0,
    upto: int | None = None,
) -> ChainBreak | None:
    """Feed the walker the database's entries after ``after`` (up to ``upto``), in pages."""
    sqlite = session.bind.dialect.name == "sqlite"
    while upto is None or after < upto:
        limit = BATCH if upto is None else min(BATCH, upto - after)
        page = await hotpath.read_page(session, chain_id, after, limit)
        rows = page if upto is None else [r for r in page if r[0] <= upto]
        index = 0
        while index < len(rows):
            index, broken = walker.take(rows, index, sqlite=sqlite)
            if broken is None and index < len(rows):
                broken = await _reference_step(session, walker, chain_id, rows[index][0])
                index += 1
            if broken is not None:
                return broken
        if len(page) < limit or len(rows) < len(page):
            return None
        after = rows[-1][0]
    return None


async def first_stored(session: AsyncSession, chain_id: str) -> tuple[int, str] | None:
    """The first entry the database holds: (sequence number, its previous hash)."""
    row = (
        await session.execute(
            select(AuditLog.sequence_number, AuditLog.previous_hash)
            .where(AuditLog.chain_id == chain_id)
            .order_by(AuditLog.sequence_number)
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row else None


def uncovered_start(first: int, *, archived: bool) -> ChainBreak:
    where = "the archive segments" if archived else "the database"
    return ChainBreak(
        1,
        "missing",
        f"the start of the chain is not covered: {where} hold entries from {first} on, entries "
        f"1..{first - 1} are not there (archived away by retention?); verify with --archive "
        "DIR naming the archived segments, or with --from-archive-boundary to check entries "
        f"{first}.. only",
    )


async def verify_chain(
    session: AsyncSession,
    chain_id: str,
    trusted: TrustedKeys,
    *,
    start: ChainWalker | None = None,
    from_boundary: bool = False,
) -> VerifyReport:
    """Walk one chain in the database, in pages, against its head and its signed checkpoints
    (after sequencing what is pending).

    ``start``: a walker that has already verified entries 1..n from elsewhere (archive
    segments, with the checkpoint roots they carry); the database part continues after n.
    ``from_boundary``: a database chain whose first rows are gone is verified from its first
    held entry on (else that is a break: the start is not covered)."""
    await sequencer.settle(session, chain_id)
    roots, forged = await signed_roots(session, chain_id, trusted)
    walker = start or ChainWalker(chain_id, dict(roots))
    if start is not None and start.merkle_known:
        for size, root in roots.items():
            walker.checkpoint_roots.setdefault(size, root)
    broken: ChainBreak | None = None
    first = await first_stored(session, chain_id)
    if start is None and first is not None and first[0] > 1:
        if from_boundary:
            walker.seed(first[0] - 1, first[1])
        else:
            broken = uncovered_start(first[0], archived=False)
    if broken is None:
        broken = await walk_database(session, walker, chain_id, after=walker.count)
    if broken is None:
        head = await session.get(AuditChainHead, chain_id, populate_existing=True)
        broken = walker.finish(
            expected_size=head.sequence_number if head else None,
            expected_head=head.head_hash if head else None,
        )
        biggest = max(roots, default=0)
        if broken is None and not walker.merkle_known and biggest > walker.count:
            broken = ChainBreak(
                walker.count + 1,
                "missing",
                f"a signed checkpoint covers {biggest} entries, only {walker.count} are present",
            )
    if forged is not None and (broken is None or forged.sequence < broken.sequence):
        broken = forged
    report = VerifyReport(chain_id, walker.count - walker.seeded_at, walker.head_hash)
    report.erased = walker.erased
    report.checkpoints_checked = walker.checkpoints_checked
    report.signed_size = max(roots, default=0)
    report.broken = broken
    report.covered_from, report.start_covered = walker.seeded_at + 1, walker.merkle_known
    return report
