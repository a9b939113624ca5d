"""``kanvaro report``, ``kanvaro retention`` and ``kanvaro gdpr`` as an operator runs them:
another process on the suite's database, waited for off the event loop."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile
from datetime import date, timedelta

from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.identity.models import User
from tests.compliance.conftest import TOTP_CANARY, footprint
from tests.crypto.conftest import cli


async def _run(settings, *args: str) -> tuple[int, str, str]:
    proc = cli(settings, *args)
    out, err = await asyncio.to_thread(proc.communicate, None, 300)
    return proc.returncode, out.decode(), err.decode()


async def test_reports_exports_requests_and_erasure_from_the_command_line(
    services, settings, client, tenant, tmp_path
):
    fp = await footprint(services, client, tenant)
    start, end = (date.today() - timedelta(days=3)).isoformat(), date.today().isoformat()
    pdf = tmp_path / "sox.pdf"
    code, out, err = await _run(
        settings, "report", "generate", "--tenant", tenant.slug, "--type", "sox",
        "--start", start, "--end", end, "--format", "pdf", "--output", str(pdf),
    )  # fmt: skip
    assert code == 0, err
    assert pdf.read_bytes().startswith(b"%PDF-")
    code, out, err = await _run(
        settings, "report", "generate", "--tenant", tenant.id, "--type", "gdpr",
        "--start", start, "--end", end,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["evidence"]["verification"]["ok"] is True
    code, out, err = await _run(settings, "report", "list", "--tenant", tenant.slug)
    assert code == 0, err
    assert [json.loads(line)["reportType"] for line in out.splitlines()] == ["sox", "gdpr"]

    target = tmp_path / "export.zip"
    code, out, err = await _run(
        settings, "gdpr", "export", "--tenant", tenant.slug, "--user", fp.person.email,
        "--format", "zip", "--output", str(target),
    )  # fmt: skip
    assert code == 0, err
    archive = zipfile.ZipFile(io.BytesIO(target.read_bytes()))
    assert json.loads(archive.read("profile.json"))["profile"]["id"] == fp.person.id
    assert TOTP_CANARY.encode() not in target.read_bytes()
    assert oct(target.stat().st_mode & 0o777) == "0o600"

    code, out, err = await _run(
        settings, "gdpr", "request", "--tenant", tenant.slug, "--user", fp.person.id,
        "--type", "erasure",
    )  # fmt: skip
    assert code == 0, err
    request_id = out.split()[1]
    code, out, err = await _run(
        settings, "gdpr", "erase", "--tenant", tenant.slug, "--user", fp.person.id,
        "--confirm-email", "wrong@example.com",
    )  # fmt: skip
    assert code != 0 and "confirmEmail" in err
    code, out, err = await _run(
        settings, "gdpr", "erase", "--tenant", tenant.slug, "--user", fp.person.id,
        "--confirm-email", fp.person.email, "--request", request_id,
    )  # fmt: skip
    assert code == 0, err
    assert "as erased-" in out
    code, out, err = await _run(settings, "gdpr", "requests", "--tenant", tenant.slug)
    assert json.loads(out.splitlines()[-1])["status"] == "completed"
    services.keyring.forget()
    await services.audit.drain()
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        user = await db.get(User, uuid.UUID(fp.person.id), populate_existing=True)
        assert user.email.endswith("@erased.invalid")
        actions = set(
            (
                await db.execute(select(AuditLog.action).where(AuditLog.chain_id == tenant.id))
            ).scalars()
        )
    assert {"cli:compliance_report:create", "cli:user:export", "cli:user:erase"} <= actions


async def test_retention_run_dry_run_and_reading_an_archive(
    services, settings, client, tenant, tmp_path
):
    from kanvaro.work.models import TimeEntry

    fp = await footprint(services, client, tenant)
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        old = TimeEntry(
            project_id=uuid.UUID(fp.ids["project"]), user_id=uuid.UUID(fp.person.id),
            entry_date=date.today() - timedelta(days=40), hours=3, description="Old work",
        )  # fmt: skip
        db.add(old)
        await db.flush()
        old_id = str(old.id)
    r = await client.post(
        "/api/v1/compliance/retention-policies",
        headers=tenant.admin.headers,
        json={"resourceType": "time_entries", "retentionDays": 3650, "archiveAfterDays": 30},
    )
    assert r.status_code == 201, r.text
    code, out, err = await _run(
        settings, "retention", "run", "--dry-run", "--tenant", tenant.slug, "--json"
    )
    assert code == 0, err
    [line] = [json.loads(x) for x in out.splitlines()]
    assert line["dryRun"] and line["archive"] is None and line["archived"] == 1
    code, out, err = await _run(settings, "retention", "run", "--tenant", tenant.slug, "--json")
    assert code == 0, err
    [line] = [json.loads(x) for x in out.splitlines()]
    assert line["archived"] == 1 and line["deleted"] == 0 and line["archive"]
    code, out, err = await _run(settings, "retention", "read", line["archive"])
    assert code == 0, err
    records = [json.loads(x) for x in out.splitlines()]
    assert records[0]["resourceType"] == "time_entries"
    assert [r["id"] for r in records[1:]] == [old_id]
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        assert await db.get(TimeEntry, uuid.UUID(old_id)) is not None  # the books stay
    code, out, err = await _run(settings, "retention", "read", str(tmp_path / "missing.gz"))
    assert code != 0
