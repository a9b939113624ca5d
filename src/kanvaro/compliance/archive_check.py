"""Prove that an audit-log retention archive and the database describe the same chain.

The database keeps every entry's header and content digest; the archive keeps the content
and salt that were cleared. An archive is sound when, for each archived entry, its content
hashes (with its salt) to its digest, its fields hash to its record hash, and the database
holds the same record hash at that sequence number; the archive's checkpoint must be signed
by a key of this instance for this chain and cover every archived entry, and the database's
own chain must verify. Then the archive restores exactly the content the log committed to.

:func:`verify_with_archive` (``kanvaro audit verify --archive``) goes further: the segments
retention wrote (``retention._apply_audit``: consecutive ranges, each with its signed
checkpoint) and the database are walked as *one* chain. Each segment must be this chain's
(header tenant, segment, checkpoint and every entry), complete (its end record), under a
checkpoint a key of this instance signed for this chain whose stated size is its signed size
and covers the segment; the segments must follow each other without gap or overlap, in the
order they were written; every entry must hash and link (segment to segment, the last
archived entry to the first database entry after it), the database's rows in a segment's
range must be the archived entries, and every signed root is compared where the walk reaches
its size. Breaks name the segment, the sequence number and the kind (the walker's kinds, plus
``overlap``, ``foreign_archive`` and ``unreadable_archive``).
"""

from __future__ import annotations

import gzip
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit import sequencer
from kanvaro.audit.chain import content_state, expected_record_hash, iter_chain, to_document
from kanvaro.audit.checkpoints import head_size
from kanvaro.audit.keys import TrustedKeys
from kanvaro.audit.models import AuditLog
from kanvaro.audit.note import NoteError
from kanvaro.audit.verify import (
    ChainBreak,
    ChainWalker,
    NeedsLocate,
    VerifyReport,
    first_stored,
    signed_roots,
    uncovered_start,
    verify_chain,
    walk_database,
)
from kanvaro.compliance.retention import ARCHIVE_FORMAT, read_archive


class ArchiveMismatch(ValueError):
    pass


def check_lines(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The archive on its own: format, every entry's digest and record hash."""
    if not records or records[0].get("format") != ARCHIVE_FORMAT:
        raise ArchiveMismatch("not a Kanvaro retention archive")
    header = records[0]
    checkpoint = next((r for r in records if r.get("type") == "checkpoint"), None)
    rows = [r for r in records if r.get("type") == "row"]
    for row in rows if header.get("resourceType") == "audit_logs" else []:
        seq = row.get("sequenceNumber")
        # "erased": a segment copies entries whose content was erased before (GDPR) as such.
        if content_state(row) == "altered":
            raise ArchiveMismatch(f"entry {seq}: its content does not match its digest")
        if expected_record_hash(row) != row.get("recordHash"):
            raise ArchiveMismatch(f"entry {seq}: its fields do not match its record hash")
    return {"header": header, "checkpoint": checkpoint, "rows": rows}


async def verify_audit_archive(
    session: AsyncSession, path: Path, trusted: TrustedKeys
) -> dict[str, Any]:
    parsed = check_lines(read_archive(path))
    if parsed["header"].get("resourceType") != "audit_logs":
        raise ArchiveMismatch("not an audit-log archive")
    checkpoint = parsed["checkpoint"]
    if checkpoint is None or not checkpoint.get("signedNote"):
        raise ArchiveMismatch("the archive holds no signed checkpoint")
    chain_id = checkpoint["chainId"]
    try:
        signed = trusted.open(checkpoint["signedNote"], chain_id)
    except NoteError as exc:
        raise ArchiveMismatch(f"checkpoint rejected: {exc}") from None
    rows = parsed["rows"]
    if rows and max(r["sequenceNumber"] for r in rows) > signed.tree_size:
        raise ArchiveMismatch("the checkpoint does not cover every archived entry")
    wanted = {r["sequenceNumber"]: r for r in rows}
    stored = await session.execute(
        select(AuditLog.sequence_number, AuditLog.record_hash, AuditLog.content_digest).where(
            AuditLog.chain_id == chain_id, AuditLog.sequence_number.in_(list(wanted))
        )
    )
    found = 0
    for seq, record_hash, digest in stored:
        row = wanted[seq]
        if record_hash != row["recordHash"] or digest != row["contentDigest"]:
            raise ArchiveMismatch(f"entry {seq}: the database holds a different entry")
        found += 1
    if found != len(wanted):
        raise ArchiveMismatch("the database lacks entries the archive holds")
    report = await verify_chain(session, chain_id, trusted)
    if not report.ok:
        raise ArchiveMismatch(f"the database's chain does not verify: {report.to_dict()}")
    return {
        "chainId": chain_id,
        "archivedEntries": len(rows),
        "checkpointTreeSize": signed.tree_size,
        "database": report.to_dict(),
    }


# --- one chain across the archive segments and the database ---------------------------------


@dataclass
class Segment:
    """One audit-log archive segment as read back: its range, checkpoint and entries."""

    path: Path
    created_at: str
    tenant_id: str | None
    chain_id: str | None
    first: int
    last: int
    checkpoint: dict[str, Any] | None
    rows: list[dict[str, Any]]
    end: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.path.name

    def out(self, tree_size: int | None) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "firstSequence": self.first,
            "lastSequence": self.last,
            "entries": len(self.rows),
            "checkpointTreeSize": tree_size,
        }


class SegmentProblem(ValueError):
    def __init__(self, sequence: int, kind: str, message: str):
        super().__init__(message)
        self.brk = ChainBreak(sequence, kind, message)


def _first_line(path: Path) -> dict[str, Any] | None:
    try:
        with gzip.open(path, "rb") as handle:
            record = orjson.loads(handle.readline())
    except (OSError, EOFError, ValueError):
        return None
    return record if isinstance(record, dict) else {}


def segment_files(paths: list[Path], chain_id: str) -> list[Path]:
    """The segment files ``paths`` name: a file as it is; a folder's audit-log archives (in
    the retention layout ``<folder>/<chain>/`` when that exists, else the folder itself)."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)  # missing or unreadable: load_segment says so
            continue
        folder = path / chain_id if (path / chain_id).is_dir() else path
        for candidate in sorted(folder.glob("*.jsonl.gz")):
            header = _first_line(candidate)
            if header is None or (
                header.get("format") == ARCHIVE_FORMAT
                and header.get("resourceType") == "audit_logs"
            ):
                files.append(candidate)  # unreadable ones are refused by load_segment
    return sorted(set(files))


def load_segment(path: Path) -> Segment:
    try:
        records = read_archive(path)
    except (OSError, EOFError, ValueError) as exc:
        raise SegmentProblem(
            1,
            "unreadable_archive",
            f"archive segment {path}: cannot be read ({type(exc).__name__})",
        ) from None
    if not records or records[0].get("format") != ARCHIVE_FORMAT:
        raise SegmentProblem(1, "unreadable_archive", f"{path} is not a Kanvaro retention archive")
    header = records[0]
    if header.get("resourceType") != "audit_logs":
        raise SegmentProblem(1, "unreadable_archive", f"{path} is not an audit-log archive")
    segment = next((r for r in records if r.get("type") == "segment"), None)
    if segment is None:
        raise SegmentProblem(
            1,
            "unreadable_archive",
            f"archive {path.name} has no segment record (written before segments); check it "
            "with 'kanvaro retention verify-archive'",
        )
    try:
        first, last = int(segment["firstSequence"]), int(segment["lastSequence"])
    except (KeyError, TypeError, ValueError):
        raise SegmentProblem(
            1, "unreadable_archive", f"archive segment {path.name}: its segment record is damaged"
        ) from None
    end = records[-1] if records[-1].get("type") == "end" else None
    return Segment(
        path=path,
        created_at=str(header.get("createdAt") or ""),
        tenant_id=header.get("tenantId"),
        chain_id=segment.get("chainId"),
        first=first,
        last=last,
        checkpoint=next((r for r in records if r.get("type") == "checkpoint"), None),
        rows=[r for r in records if r.get("type") == "row"],
        end=end,
    )


def _standalone(segment: Segment, chain_id: str, trusted: TrustedKeys) -> tuple[int, bytes]:
    """What a segment must be on its own: this chain's, complete, and under a trusted
    checkpoint that covers it. Returns that checkpoint's (size, root)."""
    where = f"archive segment {segment.name} (entries {segment.first}..{segment.last})"
    chains = {segment.chain_id, segment.tenant_id, *(r.get("chainId") for r in segment.rows)}
    if segment.checkpoint is not None:
        chains.add(segment.checkpoint.get("chainId"))
    if chains != {chain_id}:
        other = sorted(str(c) for c in chains - {chain_id})
        raise SegmentProblem(
            segment.first,
            "foreign_archive",
            f"{where} belongs to another tenant or chain ({', '.join(other)}), not {chain_id}",
        )
    if segment.last < segment.first:
        raise SegmentProblem(
            segment.first, "unreadable_archive", f"{where}: its segment record is damaged"
        )
    if segment.end is None:
        raise SegmentProblem(
            segment.first + len(segment.rows),
            "missing",
            f"{where} is truncated: it has no end record ({len(segment.rows)} entries read)",
        )
    if segment.end.get("entries") != len(segment.rows) or len(segment.rows) != (
        segment.last - segment.first + 1
    ):
        raise SegmentProblem(
            segment.first,
            "missing",
            f"{where} holds {len(segment.rows)} entries, its records announce "
            f"{segment.last - segment.first + 1}",
        )
    note = (segment.checkpoint or {}).get("signedNote")
    if not note:
        raise SegmentProblem(
            segment.first, "forged_checkpoint", f"{where} holds no signed checkpoint"
        )
    try:
        signed = trusted.open(note, chain_id)
    except NoteError as exc:
        raise SegmentProblem(
            segment.first,
            "forged_checkpoint",
            f"{where}: its checkpoint is not signed by a key of this instance for this chain "
            f"({exc})",
        ) from None
    stated = (segment.checkpoint or {}).get("treeSize")
    if stated != signed.tree_size:
        raise SegmentProblem(
            segment.first,
            "forged_checkpoint",
            f"{where}: its checkpoint states tree size {stated}, its signed note "
            f"{signed.tree_size}",
        )
    if signed.tree_size < segment.last:
        raise SegmentProblem(
            segment.last,
            "forged_checkpoint",
            f"{where}: its checkpoint (tree size {signed.tree_size}) does not cover entry "
            f"{segment.last}",
        )
    return signed.tree_size, signed.root_hash


def _order(segments: list[Segment]) -> list[Segment]:
    """By range; two that overlap, leave a gap, or were written in another order refuse."""
    ordered = sorted(segments, key=lambda s: (s.first, s.last))
    for before, after in itertools.pairwise(ordered):
        if after.first <= before.last:
            raise SegmentProblem(
                after.first,
                "overlap",
                f"archive segments {before.name} (entries {before.first}..{before.last}) and "
                f"{after.name} (entries {after.first}..{after.last}) overlap",
            )
        if after.first > before.last + 1:
            raise SegmentProblem(
                before.last + 1,
                "missing",
                f"entries {before.last + 1}..{after.first - 1} are in no archive segment: a "
                f"segment is missing between {before.name} and {after.name}",
            )
        if after.created_at and before.created_at and after.created_at < before.created_at:
            raise SegmentProblem(
                after.first,
                "reordered",
                f"archive segments out of order: {after.name} (entries {after.first}.."
                f"{after.last}) was written at {after.created_at}, before {before.name} "
                f"(entries {before.first}..{before.last}, written at {before.created_at})",
            )
    return ordered


async def _same_in_database(session: AsyncSession, segment: Segment, chain_id: str) -> int | None:
    """The database's own rows in the segment's range must be the archived entries (headers
    hashing to the same record hash); returns the first sequence the database holds there."""
    archived = {r["sequenceNumber"]: r for r in segment.rows}
    first_held: int | None = None
    expected: int | None = None
    async for row in iter_chain(session, chain_id, after=segment.first - 1, upto=segment.last):
        doc = to_document(row)
        seq = doc["sequenceNumber"]
        if expected is not None and seq != expected:
            raise SegmentProblem(
                expected,
                "missing",
                f"entry {expected} is in archive segment {segment.name} but missing from the "
                "database",
            )
        first_held = seq if first_held is None else first_held
        expected = seq + 1
        mine = archived.get(seq)
        if (
            mine is None
            or doc["recordHash"] != mine.get("recordHash")
            or expected_record_hash(doc) != doc["recordHash"]
            or content_state(doc) == "altered"
        ):
            raise SegmentProblem(
                seq,
                "altered",
                f"entry {seq}: the database holds a different entry than archive segment "
                f"{segment.name}",
            )
    if expected is not None and expected <= segment.last:
        raise SegmentProblem(
            expected,
            "missing",
            f"entry {expected} is in archive segment {segment.name} but missing from the database",
        )
    return first_held


async def _before_segments(
    session: AsyncSession,
    walker: ChainWalker,
    chain_id: str,
    first: Segment,
    from_boundary: bool,
) -> None:
    """Entries 1..(first segment - 1) come from the database (which keeps every header unless
    rows were removed); what neither holds is an uncovered start, refused unless
    ``from_boundary`` (then the first entry present is taken on trust)."""
    if first.first == 1:
        return
    stored = await first_stored(session, chain_id)
    begin = stored[0] if stored is not None and stored[0] < first.first else first.first
    if begin > 1:
        if not from_boundary:
            problem = uncovered_start(begin, archived=begin == first.first)
            raise SegmentProblem(1, problem.kind, problem.message)
        previous = stored[1] if begin != first.first and stored else first.rows[0]["previousHash"]
        walker.seed(begin - 1, str(previous))
    if begin < first.first:
        broken = await walk_database(
            session, walker, chain_id, after=walker.count, upto=first.first - 1
        )
        if broken is not None:
            raise SegmentProblem(broken.sequence, broken.kind, broken.message)
        if walker.count != first.first - 1:
            raise SegmentProblem(
                walker.count + 1,
                "missing",
                f"entries {walker.count + 1}..{first.first - 1} are neither in the database nor "
                f"in an archive segment (the first is {first.name})",
            )


async def verify_with_archive(
    session: AsyncSession,
    chain_id: str,
    trusted: TrustedKeys,
    paths: list[Path],
    *,
    from_boundary: bool = False,
) -> VerifyReport:
    """One chain: the archive segments in order (each one's entries, content digests, record
    hashes and links, its trusted checkpoint), the link from each segment to the next and
    from the last one to the database, then the database's part as ``verify_chain`` does;
    every signed checkpoint's root is compared where the walk reaches its size."""
    await sequencer.settle(session, chain_id)
    walker = ChainWalker(chain_id)
    outs: list[dict[str, Any]] = []

    def failed(problem: SegmentProblem) -> VerifyReport:
        report = VerifyReport(chain_id, walker.count - walker.seeded_at, walker.head_hash)
        report.erased, report.broken = walker.erased, problem.brk
        report.checkpoints_checked = walker.checkpoints_checked
        report.covered_from, report.start_covered = walker.seeded_at + 1, walker.merkle_known
        report.archived_entries = sum(o["entries"] for o in outs)
        report.segments = outs
        return report

    try:
        files = segment_files(paths, chain_id)
        if not files:
            raise SegmentProblem(
                1, "missing", f"no audit-log archive segment of chain {chain_id} in "
                + ", ".join(str(p) for p in paths)
            )  # fmt: skip
        segments = [load_segment(path) for path in files]
        roots, _ = await signed_roots(session, chain_id, trusted)
        sizes: dict[Path, int] = {}
        for segment in segments:
            size, root = _standalone(segment, chain_id, trusted)
            if roots.setdefault(size, root) != root:
                raise SegmentProblem(
                    segment.first,
                    "forged_checkpoint",
                    f"archive segment {segment.name}: its checkpoint of tree size {size} has "
                    "another root than the signed checkpoint of that size in the database",
                )
            sizes[segment.path] = size
        ordered = _order(segments)
        walker.checkpoint_roots = dict(roots)
        await _before_segments(session, walker, chain_id, ordered[0], from_boundary)
        for segment in ordered:
            located: dict[str, int] = {}  # this segment's entries, for a broken link
            where = f"archive segment {segment.name}"
            for doc in segment.rows:
                seq = doc.get("sequenceNumber")
                try:
                    try:
                        broken = walker.step(doc)
                    except NeedsLocate:
                        if walker.count + 1 == segment.first and seq == segment.first:
                            raise SegmentProblem(
                                seq, "missing", f"entry {seq}, the first of {where}, does not "
                                f"link to entry {seq - 1}, the last entry before it",
                            ) from None  # fmt: skip
                        broken = walker.link_break(doc, located.get(doc["previousHash"]))
                except (KeyError, TypeError, ValueError):
                    raise SegmentProblem(
                        walker.count + 1, "altered", f"{where}: entry {seq} is not well-formed"
                    ) from None
                if broken is not None:
                    raise SegmentProblem(broken.sequence, broken.kind, f"{where}: {broken.message}")
                located[doc["recordHash"]] = seq
            await _same_in_database(session, segment, chain_id)
            outs.append(segment.out(sizes[segment.path]))
        last = ordered[-1]
        stored = await first_stored(session, chain_id)
        head = await head_size(session, chain_id)
        if stored is not None and stored[0] > last.last + 1:
            raise SegmentProblem(
                last.last + 1,
                "missing",
                f"entries {last.last + 1}..{stored[0] - 1} are neither in the archive segments "
                f"(which end with {last.name} at entry {last.last}) nor in the database",
            )
        if head > last.last:
            following = (
                await session.execute(
                    select(AuditLog.previous_hash).where(
                        AuditLog.chain_id == chain_id, AuditLog.sequence_number == last.last + 1
                    )
                )
            ).scalar_one_or_none()
            if following is not None and following != walker.head_hash:
                raise SegmentProblem(
                    last.last + 1,
                    "missing",
                    f"entry {last.last + 1}, the first in the database after the archive, does "
                    f"not link to entry {last.last}, the last of archive segment {last.name}",
                )
    except SegmentProblem as problem:
        return failed(problem)
    report = await verify_chain(session, chain_id, trusted, start=walker)
    report.archived_entries, report.segments = sum(o["entries"] for o in outs), outs
    return report
