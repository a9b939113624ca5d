"""``kanvaro audit verify --archive`` (issue 14.6): the segments audit-log retention writes and
the database are verified as one chain, and every way of breaking that chain is named (which
segment, which entry, what is wrong)."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from kanvaro.audit.checkpoints import head_size
from kanvaro.audit.keys import load_trusted
from kanvaro.audit.models import AuditLog
from kanvaro.audit.note import Checkpoint, sign_checkpoint
from kanvaro.audit.verify import VerifyReport, verify_chain
from kanvaro.compliance import archive_check, retention
from tests.compliance.conftest import footprint
from tests.compliance.test_cli import _run


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(gzip.compress(b"\n".join(json.dumps(r).encode() for r in records)))
    return path


async def _archived(services, client, tenant, runs: int = 3) -> list[Path]:
    """The tenant's audit log archived by ``runs`` real retention runs, two days apart: one
    segment each (every run's own entries land in the next segment)."""
    await footprint(services, client, tenant)
    r = await client.post(
        "/api/v1/compliance/retention-policies",
        headers=tenant.admin.headers,
        json={"resourceType": "audit_logs", "retentionDays": 3650, "archiveAfterDays": 1},
    )
    assert r.status_code == 201, r.text
    paths = []
    for n in range(runs):
        await services.audit.drain()
        later = services.clock.now() + timedelta(days=2 + 2 * n)
        [outcome] = await retention.run(services, tenant_id=uuid.UUID(tenant.id), now=later)
        assert outcome.archive and outcome.archived > 0
        paths.append(Path(outcome.archive))
    await services.audit.drain()
    return paths


async def _verify(services, tenant, paths: list[Path] | None, **options: Any) -> VerifyReport:
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        trusted = await load_trusted(db, services.master_key)
        if paths is None:
            return await verify_chain(db, tenant.id, trusted, **options)
        return await archive_check.verify_with_archive(db, tenant.id, trusted, paths, **options)


async def _tamper(services, *statements: str, **params: Any) -> None:
    """Writes on audit_logs with the append-only triggers out of the way, the way an attacker
    with database access does, on the suite's own database: the triggers are put back
    exactly as they were (on SQLite from their stored SQL: migration 0014's erase exception
    included)."""
    async with services.db.engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
            await conn.exec_driver_sql("ALTER TABLE audit_logs DISABLE TRIGGER USER")
        else:
            triggers = (
                await conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master "
                    "WHERE type = 'trigger' AND tbl_name = 'audit_logs'"
                )
            ).all()
            for name, _ in triggers:
                await conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
        for sql in statements:
            await conn.execute(text(sql), params)
        if postgres:
            await conn.exec_driver_sql("ALTER TABLE audit_logs ENABLE TRIGGER USER")
        else:
            for _, sql in triggers:
                await conn.exec_driver_sql(sql)
        await conn.commit()


def _copies(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(exist_ok=True)
    return [Path(shutil.copy(p, folder / p.name)) for p in paths]


def _broken(report: VerifyReport) -> tuple[int, str, str]:
    assert not report.ok, report.to_dict()
    assert report.broken is not None
    return report.broken.sequence, report.broken.kind, report.broken.message


async def test_verify_spans_the_segments_and_the_database(services, settings, client, tenant):
    paths = await _archived(services, client, tenant)
    ranges = []
    for path in paths:
        records = _records(path)
        assert [r["type"] for r in records[:3]] == ["header", "checkpoint", "segment"]
        assert records[-1]["type"] == "end"
        rows = [r for r in records if r["type"] == "row"]
        assert [r["sequenceNumber"] for r in rows] == list(
            range(records[2]["firstSequence"], records[2]["lastSequence"] + 1)
        )
        ranges.append((records[2]["firstSequence"], records[2]["lastSequence"]))
    # Consecutive: each segment starts where the one before ended.
    assert ranges[0][0] == 1
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))

    folder = retention.archive_dir(services) / tenant.id
    report = await _verify(services, tenant, [folder])
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        head = await head_size(db, tenant.id)
    assert report.ok, report.to_dict()
    assert report.entries == head > ranges[-1][1] and report.start_covered
    assert report.archived_entries == ranges[-1][1]
    assert [(s["firstSequence"], s["lastSequence"]) for s in report.segments] == ranges
    assert report.checkpoints_checked >= 3
    # Files given one by one, in any order, are put in the order of their ranges.
    assert (await _verify(services, tenant, list(reversed(paths)))).ok

    code, out, err = await _run(
        settings, "audit", "verify", "--tenant", tenant.slug, "--archive", str(folder)
    )
    assert code == 0, out + err
    assert f"chain {tenant.id}: intact, {head} entries (1..{head}): " in out, out
    assert "from 3 archive segments" in out
    assert f"entries {ranges[1][0]}..{ranges[1][1]}" in out
    code, out, err = await _run(
        settings, "audit", "verify", "--tenant", tenant.id, "--configured-archive", "--json"
    )
    assert code == 0, out + err
    [line] = [json.loads(x) for x in out.splitlines()]
    assert line["ok"] and len(line["segments"]) == 3 and line["coveredFrom"] == 1
    code, _, err = await _run(settings, "audit", "verify", "--archive", str(folder))
    assert code == 2 and "--tenant" in err


async def test_a_tampered_archived_entry_is_named(services, client, tenant, tmp_path):
    archived = await _archived(services, client, tenant)
    paths = _copies(archived, tmp_path / "a")
    records = _records(paths[1])
    row = records[4]  # the second entry of the second segment
    row["ipAddress"] = "198.51.100.66"
    _write(paths[1], records)
    seq, kind, message = _broken(await _verify(services, tenant, paths))
    assert (seq, kind) == (row["sequenceNumber"], "altered")
    assert paths[1].name in message and "digest" in message

    # A header field rewritten: the entry no longer matches its record hash.
    paths = _copies(archived, tmp_path / "b")
    records = _records(paths[0])
    records[3]["action"] = "api:nothing:happened"
    _write(paths[0], records)
    seq, kind, message = _broken(await _verify(services, tenant, paths))
    assert (seq, kind) == (records[3]["sequenceNumber"], "altered")
    assert "record hash" in message and paths[0].name in message


async def test_a_missing_segment_overlaps_and_disorder_are_refused(
    services, client, tenant, tmp_path
):
    paths = _copies(await _archived(services, client, tenant), tmp_path / "a")
    first, second, third = (_records(p) for p in paths)
    seq, kind, message = _broken(await _verify(services, tenant, [paths[0], paths[2]]))
    assert (seq, kind) == (first[2]["lastSequence"] + 1, "missing")
    assert "a segment is missing between" in message and paths[0].name in message

    twin = Path(shutil.copy(paths[0], tmp_path / "twin.jsonl.gz"))
    seq, kind, message = _broken(await _verify(services, tenant, [*paths, twin]))
    assert kind == "overlap" and "overlap" in message and seq == 1

    first[0]["createdAt"], second[0]["createdAt"] = second[0]["createdAt"], first[0]["createdAt"]
    _write(paths[0], first)
    _write(paths[1], second)
    seq, kind, message = _broken(await _verify(services, tenant, paths))
    assert (seq, kind) == (second[2]["firstSequence"], "reordered")
    assert "out of order" in message

    # A segment cut short (no end record) is truncated, not silently shorter.
    _write(paths[2], third[:-2])
    seq, kind, message = _broken(await _verify(services, tenant, [paths[2]]))
    assert kind == "missing" and "truncated" in message


async def test_checkpoints_must_match_and_be_signed(services, client, tenant, tmp_path):
    paths = _copies(await _archived(services, client, tenant, runs=2), tmp_path / "a")
    original = _records(paths[1])

    records = json.loads(json.dumps(original))
    records[1]["treeSize"] += 1
    _write(paths[1], records)
    seq, kind, message = _broken(await _verify(services, tenant, paths))
    assert kind == "forged_checkpoint" and "states tree size" in message
    assert paths[1].name in message and seq == original[2]["firstSequence"]

    # Signed by the instance's own key, but not over the chain's real tree.
    signer = services.audit.signer
    size = original[1]["treeSize"]
    records = json.loads(json.dumps(original))
    records[1]["signedNote"] = sign_checkpoint(
        Checkpoint(signer.origin(tenant.id), size, bytes(32)), signer.name, signer.private_key
    )
    _write(paths[1], records)
    _, kind, message = _broken(await _verify(services, tenant, paths))
    assert kind == "forged_checkpoint" and "another root" in message

    # A signature that does not verify.
    records = json.loads(json.dumps(original))
    note_lines = records[1]["signedNote"].split("\n")
    index = next(i for i, line in enumerate(note_lines) if line.startswith("\u2014 "))
    dash, name, blob = note_lines[index].split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    note_lines[index] = f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}"
    records[1]["signedNote"] = "\n".join(note_lines)
    _write(paths[1], records)
    _, kind, message = _broken(await _verify(services, tenant, paths))
    assert kind == "forged_checkpoint" and "not signed by a key of this instance" in message


async def test_an_archive_of_another_tenant_is_refused(
    services, client, tenant, other_tenant, tmp_path
):
    mine = _copies(await _archived(services, client, tenant, runs=1), tmp_path / "mine")
    theirs = await _archived(services, client, other_tenant, runs=1)
    shutil.copy(theirs[0], tmp_path / "mine" / "audit_logs-elsewhere.jsonl.gz")
    _, kind, message = _broken(await _verify(services, tenant, [tmp_path / "mine"]))
    assert kind == "foreign_archive" and other_tenant.id in message
    # A segment relabelled for this tenant still carries the other chain's entries.
    records = _records(theirs[0])
    records[0]["tenantId"] = records[1]["chainId"] = records[2]["chainId"] = tenant.id
    _, kind, message = _broken(
        await _verify(services, tenant, [_write(tmp_path / "relabelled.jsonl.gz", records)])
    )
    assert kind == "foreign_archive" and "another tenant or chain" in message
    assert (await _verify(services, tenant, mine)).ok


async def test_a_chain_whose_start_left_the_database(services, settings, client, tenant):
    """Entries archived away (the database's rows start after entry 1): without the segments
    that is a break, never a pass; with them the chain verifies from entry 1."""
    paths = await _archived(services, client, tenant)
    gone = _records(paths[-1])[2]["lastSequence"]
    parked = str(uuid.uuid4())  # a chain id no head names: the rows are out of sight
    where = "WHERE chain_id = :chain AND sequence_number <= :upto"
    await _tamper(services, f"UPDATE audit_logs SET chain_id = :parked {where}",
                  chain=tenant.id, upto=gone, parked=parked)  # fmt: skip
    try:
        seq, kind, message = _broken(await _verify(services, tenant, None))
        assert (seq, kind) == (1, "missing")
        assert "start of the chain is not covered" in message and f"from {gone + 1} on" in message
        report = await _verify(services, tenant, None, from_boundary=True)
        assert report.ok and not report.start_covered and report.covered_from == gone + 1
        code, out, err = await _run(settings, "audit", "verify", "--tenant", tenant.id)
        assert code == 1 and "start of the chain is not covered" in out, out + err
        code, out, err = await _run(
            settings, "audit", "verify", "--tenant", tenant.id, "--from-archive-boundary"
        )
        assert code == 0 and "START NOT COVERED" in out, out + err

        report = await _verify(services, tenant, paths)
        assert report.ok and report.start_covered and report.covered_from == 1
        assert report.archived_entries == gone
        # Without the first segment nothing holds entries 1..: not covered.
        seq, kind, message = _broken(await _verify(services, tenant, paths[1:]))
        assert (seq, kind) == (1, "missing") and "not covered" in message
        # Without the last one, archive and database do not meet.
        seq, kind, message = _broken(await _verify(services, tenant, paths[:2]))
        assert kind == "missing" and "neither in the archive segments" in message
        assert seq == _records(paths[1])[2]["lastSequence"] + 1
    finally:
        await _tamper(
            services,
            "UPDATE audit_logs SET chain_id = :chain WHERE chain_id = :parked",
            chain=tenant.id,
            parked=parked,
        )
    assert (await _verify(services, tenant, None)).ok


async def test_a_segment_copies_erased_and_held_entries_as_they_are(services, client, tenant):
    """A segment holds every entry of its range: one erased before (GDPR) as erased, a held
    person's with its content (which the database keeps until the hold ends)."""
    gone = await footprint(services, client, tenant)
    held = await tenant.member("team_member")
    r = await client.post(
        "/api/v1/compliance/legal-holds",
        headers=tenant.admin.headers,
        json={"userId": held.id, "reason": "Investigation"},
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/users/{gone.person.id}/erase",
        headers=tenant.admin.headers,
        json={"confirmEmail": gone.person.email},
    )
    assert r.status_code == 200, r.text
    [path] = await _archived(services, client, tenant, runs=1)
    rows = [r for r in _records(path) if r["type"] == "row"]
    assert any(r["contentSalt"] is None for r in rows)  # erased before: copied as erased
    kept = [r for r in rows if r["actorId"] == held.id and r["contentSalt"]]
    assert kept
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        trusted = await load_trusted(db, services.master_key)
        checked = await archive_check.verify_audit_archive(db, path, trusted)
        assert checked["archivedEntries"] == len(rows)
        still = await db.get(AuditLog, uuid.UUID(kept[0]["id"]), populate_existing=True)
        assert still.content_salt is not None  # the hold keeps it in the database
    assert (await _verify(services, tenant, [path])).ok
