"""Background key maintenance of a running instance.

* Every ``key_maintenance_interval_seconds``: start a scheduled rotation when the oldest active
  data key is older than ``key_rotation_days``, and carry on any unfinished re-encryption
  (one started by ``kanvaro keys rotate --no-wait``, or one a killed process left behind).
  A shared job of ``kanvaro.jobs``: one process of all the instances runs a due run (batches
  are serialized on the rotation row anyway, e.g. against ``kanvaro keys reencrypt``).
* Every ``signing_key_reload_seconds``: reload the token signing keys, so that a rotation done
  by another process (``kanvaro keys rotate-signing``) is picked up (a per-process job).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from kanvaro.config import ConfigError
from kanvaro.crypto.fields import REGISTRY
from kanvaro.crypto.rotation import reencrypt, rotation_due, running_rotation, start_rotation
from kanvaro.crypto.shredding import resume_shreds

if TYPE_CHECKING:
    from kanvaro.services import Services

log = structlog.get_logger("kanvaro.keys")


def check_encrypted_fields(names: list[str]) -> None:
    """Every field the configuration wants encrypted must be declared encrypted on its model:
    the server refuses to start rather than let an admin believe a column is protected."""
    import kanvaro.models  # noqa: F401 - registers every model's encrypted fields

    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise ConfigError(
            f"KANVARO_ENCRYPTED_FIELDS lists {', '.join(unknown)}, which no model declares "
            f"encrypted (encrypted fields: {', '.join(sorted(REGISTRY))})"
        )


async def run_key_maintenance(services: Services) -> None:
    settings = services.settings
    assert services.keyring is not None
    # A crypto-shredding that a crash interrupted (intent committed, KEK not yet destroyed).
    if await resume_shreds(services.db, services.keyring):
        log.info("key_shredding_resumed")
    async with services.db.session(all_tenants=True) as session:
        if await running_rotation(session) is None and await rotation_due(
            session, settings.key_rotation_days
        ):
            await start_rotation(session, reason="scheduled")
            log.info("key_rotation_started", reason="scheduled")
    rotation = await reencrypt(
        services.db,
        services.keyring,
        batch_size=settings.reencrypt_batch_size,
        pause=settings.reencrypt_pause_seconds,
    )
    if rotation is not None:
        log.info("key_rotation_completed", rows=rotation.reencrypted_rows)


def register_jobs(services: Services) -> None:
    """Key maintenance as entries of the job registry (shared: one process rotates; per
    process: every process reloads its own copy of the signing keys)."""
    settings = services.settings
    services.jobs.add(
        "keys.maintenance",
        settings.key_maintenance_interval_seconds,
        lambda: run_key_maintenance(services),
    )
    services.jobs.add(
        "keys.signing-reload",
        settings.signing_key_reload_seconds,
        services.reload_keys,
        per_process=True,
    )
