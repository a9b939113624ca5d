"""``kanvaro audit export`` and offline verification; adversarial exports and proofs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kanvaro.audit.note import Checkpoint, Verifier, open_checkpoint, sign_checkpoint
from kanvaro.audit.offline import VerificationFailed, verify_bundle, verify_export
from tests.audit.conftest import run_cli


@pytest.fixture
async def exported(tenant, settings, database_url, tmp_path):
    """A tenant's chain exported by the real CLI; returns (path, trusted key text)."""
    for i in range(4):
        r = await tenant.client.post(
            "/api/v1/projects", headers=tenant.admin.headers, json={"name": f"Export {i}"}
        )
        assert r.status_code == 201
    key = (await tenant.client.get("/api/v1/audit/public-key")).json()["verifierKey"]
    out = tmp_path / "audit.jsonl"
    code, stdout, stderr = await run_cli(
        "audit",
        "export",
        "--tenant",
        tenant.id,
        "--output",
        str(out),
        data_dir=settings.data_dir,
        database_url=database_url,
    )
    assert code == 0, stderr
    assert "exported" in stdout
    r = await tenant.client.get(
        "/api/v1/audit/logs",
        headers=tenant.admin.headers,
        params={"action": "cli:audit_log:export"},
    )
    assert len(r.json()["items"]) == 1  # the export itself is audited
    return out, key


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _check(path: Path, key: str):
    with path.open("rb") as handle:
        return verify_export(handle, Verifier.parse(key))


async def test_the_export_verifies_offline_with_the_cli(exported, tmp_path):
    path, key = exported
    records = _records(path)
    assert records[0]["type"] == "header" and records[-1]["type"] == "end"
    entries = [r for r in records if r["type"] == "entry"]
    assert [e["sequenceNumber"] for e in entries] == list(range(1, len(entries) + 1))
    assert sum(e["action"] == "api:project:create" for e in entries) == 4
    key_file = tmp_path / "trusted.pub"
    key_file.write_text(key + "\n")
    # no database: point the command at a URL that cannot work
    code, out, err = await run_cli(
        "audit",
        "verify-export",
        str(path),
        "--public-key",
        str(key_file),
        data_dir=tmp_path / "nowhere",
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
    )
    assert code == 0, err
    assert out.startswith(f"OK: chain {records[0]['chainId']}, {len(entries)} entries")


async def test_an_edited_line_is_rejected(exported, tmp_path):
    path, key = exported
    records = _records(path)
    victim = next(r for r in records if r.get("action") == "api:project:create")
    victim["changes"]["after"]["name"] = "Edited"
    edited = _write(tmp_path / "edited.jsonl", records)
    with pytest.raises(VerificationFailed, match=rf"entry {victim['sequenceNumber']} \(altered"):
        _check(edited, key)
    code, _, err = await run_cli(
        "audit",
        "verify-export",
        str(edited),
        "--public-key",
        key,
        data_dir=tmp_path,
        database_url="sqlite+aiosqlite:///:memory:",
    )
    assert code == 1 and "REJECTED: chain broken at entry" in err


async def test_a_line_that_is_not_json_is_named(exported, tmp_path):
    path, key = exported
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:-5]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(VerificationFailed, match="line 4 is not valid JSON"):
        _check(broken, key)


async def test_truncated_exports_are_rejected(exported, tmp_path):
    path, key = exported
    records = _records(path)
    # cut off the end
    with pytest.raises(VerificationFailed, match="truncated: it has no end record"):
        _check(_write(tmp_path / "a.jsonl", records[:-3]), key)
    # drop the last entry but keep the end record
    with pytest.raises(VerificationFailed, match="truncated or padded"):
        _check(_write(tmp_path / "b.jsonl", records[:-2] + records[-1:]), key)
    # drop the last entry and fix the count: the signed checkpoint still counts it
    end = {**records[-1], "entries": records[-1]["entries"] - 1}
    with pytest.raises(VerificationFailed, match="truncated: a signed checkpoint covers"):
        _check(_write(tmp_path / "c.jsonl", [*records[:-2], end]), key)


async def test_a_checkpoint_signed_by_another_key_is_rejected(exported, tmp_path):
    path, key = exported
    trusted = Verifier.parse(key)
    records = _records(path)
    impostor = Ed25519PrivateKey.generate()
    for record in records:
        if record["type"] == "checkpoint":
            real = open_checkpoint(record["note"], trusted)
            record["note"] = sign_checkpoint(
                Checkpoint(real.origin, real.tree_size, real.root_hash), trusted.name, impostor
            )
    with pytest.raises(VerificationFailed, match="checkpoint rejected"):
        _check(_write(tmp_path / "forged.jsonl", records), key)
    # and trusting the impostor's key instead does not help: the file names the real key
    other = Verifier.from_public(trusted.name, impostor.public_key().public_bytes_raw())
    with pytest.raises(VerificationFailed, match="different public key"):
        _check(path, other.encode())


async def test_entries_beyond_the_last_checkpoint_are_not_trusted(exported, tmp_path):
    path, key = exported
    records = _records(path)
    checkpoints = [r for r in records if r["type"] == "checkpoint"]
    kept = [r for r in records if r is not checkpoints[-1]]
    kept[-1] = {**kept[-1], "checkpoints": len(checkpoints) - 1}
    if len(checkpoints) == 1:
        match = "no signed checkpoint"
    else:
        match = "not covered by a signed checkpoint"
    with pytest.raises(VerificationFailed, match=match):
        _check(_write(tmp_path / "uncovered.jsonl", kept), key)


async def test_forged_proofs_are_rejected(tenant, tmp_path, settings, database_url):
    c, h = tenant.client, tenant.admin.headers
    small = (await c.post("/api/v1/audit/checkpoints", headers=h)).json()
    await c.post("/api/v1/projects", headers=h, json={"name": "More"})
    big = (await c.post("/api/v1/audit/checkpoints", headers=h)).json()
    key = (await c.get("/api/v1/audit/public-key")).json()["verifierKey"]
    verifier = Verifier.parse(key)
    inclusion = (
        await c.get(
            "/api/v1/audit/proofs/inclusion",
            headers=h,
            params={"sequence": 1, "treeSize": big["treeSize"]},
        )
    ).json()
    consistency = (
        await c.get(
            "/api/v1/audit/proofs/consistency",
            headers=h,
            params={"from": small["treeSize"], "to": big["treeSize"]},
        )
    ).json()
    verify_bundle(inclusion, verifier)
    verify_bundle(consistency, verifier)

    def flip(b64: str) -> str:
        raw = bytearray(base64.b64decode(b64))
        raw[0] ^= 1
        return base64.b64encode(bytes(raw)).decode()

    forged_inclusion = {
        **inclusion,
        "proof": [flip(inclusion["proof"][0]), *inclusion["proof"][1:]],
    }
    with pytest.raises(VerificationFailed, match="proof rejected"):
        verify_bundle(forged_inclusion, verifier)
    # a proof for a root the log never signed
    unsigned = {**inclusion, "rootHash": flip(inclusion["rootHash"])}
    with pytest.raises(VerificationFailed, match="not the one the checkpoint signs"):
        verify_bundle(unsigned, verifier)
    forged_consistency = {
        **consistency,
        "proof": [flip(consistency["proof"][0]), *consistency["proof"][1:]],
    }
    with pytest.raises(VerificationFailed, match="proof rejected"):
        verify_bundle(forged_consistency, verifier)
    swapped = {**consistency, "fromCheckpoint": consistency["toCheckpoint"]}
    with pytest.raises(VerificationFailed, match="not the one the checkpoint signs"):
        verify_bundle(swapped, verifier)

    for name, bundle, expected in (
        ("good.json", consistency, 0),
        ("forged.json", forged_consistency, 1),
    ):
        (tmp_path / name).write_text(json.dumps(bundle))
        code, out, err = await run_cli(
            "audit",
            "verify-proof",
            str(tmp_path / name),
            "--public-key",
            key,
            data_dir=settings.data_dir,
            database_url=database_url,
        )
        assert code == expected, out + err
        assert ("OK: the signed tree" in out) if expected == 0 else ("REJECTED: proof" in err)
