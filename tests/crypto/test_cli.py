"""``kanvaro keys rotate | status | shred-user`` as an operator runs them (another process)."""

from __future__ import annotations

import asyncio
import json
import uuid

from kanvaro.crypto import envelope
from kanvaro.services import Services
from tests.crypto.conftest import add_user, cli, stored_phone


async def _finished(proc):  # type: ignore[no-untyped-def]
    """The command's output, waited for off the event loop: the suite's own instance keeps
    running meanwhile, so a transaction of its background work (audit sequencing, session
    activity) never sits paused holding a row lock the command needs."""
    return await asyncio.to_thread(proc.communicate, None, 120)


async def test_rotate_status_and_shred_from_the_command_line(
    services: Services, settings, tenant
) -> None:
    user_id = await add_user(services, tenant.id, "+14155553003")
    before = envelope.key_id_of((await stored_phone(services, user_id))[0])

    proc = cli(settings, "keys", "rotate", "--batch-size", "7")
    out, err = await _finished(proc)
    assert proc.returncode == 0, err.decode()
    assert b"rotation started" in out and b"rotation completed" in out
    after = envelope.key_id_of((await stored_phone(services, user_id))[0])
    assert after != before  # re-encrypted under the user's new data key

    proc = cli(settings, "keys", "status")
    out, err = await _finished(proc)
    assert proc.returncode == 0, err.decode()
    status = json.loads(out)
    assert status["provider"] == "local" and status["rotation"]["state"] == "completed"
    assert "wrapped" not in out.decode().lower()

    proc = cli(settings, "keys", "shred-user", str(user_id), "--yes")
    out, err = await _finished(proc)
    assert proc.returncode == 0, err.decode()
    assert b"destroyed 2 data keys" in out  # the retired and the active version
    assert await stored_phone(services, user_id) == (None, None)
    services.keyring.forget()

    proc = cli(settings, "keys", "shred-user", str(uuid.uuid4()), "--yes")
    assert proc.wait(timeout=120) == 1
