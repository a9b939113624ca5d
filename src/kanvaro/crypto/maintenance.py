"""Background key maintenance of a running instance.

* Every ``key_maintenance_interval_seconds``: start a scheduled rotation when the oldest active
  data key is older than ``key_rotation_days``, and carry on any unfinished re-encryption
  (one started by ``kanvaro keys rotate --no-wait``, or one a killed process left behind).
  Several instances may run this at once: batches are serialized on the rotation row.
* Every ``signing_key_reload_seconds``: reload the token signing keys, so that a rotation done
  by another process (``kanvaro keys rotate-signing``) is picked up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from kanvaro.config import ConfigError
from kanvaro.crypto.fields import REGISTRY
from kanvaro.crypto.rotation import reencrypt, rotation_due, running_rotation, start_rotation

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


async def _every(seconds: int, what: str, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep running; the next tick retries
            log.error("key_maintenance_failed", job=what, error_type=type(exc).__name__)


def maintenance_tasks(services: Services) -> list[asyncio.Task[None]]:
    settings = services.settings
    tasks = []
    if settings.key_maintenance_interval_seconds:
        tasks.append(
            asyncio.create_task(
                _every(
                    settings.key_maintenance_interval_seconds,
                    "rotation",
                    lambda: run_key_maintenance(services),
                )
            )
        )
    if settings.signing_key_reload_seconds:
        tasks.append(
            asyncio.create_task(
                _every(settings.signing_key_reload_seconds, "signing-keys", services.reload_keys)
            )
        )
    return tasks
