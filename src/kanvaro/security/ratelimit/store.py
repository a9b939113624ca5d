"""The counter store: in-process by default, Redis (shared by every instance) when configured.

Redis calls get short timeouts: a stalled Redis must turn into the configured failure
behaviour within a quarter second, not hold every request for the kernel's TCP timeout.
"""

from __future__ import annotations

from limits.aio.storage import MemoryStorage, Storage
from limits.storage import storage_from_string

STORE_TIMEOUT_SECONDS = 0.25


def open_storage(redis_url: str | None) -> Storage:
    if not redis_url:
        return MemoryStorage()
    scheme, rest = redis_url.split("://", 1)
    return storage_from_string(
        f"async+{scheme}://{rest}",
        implementation="redispy",
        wrap_exceptions=True,
        socket_timeout=STORE_TIMEOUT_SECONDS,
        socket_connect_timeout=STORE_TIMEOUT_SECONDS,
    )
